"""A brute-force reference model of a month's availability, written from INTERFACE.md alone.

Sections 1, 2, 3 and 5 of the interface, plus the interpretations docs/decisions.md records
("Availability, maintenance, exclusions and credits", "Folds and reporting coverage"). It
imports nothing of ``ledger`` or ``projections``: the calendar is ``zoneinfo`` and the
``holidays`` package, arithmetic is ``int`` microseconds, ``Fraction`` and ``Decimal``.

The month is cut at every instant where anything could change (every timestamp of every
fact, the month's bounds, the replay point) and each elementary piece is classified on its
own: outage or not, then maintenance > excused > downtime. Nothing is folded: a probe's or
an incident's state at an instant is recomputed from all its facts each time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import holidays as holidays_package

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SECOND = 1_000_000
DAY = 86_400 * SECOND
IMPACT_RANK = {"none": 0, "degraded": 1, "outage": 2}


def us(value: datetime | str) -> int:
    """Microseconds since the epoch of an aware instant (or an RFC 3339 string)."""
    dt = datetime.fromisoformat(value) if isinstance(value, str) else value
    assert dt.tzinfo is not None
    return (dt - EPOCH) // timedelta(microseconds=1)


def local(day: date, clock: time, tz: ZoneInfo) -> int:
    """The instant of wall clock ``clock`` on ``day`` in ``tz`` (fold=0: gaps read with the offset before)."""
    return us(datetime.combine(day, clock, tzinfo=tz))


def month_bounds(month: str, tz: ZoneInfo) -> tuple[int, int]:
    year, mon = int(month[:4]), int(month[5:7])
    nxt = date(year + 1, 1, 1) if mon == 12 else date(year, mon + 1, 1)
    return local(date(year, mon, 1), time(0), tz), local(nxt, time(0), tz)


def next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year + 1:04d}-01" if mon == 12 else f"{year:04d}-{mon + 1:02d}"


def duration(text: str) -> int:
    """ "24h", "90m", "2d", "1h30m" in microseconds."""
    total, num = 0, ""
    units = {"d": DAY, "h": 3600 * SECOND, "m": 60 * SECOND, "s": SECOND}
    for ch in text.replace(" ", ""):
        if ch.isdigit():
            num += ch
        else:
            total += int(num) * units[ch]
            num = ""
    return total


# --- calendar --------------------------------------------------------------------------


_HOLIDAYS: dict[tuple[str, int], frozenset[date]] = {}


def holiday_set(code: str | None, year: int) -> frozenset[date]:
    if code is None:
        return frozenset()
    if (code, year) not in _HOLIDAYS:
        country, _, subdiv = code.partition("-")
        _HOLIDAYS[code, year] = frozenset(
            holidays_package.country_holidays(country, subdiv=subdiv or None, years=year).keys())
    return _HOLIDAYS[code, year]


@dataclass(frozen=True)
class Calendar:
    tz: ZoneInfo
    holidays: str | None
    opens: time
    closes: time | None  # None: 24:00

    def business_day(self, day: date) -> bool:
        return day.weekday() < 5 and day not in holiday_set(self.holidays, day.year)

    def add_business_days(self, instant: int, n: int) -> int:
        """Section 2: day by day, skipping weekends and holidays, keeping the time of day."""
        here = (EPOCH + timedelta(microseconds=instant)).astimezone(self.tz)
        day = here.date()
        for _ in range(n):
            day += timedelta(days=1)
            while not self.business_day(day):
                day += timedelta(days=1)
        return local(day, here.time().replace(tzinfo=None, fold=0), self.tz) if n else instant

    def overlaps_business_hours(self, start: int, end: int) -> bool:
        first = (EPOCH + timedelta(microseconds=start)).astimezone(self.tz).date() - timedelta(days=1)
        last = (EPOCH + timedelta(microseconds=end)).astimezone(self.tz).date() + timedelta(days=1)
        day = first
        while day <= last:
            if self.business_day(day):
                a = local(day, self.opens, self.tz)
                b = (local(day + timedelta(days=1), time(0), self.tz) if self.closes is None
                     else local(day, self.closes, self.tz))
                if a < end and start < b:
                    return True
            day += timedelta(days=1)
        return False


def calendar_of(policy: dict[str, Any]) -> Calendar:
    cal = policy.get("calendar") or {}
    tz = ZoneInfo(cal.get("timezone") or policy["contract"]["timezone"])
    opens, closes = cal.get("business_hours", "09:00-17:00").split("-")
    close_time = None if closes == "24:00" else time.fromisoformat(closes)
    return Calendar(tz, cal.get("holidays"), time.fromisoformat(opens), close_time)


# --- the model -------------------------------------------------------------------------


@dataclass
class Expected:
    """What a section 5 report must say, as exact values."""

    policy_version: int
    total: int
    outage: int
    maintenance: int
    excused: int
    downtime: int
    availability: Fraction  # percent
    availability_percent: str
    target_met: bool
    credit: dict[str, Any]
    kinds: list[tuple[int, int, str]] = field(default_factory=list)  # merged runs of one kind


def version_in_force(policies: list[dict[str, Any]], month: str) -> int:
    """1-based: the latest version whose ``effective_from`` is at or before the month."""
    chosen = 1
    for n, pol in enumerate(policies[1:], start=2):
        if pol["contract"]["effective_from"] <= month:
            chosen = n
    return chosen


def evaluate(policies: list[tuple[int, dict[str, Any]]], facts: list[dict[str, Any]], month: str,
             upto: int | None = None) -> Expected:
    """The month's figures from the policy versions and the facts as ``ledger events`` prints them.

    ``policies`` are (position, policy file) in version order; ``upto`` a replay position.
    """
    if upto is not None:
        policies = [p for p in policies if p[0] <= upto]
    version = version_in_force([p for _, p in policies], month)
    pol = policies[version - 1][1]
    contract = pol["contract"]
    cid, service = contract["id"], contract["service"]
    tz = ZoneInfo(contract["timezone"])
    start, end = month_bounds(month, tz)
    horizon: int | None = None
    if upto is not None:
        facts = [f for f in facts if f["position"] <= upto]
        horizon = us(next(f["recorded_at"] for f in facts if f["position"] == upto))
    stop = end if horizon is None else min(end, horizon)  # where the month's figures stop
    avail = pol["availability"]
    probes = list(avail.get("probes", []))
    rule = avail.get("outage_when", "any")
    need = len(probes) if rule == "all" else 1 if rule == "any" else int(rule)

    # Sources of outage: each probe's and each incident's facts, in time order.
    probe_facts: dict[str, list[tuple[int, bool]]] = {p: [] for p in probes}
    incident_facts: dict[str, list[tuple[int, int]]] = {}  # (at, impact rank or -1: resolved)
    incident_service: dict[str, str] = {}
    for f in facts:
        if f["type"] in ("probe_failed", "probe_recovered") and (f["service"], f["probe"] in probes) == (
                service, True):
            probe_facts[f["probe"]].append((us(f["at"]), f["type"] == "probe_failed"))
        elif f["type"] == "incident_opened":
            incident_service.setdefault(f["incident"], f["service"])
            incident_facts.setdefault(f["incident"], []).append((us(f["at"]), IMPACT_RANK[f["impact"]]))
        elif f["type"] == "incident_resolved":
            incident_facts.setdefault(f["incident"], []).append((us(f["at"]), -1))

    def probe_down(p: str, t: int) -> bool:
        """Down at ``t``: the facts up to ``t`` replayed, a failure before a recovery at one instant."""
        down = False
        for _, failed in sorted((e for e in probe_facts[p] if e[0] <= t), key=lambda e: (e[0], not e[1])):
            down = failed
        return down

    def incident_outage(i: str, t: int) -> bool:
        """Open with impact outage at ``t``: at each instant the worst opening, then a resolution."""
        impact: int | None = None
        for at in sorted({e[0] for e in incident_facts[i] if e[0] <= t}):
            here = [r for a, r in incident_facts[i] if a == at]
            if any(r >= 0 for r in here):
                impact = max(r for r in here if r >= 0)
            if -1 in here:
                impact = None
        return impact == IMPACT_RANK["outage"]

    def last_end(evs: list[tuple[int, Any]], ends: Any) -> int:
        """The latest fact that ends the source (a recovery, a resolution, an opening that is no outage)."""
        return max((e[0] for e in evs if e[1] in ends), default=-(2**62))

    def outage_at(t: int, open_end: int) -> bool:
        """A source with no recorded end stops at ``open_end``; a recorded end carries it on."""
        down = sum(1 for p in probes
                   if probe_down(p, t) and (t < open_end or t < last_end(probe_facts[p], (False,))))
        if probes and down >= need:
            return True
        return any(incident_service[i] == service and incident_outage(i, t)
                   and (t < open_end or t < last_end(evs, (-1, 0, 1)))
                   for i, evs in incident_facts.items() if i in incident_service)

    # Maintenance windows: the version with the latest announced_at in force per id.
    windows: dict[str, dict[str, Any]] = {}
    for f in facts:
        if f["type"] == "maintenance_announced":
            cur = windows.get(f["maintenance"])
            if cur is None or us(f["announced_at"]) > us(cur["announced_at"]):
                windows[f["maintenance"]] = f
    cancelled = {f["maintenance"] for f in facts if f["type"] == "maintenance_cancelled"}
    completed: dict[str, int] = {}
    for f in facts:
        if f["type"] == "maintenance_completed":
            at = us(f["at"])
            completed[f["maintenance"]] = min(at, completed.get(f["maintenance"], at))
    maint = pol.get("maintenance")
    cal = calendar_of(pol)
    m_spans: list[tuple[int, int]] = []
    for mid, w in windows.items():
        if maint is None or w["service"] != service or mid in cancelled:
            continue
        ann, s, e = us(w["announced_at"]), us(w["starts_at"]), us(w["ends_at"])
        notice = maint["min_notice"]
        if "business" in notice:
            enough = s >= cal.add_business_days(ann, int(notice.split()[0]))
        else:
            enough = s - ann >= duration(notice)
        conforms = enough and not (maint.get("outside_business_hours", False)
                                   and cal.overlaps_business_hours(s, e))
        if conforms or maint.get("nonconforming", "downtime") == "emergency":
            real_end = min(e, completed.get(mid, e))
            a = max(s, ann)
            if a < real_end:
                m_spans.append((a, real_end))

    excludable = set(avail.get("excludable", []))
    revoked = {f["ref"] for f in facts if f["type"] == "exclusion_revoked"}
    x_spans: list[tuple[int, int]] = []
    for f in facts:
        if f["type"] == "force_majeure_declared":
            cat, name, scope = "force_majeure", f["declaration"], None
        elif f["type"] == "exclusion_declared":
            cat, name, scope = f["category"], f["exclusion"], f.get("contract")
        else:
            continue
        if f["service"] == service and cat in excludable and name not in revoked and scope in (None, cid):
            x_spans.append((us(f["starts_at"]), us(f["ends_at"])))

    def kind_at(t: int, open_end: int) -> str | None:
        if not outage_at(t, open_end):
            return None
        if any(a <= t < b for a, b in m_spans):
            return "maintenance"
        if any(a <= t < b for a, b in x_spans):
            return "excused"
        return "downtime"

    # Every instant where anything may change.
    cuts = {start, end}
    if horizon is not None:
        cuts.add(horizon)
    for f in facts:
        for key in ("at", "announced_at", "starts_at", "ends_at"):
            if key in f:
                cuts.add(us(f[key]))
    for a, b in m_spans + x_spans:
        cuts |= {a, b}
    ordered = sorted(cuts)

    def pieces(lo: int, hi: int, open_end: int) -> list[tuple[int, int, str | None]]:
        pts = [lo] + [c for c in ordered if lo < c < hi] + [hi]
        return [(a, b, kind_at(a, open_end)) for a, b in itertools.pairwise(pts) if a < b]

    month_pieces = pieces(start, stop, stop)
    sums = {"maintenance": 0, "excused": 0, "downtime": 0}
    kinds: list[tuple[int, int, str]] = []
    for a, b, k in month_pieces:
        if k is None:
            continue
        sums[k] += b - a
        if kinds and kinds[-1][1] == a and kinds[-1][2] == k:
            kinds[-1] = (kinds[-1][0], b, k)
        else:
            kinds.append((a, b, k))
    total = end - start
    m, x, d = sums["maintenance"], sums["excused"], sums["downtime"]
    if avail.get("formula", "downtime_over_total") == "downtime_over_total":
        a_pct = Fraction(100 * (total - d), total)
    else:
        a_pct = Fraction(100) if total == m else Fraction(100 * (total - m - d), total - m)
    truncated = Fraction(int(a_pct * 10_000), 10_000)
    a_text = f"{Decimal(truncated.numerator) / Decimal(truncated.denominator):.4f}"
    target_met = a_pct >= Fraction(Decimal(avail["target"]))

    # Long outages: maximal stretches of D that start in the month, measured past its end
    # as far as recorded ends carry them (an open end stops at the month's end); one already
    # running at the month's start belongs to the month before.
    stretches: list[int] = []
    credits = pol.get("credits")
    if credits is not None and credits.get("long_outage") is not None and stop > start:
        before = pieces(start - 400 * DAY, start, start)
        running = bool(before) and before[-1][2] == "downtime"
        after = pieces(end, max(ordered) + DAY, end) if stop == end else []
        first: int | None = None
        last = 0
        for a, b, k in month_pieces + after:
            if k == "downtime" and first is not None and last == a:
                last = b
                continue
            if first is not None and not (first == start and running):
                stretches.append(last - first)
            first = None
            if k == "downtime" and a < stop:
                first, last = a, b
        if first is not None and not (first == start and running):
            stretches.append(last - first)

    # A claim dated after the replay point (recorded ahead of its `at`) was not filed yet.
    dated = facts if horizon is None else [f for f in facts if f["type"] != "credit_claim_filed"
                                           or us(f["at"]) <= horizon]
    credit = _credit(pol, a_pct, stretches, dated, month, tz, cid)
    return Expected(version, total, m + x + d, m, x, d, a_pct, a_text, target_met, credit, kinds)


def _fee(contract: dict[str, Any]) -> tuple[Fraction, Fraction]:
    """(monthly, annual) as exact fractions."""
    if contract.get("monthly_fee") is not None:
        monthly = Fraction(Decimal(contract["monthly_fee"]))
        return monthly, monthly * 12
    annual = Fraction(Decimal(contract["annual_fee"]))
    return annual / 12, annual


def _money(value: Fraction) -> str:
    exact = Decimal(value.numerator) / Decimal(value.denominator)
    return str(exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _credit(pol: dict[str, Any], a_pct: Fraction, stretches: list[int], facts: list[dict[str, Any]],
            month: str, tz: ZoneInfo, cid: str) -> dict[str, Any]:
    credits = pol.get("credits")
    currency = pol["contract"]["currency"]
    if credits is None:
        return {"percent": Decimal(0), "amount": "0.00", "long_outage_amount": "0.00",
                "currency": currency, "claim": "none", "payable": False}
    matching = [t for t in credits.get("tiers", []) if a_pct < Fraction(Decimal(t["below"]))]
    tier = min(matching, key=lambda t: Decimal(t["below"])) if matching else None
    percent = Decimal(tier["percent"]) if tier else Decimal(0)
    monthly, annual = _fee(pol["contract"])
    long_amount = Fraction(0)
    lo = credits.get("long_outage")
    if lo is not None:
        over = duration(lo["over"])
        per_started = lo.get("per_started_day", True)
        for length in stretches:
            if length > over:
                days = -(-length // DAY) if per_started else length // DAY
                long_amount += annual / 365 * days
    amount = Fraction(percent) / 100 * monthly + long_amount
    if credits.get("cap_percent") is not None:
        amount = min(amount, Fraction(Decimal(credits["cap_percent"])) / 100 * monthly)
    deadline_days = credits.get("claim_deadline_days")
    if deadline_days is None:
        claim = "automatic"
    else:
        nxt = next_month(month)
        first = date(int(nxt[:4]), int(nxt[5:7]), 1)
        deadline = local(first + timedelta(days=deadline_days), time(0), tz)
        claims = [us(f["at"]) for f in facts
                  if f["type"] == "credit_claim_filed" and f["contract"] == cid and f["month"] == month]
        if any(c <= deadline for c in claims):
            claim = "filed_in_time"
        elif claims:
            claim = "late"
        else:
            claim = "not_filed"
    amount_text = _money(amount)
    payable = claim in ("automatic", "filed_in_time") and Decimal(amount_text) > 0
    return {"percent": percent, "amount": amount_text, "long_outage_amount": _money(long_amount),
            "currency": currency, "claim": claim, "payable": payable, "stretches": stretches}
