"""Builders for unit tests of the pure projection: policies from TOML text, facts as ``Recorded``."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from ledger.events import FACT_TYPES, Fact, Recorded, fact_id
from ledger.policy import Policy, resolve
from ledger.policy_check import load_policy
from projections.availability import evaluate
from projections.model import Evaluation


def policy(text: str) -> Policy:
    """A resolved policy from TOML text (validated like a real policy file)."""
    return resolve(load_policy(text.encode()))


def pair(value: Fraction) -> tuple[int, int]:
    """A Fraction as the (numerator, denominator) pair ``projections.credit`` computes with."""
    return value.numerator, value.denominator


def ts(text: str) -> datetime:
    """An RFC 3339 timestamp with offset ("2026-10-04T09:15:00+02:00" or "...Z")."""
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, "timestamps in tests carry an offset"
    return value


def fact(kind: str, **fields: Any) -> Fact:
    """A fact of type ``kind``; string timestamps are parsed."""
    for key in ("at", "announced_at", "starts_at", "ends_at"):
        if isinstance(fields.get(key), str):
            fields[key] = ts(fields[key])
    cls = FACT_TYPES[kind]
    return cls(**fields)  # type: ignore[return-value]


class Ledger:
    """An in-memory list of ``Recorded`` facts with gap-free positions, for tests."""

    def __init__(self) -> None:
        self.records: list[Recorded] = []

    def add(self, kind: str, *, recorded_at: datetime | str | None = None, **fields: Any) -> int:
        """Record one fact; returns its position."""
        f = fact(kind, **fields)
        when = ts(recorded_at) if isinstance(recorded_at, str) else recorded_at
        pos = len(self.records) + 1
        self.records.append(
            Recorded(position=pos, recorded_at=when or EARLY_RECORDING, id=fact_id(f), fact=f)
        )
        return pos

    def evaluate(self, pol: Policy, month: str, replay_point: datetime | None = None) -> Evaluation:
        return run(self.records, pol, month, replay_point=replay_point)


# Default recording time: before every test month, so that nothing looks backdated or recorded
# late unless a test says so with `recorded_at`. The fold never reads recorded_at for figures.
EARLY_RECORDING = datetime(2000, 1, 1, tzinfo=UTC)


def run(
    records: Iterable[Recorded], pol: Policy, month: str, *, replay_point: datetime | None = None
) -> Evaluation:
    """Evaluate with version 1 and as_of_position = the highest position given."""
    recs = list(records)
    last = max((r.position for r in recs), default=0)
    return evaluate(recs, pol, 1, month, as_of_position=last, replay_point=replay_point)


def kinds(ev: Evaluation) -> list[tuple[str, str, str, int]]:
    """(start, end, kind, seconds) of each interval: compact for assertions."""
    return [
        (i.start.astimezone(UTC).isoformat(), i.end.astimezone(UTC).isoformat(), i.kind, int(i.seconds))
        for i in ev.report.intervals
    ]


# --- the five agreements as policies (mirroring ledger/examples, kept here so tests are stable) ---

SEED_A = """
[contract]
id = "sla-a"
customer = "A"
service = "workspace"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "149.00"

[availability]
target = "99.97"
formula = "downtime_over_total"
outage_when = "all"
probes = ["paris", "frankfurt", "london"]
excludable = ["force_majeure"]

[maintenance]
min_notice = "24h"
nonconforming = "downtime"

[credits]
tiers = [{ below = "99.97", percent = "100" }]
cap_percent = "100"
claim_deadline_days = 3
"""

SEED_B = """
[contract]
id = "sla-b"
customer = "B"
service = "biings"
timezone = "Europe/Zurich"
currency = "CHF"
annual_fee = "6000.00"

[availability]
target = "99.5"
outage_when = "any"
probes = ["ping", "tcp-443"]

[credits]
tiers = [{ below = "99.5", percent = "10" }]
cap_percent = "100"
long_outage = { over = "24h", per_started_day = true }
"""

_SEED_C = """
[contract]
id = "sla-c-{lang}"
customer = "C"
service = "optimy"
timezone = "America/Toronto"
currency = "CAD"
annual_fee = "18000.00"

[availability]
target = "99.90"
formula = "maintenance_out_of_total"
outage_when = 2
probes = ["toronto", "brussels", "virginia"]
excludable = ["customer_isp", "force_majeure", "internet_failure", "customer_equipment",
              "customer_action", "third_party"]

[maintenance]
min_notice = "5 business days"
outside_business_hours = true
nonconforming = "emergency"

[calendar]
timezone = "America/Toronto"
holidays = "{holidays}"
business_hours = "09:00-17:30"
"""
SEED_C_EN = _SEED_C.format(lang="en", holidays="CA")
SEED_C_FR = _SEED_C.format(lang="fr", holidays="BE")

SEED_D = """
[contract]
id = "sla-d"
customer = "D"
service = "better-impact"
timezone = "America/Toronto"
currency = "CAD"
annual_fee = "3600.00"

[availability]
target = "99.95"
outage_when = "all"
probes = ["toronto", "london", "sydney"]
excludable = ["force_majeure", "customer_isp", "customer_equipment", "customer_action", "internet_failure"]

[maintenance]
min_notice = "24h"
nonconforming = "downtime"

[credits]
tiers = [
    { below = "99.95", percent = "25" },
    { below = "99.9", percent = "50" },
    { below = "99", percent = "100" },
]
cap_percent = "100"
"""


def outage(led: Ledger, service: str, probes: Iterable[str], start: str, end: str | None) -> list[int]:
    """Every named probe fails at ``start`` and (unless ``end`` is None) recovers at ``end``."""
    positions = []
    for p in probes:
        positions.append(led.add("probe_failed", service=service, probe=p, at=start))
        if end is not None:
            positions.append(led.add("probe_recovered", service=service, probe=p, at=end))
    return positions
