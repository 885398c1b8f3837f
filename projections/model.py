"""What projections produce: the month report (INTERFACE.md section 5) and its explanation.

Seconds are ``Decimal`` (exact to the microsecond) and are encoded as JSON
numbers; percentages and money are decimal strings.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

import msgspec


class HolidayUse(msgspec.Struct, frozen=True):
    country: str
    year: int
    source: str  # "pinned" or "holidays <version>"


IntervalKind = Literal["downtime", "maintenance", "excused"]
ClaimStatus = Literal["automatic", "filed_in_time", "late", "not_filed", "none"]


class Interval(msgspec.Struct, frozen=True):
    """A maximal piece of outage inside the month that counts one way, for one reason."""

    start: datetime
    end: datetime
    seconds: Decimal
    kind: IntervalKind
    reason: str
    events: tuple[int, ...]


class Credit(msgspec.Struct, frozen=True):
    percent: str
    amount: str
    long_outage_amount: str
    currency: str
    claim: ClaimStatus
    payable: bool


class LogCheckpoint(msgspec.Struct, frozen=True):
    """The log a report was computed from: its size (``as_of_position``) and Merkle root (section 7)."""

    size: int
    root: str


class Report(msgspec.Struct, frozen=True):
    """The month's figures, field for field as INTERFACE.md section 5 prints them."""

    contract: str
    month: str
    timezone: str
    policy_version: int
    total_seconds: Decimal
    outage_seconds: Decimal
    maintenance_seconds: Decimal
    excused_seconds: Decimal
    downtime_seconds: Decimal
    availability_percent: str
    target_percent: str
    target_met: bool
    credit: Credit
    intervals: tuple[Interval, ...]
    # Each country-year whose public holidays the figures looked up (maintenance notice in
    # business days, business hours), and where the dates came from (section 6.1), as
    # ``ledger support`` names them; sorted.
    holidays: tuple[HolidayUse, ...]
    as_of_position: int
    digest: str
    # The log the figures were computed from (INTERFACE.md section 7); None where the store's
    # tree is not built yet, and in the reporting view's reports (a row is not tied to one log).
    checkpoint: LogCheckpoint | None = None


class Finding(msgspec.Struct, frozen=True):
    """Something the auditor should see that is not an interval of outage.

    ``kind`` is e.g. "exclusion_refused", "maintenance_refused", "revoked",
    "cancelled", "backdated_notice", "ignored_probe", "claim".
    """

    kind: str
    ref: str
    text: str
    events: tuple[int, ...]


class Step(msgspec.Struct, frozen=True):
    """One line of the auditor's walk-through: a figure, how it was reached, and from what."""

    figure: str
    value: str
    how: str
    events: tuple[int, ...] = ()


class Explanation(msgspec.Struct, frozen=True):
    month_start: datetime
    month_end: datetime
    horizon: datetime  # outage without a recovery runs to here (month end, or the replay point)
    policy_version: int
    steps: tuple[Step, ...]
    findings: tuple[Finding, ...]


class Evaluation(msgspec.Struct, frozen=True):
    """A month evaluated: the report plus the reasoning behind every figure."""

    report: Report
    explanation: Explanation


class Audit(msgspec.Struct, frozen=True):
    """``ledger audit --format json``: the replay point, the report and its explanation."""

    as_of: datetime | None
    as_of_position: int
    report: Report
    explanation: Explanation


report_encoder: Final = msgspec.json.Encoder(decimal_format="number")


def to_json(value: Report | Audit) -> bytes:
    """Deterministic JSON (field order as declared; Decimals as numbers)."""
    return report_encoder.encode(value)
