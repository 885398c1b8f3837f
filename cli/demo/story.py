"""A deterministic demo month for the example contracts.

Each example contract (``cli.demo.cast``) names its own service, and ``demo_facts``
tells the same kinds of story for every service: flapping probes, an incident over a
probe outage, maintenance windows that conform or not,
force majeure, a customer-side exclusion, a revoked exclusion, an outage across
the month boundary. The lengths differ per service so that, for the demo month,
the contracts end differently:

- ``sla-a-2026`` misses 99.97 %: a free month, payable because a claim is filed
  in time (and an earlier month's claim is filed late);
- ``sla-b-2026`` gets its automatic tier credit plus the daily rate for a 25 h outage;
- ``sla-c-en-2026`` / ``sla-c-fr-2026`` meet their best-efforts 99.90 % (no credit);
  a window whose notice spans Thanksgiving conforms under the Belgian calendar only;
- ``sla-d-2026`` falls below 99.9 %: the 50 % tier, automatic.

Pure: no clock and no I/O; the only randomness is ``random.Random(seed)``, used
for seconds of jitter, probe details and export lags, never for minutes that
decide a figure.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import msgspec

from cli.demo.cast import PROBE_DETAILS, SERVICES, Service
from cli.demo.tickets import tell_tickets
from ledger.calendar import first_of_next_month, parse_month
from ledger.errors import BadInput
from ledger.events import (
    CreditClaimFiled,
    ExclusionCategory,
    ExclusionDeclared,
    ExclusionRevoked,
    Fact,
    ForceMajeureDeclared,
    Impact,
    IncidentOpened,
    IncidentResolved,
    MaintenanceAnnounced,
    MaintenanceCancelled,
    MaintenanceCompleted,
    ProbeFailed,
    ProbeRecovered,
)

_MONDAY, _TUESDAY, _WEDNESDAY, _THURSDAY, _FRIDAY, _SATURDAY = range(6)


def _month_days(month: str) -> tuple[date, date]:
    """The first day of ``month`` and of the month after, read by the one month parser."""
    try:
        year, mon = parse_month(month)
    except ValueError:
        raise BadInput(f"month: expected YYYY-MM, got {month!r}") from None
    return date(year, mon, 1), first_of_next_month(year, mon)


class _Story:
    """Collects one service's facts with explicit ids and the instant each reaches the ledger."""

    def __init__(self, svc: Service, month: str, rng: random.Random) -> None:
        self.svc = svc
        self.month = month
        self.rng = rng
        self.zone = ZoneInfo(svc.zone)
        self.first, self.next_first = _month_days(month)
        self.prefix = f"{svc.service}-{month}"
        self.facts: list[tuple[datetime, int, Fact]] = []
        self._seq = 0
        self._names: dict[str, int] = {}

    # --- time ------------------------------------------------------------------

    def at(self, day: date, hh: int, mm: int, ss: int = 0) -> datetime:
        """A local wall-clock time, as a UTC instant (durations are then added exactly)."""
        return datetime.combine(day, time(hh, mm, ss), tzinfo=self.zone).astimezone(UTC)

    def local(self, t: datetime) -> datetime:
        """How people write it: local time with a fixed offset."""
        lt = t.astimezone(self.zone)
        offset = lt.utcoffset()
        assert offset is not None
        return lt.replace(tzinfo=timezone(offset))

    def nth(self, weekday: int, n: int) -> date:
        d = self.first + timedelta(days=(weekday - self.first.weekday()) % 7)
        return d + timedelta(weeks=n - 1)

    def last(self, weekday: int) -> date:
        d = self.next_first - timedelta(days=1)
        return d - timedelta(days=(d.weekday() - weekday) % 7)

    def jitter(self, low: int = 0, high: int = 45) -> timedelta:
        return timedelta(seconds=self.rng.randint(low, high))

    # --- recording ---------------------------------------------------------------

    def _id(self) -> str:
        self._seq += 1
        return f"demo:{self.prefix}:{self._seq:03d}"

    def name(self, kind: str) -> str:
        """A fresh incident, maintenance or exclusion name, unique in the ledger."""
        n = self._names[kind] = self._names.get(kind, 0) + 1
        return f"{self.prefix}-{kind}-{n}"

    def _add(self, arrival: datetime, fact: Fact) -> None:
        self.facts.append((arrival, self._seq, fact))

    def record(self, arrival: datetime, fact: Fact) -> None:
        """``fact`` with the story's next explicit id, reaching the ledger at ``arrival``."""
        self._add(arrival, msgspec.structs.replace(fact, id=self._id()))

    def _lag(self, probe: str) -> timedelta:
        # The last probe's location exports in batches, so its events reach the ledger late
        # and out of order with the other probes'.
        if probe == self.svc.probes[-1]:
            return timedelta(minutes=self.rng.randint(20, 70))
        return self.jitter(5, 90)

    def probe_down(
        self, probe: str, start: datetime, end: datetime, failure_arrives: datetime | None = None
    ) -> None:
        detail = self.rng.choice(PROBE_DETAILS.get(probe, self.svc.details))
        self._add(
            failure_arrives or start + self._lag(probe),
            ProbeFailed(id=self._id(), service=self.svc.service, probe=probe, at=start, detail=detail),
        )
        self._add(
            end + self._lag(probe),
            ProbeRecovered(id=self._id(), service=self.svc.service, probe=probe, at=end),
        )

    def still_down(self, probe: str, at: datetime) -> None:
        """A repeated failure while the probe is already down: changes nothing."""
        self._add(
            at + self._lag(probe),
            ProbeFailed(id=self._id(), service=self.svc.service, probe=probe, at=at, detail="still failing"),
        )

    def outage(self, start: datetime, minutes: int) -> None:
        """Every probe down: failures within seconds, recoveries staggered by about a minute."""
        probes = list(self.svc.probes)
        self.rng.shuffle(probes)
        end = start + timedelta(minutes=minutes)
        for i, probe in enumerate(probes):
            self.probe_down(
                probe, start + self.jitter(0, 40), end + timedelta(seconds=75 * i) + self.jitter(0, 10)
            )

    def incident(
        self, start: datetime, end: datetime, impact: Impact, title: str, severity: str | int | None = None
    ) -> None:
        name = self.name("inc")
        self._add(
            start + timedelta(minutes=1),
            IncidentOpened(
                id=self._id(),
                service=self.svc.service,
                incident=name,
                at=self.local(start),
                impact=impact,
                title=title,
                severity=severity,
            ),
        )
        self._add(
            end + timedelta(minutes=1), IncidentResolved(id=self._id(), incident=name, at=self.local(end))
        )

    def maintenance(self, announced: datetime, start: datetime, end: datetime, title: str) -> str:
        name = self.name("mnt")
        self._add(
            announced,
            MaintenanceAnnounced(
                id=self._id(),
                service=self.svc.service,
                maintenance=name,
                announced_at=self.local(announced),
                starts_at=self.local(start),
                ends_at=self.local(end),
                title=title,
            ),
        )
        return name

    def cancel(self, maintenance: str, at: datetime) -> None:
        self._add(at, MaintenanceCancelled(id=self._id(), maintenance=maintenance, at=self.local(at)))

    def complete(self, maintenance: str, at: datetime) -> None:
        self._add(at, MaintenanceCompleted(id=self._id(), maintenance=maintenance, at=self.local(at)))

    def force_majeure(self, start: datetime, end: datetime, reason: str) -> str:
        name = self.name("fm")
        self._add(
            end + timedelta(hours=3),
            ForceMajeureDeclared(
                id=self._id(),
                service=self.svc.service,
                declaration=name,
                starts_at=self.local(start),
                ends_at=self.local(end),
                reason=reason,
            ),
        )
        return name

    def exclusion(
        self,
        start: datetime,
        end: datetime,
        category: ExclusionCategory,
        reason: str,
        contract: str | None = None,
    ) -> str:
        name = self.name("exc")
        self._add(
            end + timedelta(days=1),
            ExclusionDeclared(
                id=self._id(),
                service=self.svc.service,
                exclusion=name,
                category=category,
                starts_at=self.local(start),
                ends_at=self.local(end),
                reason=reason,
                contract=contract,
            ),
        )
        return name

    def revoke(self, ref: str, reason: str, arrival: datetime) -> None:
        self._add(arrival, ExclusionRevoked(id=self._id(), ref=ref, reason=reason))

    def claim(self, month: str, at: datetime) -> None:
        self._add(
            at, CreditClaimFiled(id=self._id(), contract=self.svc.contract, month=month, at=self.local(at))
        )


def _tell(story: _Story) -> None:
    """One service's month, in the order things happened."""
    s, svc = story, story.svc
    first, probes = story.first, svc.probes
    eve = first - timedelta(days=1)

    # An outage across the month boundary; the first probe's failure reaches the ledger
    # after its recovery (its agent buffered during the outage) and fails again while down.
    start = s.at(eve, 23, 40)
    for i, probe in enumerate(probes):
        end = s.at(first, 0, 3) + timedelta(seconds=90 * i) + s.jitter(0, 20)
        arrives = end + timedelta(minutes=3) if i == 0 else None
        s.probe_down(probe, start + s.jitter(0, 30), end, failure_arrives=arrives)
    s.still_down(probes[0], start + timedelta(minutes=12))
    s.incident(start + timedelta(minutes=4), s.at(first, 0, 2), "outage", "Load balancer failover loop", 1)

    # A probe outside the policy's list (an internal synthetic check): ignored by every contract.
    fifth = first + timedelta(days=4)
    s.probe_down("synthetic-login", s.at(fifth, 8, 0) + s.jitter(), s.at(fifth, 9, 30) + s.jitter())

    # One probe flapping for half an hour: an outage only where any single probe counts.
    friday = s.nth(_FRIDAY, 1)
    for a, b in ((2, 4), (7, 8), (15, 19)):
        s.probe_down(probes[1], s.at(friday, 11, a) + s.jitter(), s.at(friday, 11, b) + s.jitter())

    # The month's main incident, declared a few minutes into a probe outage and resolved after it.
    wednesday = s.nth(_WEDNESDAY, 1)
    recovered, resolved = svc.incident
    two_pm = s.at(wednesday, 14, 0)
    s.outage(two_pm, recovered)
    s.incident(
        two_pm + timedelta(minutes=3),
        two_pm + timedelta(minutes=resolved),
        "outage",
        "Database primary unreachable",
        "SEV1",
    )
    thursday = wednesday + timedelta(days=1)
    s.incident(s.at(thursday, 10, 0), s.at(thursday, 11, 30), "degraded", "Slow report exports", "SEV3")

    if svc.long_outage:
        # A storage array failure: more than a day down (credited at the daily rate).
        wed2 = s.nth(_WEDNESDAY, 2)
        down = s.at(wed2, 21, 10)
        for probe in probes:
            s.probe_down(probe, down + s.jitter(), s.at(wed2 + timedelta(days=1), 22, 40) + s.jitter())
        s.still_down(probes[0], down + timedelta(hours=6))
        s.incident(
            s.at(wed2, 21, 20),
            s.at(wed2 + timedelta(days=1), 22, 45),
            "outage",
            "Storage array failure, restore from replica",
            "SEV1",
        )

    if svc.holiday_notice:
        # Notice given over the second Monday (Thanksgiving in Canada in October, an ordinary
        # day in Belgium): enough business days under BE, emergency maintenance under CA-ON.
        mon2 = s.nth(_MONDAY, 2)
        s.maintenance(
            s.at(mon2 - timedelta(days=7), 18, 0),
            s.at(mon2, 22, 0),
            s.at(mon2, 23, 30),
            "Search index rebuild",
        )
        s.outage(s.at(mon2, 22, 5), 45)

    # A conforming window: a Saturday night, announced more than a week ahead.
    sat3 = s.nth(_SATURDAY, 3)
    s.maintenance(
        s.at(sat3 - timedelta(days=9), 10, 0), s.at(sat3, 2, 0), s.at(sat3, 4, 0), "Database major upgrade"
    )
    s.outage(s.at(sat3, 2, 10), 90)

    # A non-conforming window: inside business hours for C, announced 5 hours ahead elsewhere.
    tue3 = s.nth(_TUESDAY, 3)
    if svc.in_hours:
        s.maintenance(s.at(first, 10, 0), s.at(tue3, 12, 30), s.at(tue3, 13, 0), "Certificate rotation")
        s.outage(s.at(tue3, 12, 32), 18)
    else:
        s.maintenance(s.at(tue3, 18, 0), s.at(tue3, 23, 0), s.at(tue3, 23, 45), "Urgent kernel patch")
        s.outage(s.at(tue3, 23, 5), 30)

    # A cancelled window: the glitch that happens in it anyway is downtime.
    thu4 = s.nth(_THURSDAY, 4)
    mon = thu4 - timedelta(days=3)
    cancelled = s.maintenance(s.at(mon, 9, 0), s.at(thu4, 1, 0), s.at(thu4, 2, 0), "Network switch firmware")
    s.cancel(cancelled, s.at(thu4 - timedelta(days=1), 16, 0))
    s.outage(s.at(thu4, 1, 20), svc.glitch)

    # A window completed early: the outage that outlasts the completion is downtime.
    sat4 = s.nth(_SATURDAY, 4)
    early = s.maintenance(
        s.at(sat4 - timedelta(days=9), 10, 0), s.at(sat4, 1, 0), s.at(sat4, 5, 0), "Storage migration"
    )
    s.complete(early, s.at(sat4, 2, 30))
    s.outage(s.at(sat4, 1, 10), 80 + svc.glitch)

    # Force majeure: a regional power cut during a storm.
    tue4 = s.nth(_TUESDAY, 4)
    s.force_majeure(
        s.at(tue4, 15, 0), s.at(tue4, 17, 0), "Regional power grid failure during a storm (utility notice)"
    )
    s.outage(s.at(tue4, 15, 10), 70)

    # A customer-side exclusion for this contract only: the customer's ISP dropped its traffic.
    wed4 = s.nth(_WEDNESDAY, 4)
    s.incident(
        s.at(wed4, 9, 10),
        s.at(wed4, 10, 5),
        svc.customer_impact,
        f"{svc.contract}: users cannot log in",
        "SEV2",
    )
    s.exclusion(
        s.at(wed4, 9, 0),
        s.at(wed4, 10, 30),
        "customer_isp",
        "Customer's ISP routing failure (ISP ticket confirmed)",
        contract=svc.contract,
    )

    # An exclusion declared, then revoked after the post-mortem: its outage is downtime again.
    thu = s.last(_THURSDAY)
    lo, hi = s.at(thu, 3, 0), s.at(thu, 3, 30)
    if svc.revoked_category is None:
        ref = s.force_majeure(lo, hi, "Volumetric DDoS: coordinated sabotage of our servers")
    else:
        ref = s.exclusion(lo, hi, svc.revoked_category, "Upstream provider incident")
    s.outage(s.at(thu, 3, 2), svc.glitch)
    s.revoke(
        ref,
        "Post-mortem: caused by our own configuration change",
        s.at(story.next_first + timedelta(days=1), 11, 0),
    )

    if svc.claims:
        # This month's claim in time (by the 3rd of the next month); last month's, late.
        s.claim(story.month, s.at(story.next_first + timedelta(days=1), 9, 30))
        prev = eve.strftime("%Y-%m")
        s.claim(prev, s.at(first + timedelta(days=4), 11, 0))


def demo_facts(month: str, seed: int = 7, *, tickets: bool = True) -> list[Fact]:
    """The facts of ``month`` for every example service, in a plausible arrival order."""
    rng = random.Random(seed)
    arrived: list[tuple[datetime, int, int, Fact]] = []
    for rank, svc in enumerate(SERVICES):
        story = _Story(svc, month, rng)
        _tell(story)
        tell_tickets(story, tickets)  # draws nothing from ``rng``: the availability facts stay as they were
        arrived.extend((arrival, rank, seq, fact) for arrival, seq, fact in story.facts)
    arrived.sort(key=lambda item: (item[0], item[1], item[2]))
    return [fact for *_, fact in arrived]

