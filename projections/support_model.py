"""What the support fold produces: the report of INTERFACE.md section 6.3, field for field.

Seconds are ``Decimal`` (exact to the microsecond), encoded as JSON numbers; the
mean is a decimal string; instants are written in the contract's zone.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

import msgspec

# One type for both reports, defined with the month report (which need not import this module).
from projections.model import HolidayUse as HolidayUse

Status = Literal["met", "breached", "pending"]


class TicketLine(msgspec.Struct, frozen=True):
    """One ticket opened in the month, with the target of the severity in force at its first response."""

    ticket: str
    severity: str
    kind: str
    opened_at: datetime
    responded_at: datetime | None
    target: str
    deadline: datetime | None  # None: the clock never gives that much open time within a year
    response_seconds: Decimal
    status: Status
    events: tuple[int, ...]


class PerTicketTarget(msgspec.Struct, frozen=True):
    severity: str
    target: str
    kind: Literal["per_ticket"]
    tickets: int
    met: int
    breached: int
    pending: int


class MeanTarget(msgspec.Struct, frozen=True):
    severity: str
    target: str
    kind: Literal["mean"]
    tickets: int
    mean_seconds: str | None  # None: no ticket of that severity in the month
    met: bool


class EngagementLine(msgspec.Struct, frozen=True):
    downtime_start: datetime
    engaged_at: datetime | None
    seconds: Decimal
    status: Status
    events: tuple[int, ...]


class RecoveryLine(msgspec.Struct, frozen=True):
    recovery: str
    at: datetime
    restored_to: datetime
    data_loss_seconds: Decimal
    status: Literal["met", "breached"]
    events: tuple[int, ...]


class QuotaLine(msgspec.Struct, frozen=True):
    year_start: datetime
    year_end: datetime
    granted_seconds: int
    used_seconds: Decimal
    exempt_seconds: Decimal
    remaining_seconds: Decimal
    warning: bool


class SupportReport(msgspec.Struct, frozen=True):
    """``ledger support --format json``."""

    contract: str
    month: str
    timezone: str
    policy_version: int
    tickets: tuple[TicketLine, ...]
    targets: tuple[PerTicketTarget | MeanTarget, ...]
    unknown_severity: tuple[str, ...]
    engagements: tuple[EngagementLine, ...] | None
    recoveries: tuple[RecoveryLine, ...] | None
    quota: QuotaLine | None
    holidays: tuple[HolidayUse, ...]
    as_of_position: int
    digest: str


support_encoder: Final = msgspec.json.Encoder(decimal_format="number")


def support_json(report: SupportReport | list[SupportReport]) -> bytes:
    """Deterministic JSON (field order as declared; Decimals as numbers)."""
    return support_encoder.encode(report)
