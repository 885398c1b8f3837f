"""The support fold (INTERFACE.md section 6): tickets on support-hours clocks, and the month's figures.

Pure: facts, the policy version in force, the month, the availability fold's
downtime stretches and a holiday lookup go in; the report comes out. Nothing
here reads a clock, a store or (but through the lookup given) the ``holidays``
package.

Size: about 450 lines: the per-ticket, mean, engagement, recovery and quota passes share the
collected facts, the clock and the digest of what they used; apart they would pass all of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any, Final

import msgspec

from ledger.calendar import local_midnight, month_bounds
from ledger.events import (
    Fact,
    HolidaysPinned,
    Recorded,
    RecoveryPerformed,
    SupportEngaged,
    SupportTimeLogged,
    TicketClassified,
    TicketOpened,
    TicketResponded,
    TicketSeverityChanged,
    canonical,
)
from ledger.hashing import sha256
from ledger.policy import Policy, SupportRules, SupportTarget
from ledger.support_hours import (
    HolidayBook,
    HolidayLookup,
    OpenTimeline,
    SupportCalendar,
    add_business_days,
    add_open_time,
    from_us,
    package_holidays,
    to_us,
)
from projections.credit import Stretch
from projections.support_model import (
    EngagementLine,
    HolidayUse,
    MeanTarget,
    PerTicketTarget,
    QuotaLine,
    RecoveryLine,
    Status,
    SupportReport,
    TicketLine,
)

_US: Final = 1_000_000
_ONE_US: Final = timedelta(microseconds=1)
_encoder: Final = msgspec.json.Encoder(order="sorted")


def seconds(us: int) -> Decimal:
    """Exact seconds of a microsecond count ("5400", "0.25")."""
    whole, rest = divmod(us, _US)
    return Decimal(whole) if rest == 0 else Decimal(f"{whole}.{rest:06d}".rstrip("0"))


_FIXED: Final[dict[timedelta, datetime]] = {}  # offset -> the epoch in a fixed zone of that offset
_HOUR: Final = 3_600_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)  # noqa: UP017 (the name reads better here)
# (zone, UTC hour) -> the epoch at the zone's offset throughout that hour (None: it changes inside).
_HOURS: Final[dict[tuple[object, int], datetime | None]] = {}


def _offset_epoch(us: int, tz: object) -> datetime:
    offset = from_us(us).astimezone(tz).utcoffset()  # type: ignore[arg-type]
    assert offset is not None
    epoch = _FIXED.get(offset)
    if epoch is None:  # a zone has a handful of offsets: one tzinfo each, not one per figure
        epoch = _FIXED[offset] = _EPOCH.astimezone(timezone(offset))
    return epoch


def _local(us: int, tz: object) -> datetime:
    """The instant in ``tz``'s wall time with a fixed offset (as ``astimezone`` then that offset)."""
    hour = us // _HOUR
    key = (tz, hour)
    epoch = _HOURS.get(key, _EPOCH)
    if epoch is _EPOCH:
        if len(_HOURS) > 200_000:  # a long-running server: bounded
            _HOURS.clear()
        first, last = _offset_epoch(hour * _HOUR, tz), _offset_epoch(hour * _HOUR + _HOUR - 1, tz)
        epoch = _HOURS[key] = first if first is last else None
    if epoch is None:  # the offset changes within this hour: ask the zone
        epoch = _offset_epoch(us, tz)
    return epoch + timedelta(0, 0, us)  # fixed offset: the wall time moves with the instant


def _us(delta: timedelta) -> int:
    return delta // _ONE_US


@dataclass
class _Ticket:
    opened: list[tuple[int, str, int]] = field(default_factory=list)  # (at, severity, position)
    changes: list[tuple[int, str, int]] = field(default_factory=list)
    responses: list[tuple[int, int]] = field(default_factory=list)
    kind: tuple[int, str] | None = None  # (position, kind): the latest recorded wins
    logs: list[tuple[int, int, int]] = field(default_factory=list)  # (at, seconds, position)


@dataclass
class _Facts:
    tickets: dict[str, _Ticket] = field(default_factory=lambda: defaultdict(_Ticket))
    engaged: list[tuple[int, str, int]] = field(default_factory=list)  # (at, level, position)
    recoveries: list[tuple[int, int, str, int]] = field(default_factory=list)  # (at, restored_to, id, pos)
    pins: dict[tuple[str, int], tuple[int, frozenset[date]]] = field(default_factory=dict)
    facts: dict[int, Fact] = field(default_factory=dict)


_LATER: Final = frozenset({TicketSeverityChanged, TicketResponded, TicketClassified, SupportTimeLogged})


def _collect(records: Iterable[Recorded], policy: Policy) -> _Facts:
    """One pass, one branch per fact type; keeps what concerns this contract and its service.

    A ticket id names the contract of its first opening (by position): the ledger refuses an
    opening of it for another contract (decisions, issue 18 point 2), so such an opening, if
    given, makes no ticket of this contract (``support_index.Ticket.owner``, the follower's rule).
    """
    out = _Facts()
    ours: set[str] = set()
    claimed: dict[str, tuple[int, str]] = {}  # ticket -> (position, contract) of its first opening
    later: list[Recorded] = []
    contract, service = policy.contract_id, policy.service
    tickets, facts = out.tickets, out.facts
    # Branches on the exact type (facts are final structs): one lookup per record instead
    # of a class pattern tried after another, on the pass every record of the month takes.
    for rec in records:
        fact, pos = rec.fact, rec.position
        kind = type(fact)
        if kind is TicketOpened:
            assert isinstance(fact, TicketOpened)
            first = claimed.get(fact.ticket)
            if first is None or pos < first[0]:
                claimed[fact.ticket] = (pos, fact.contract)
            if fact.contract != contract:
                continue
            tickets[fact.ticket].opened.append((to_us(fact.at), fact.severity, pos))
            ours.add(fact.ticket)
        elif kind in _LATER:
            later.append(rec)
            continue
        elif kind is SupportEngaged:
            assert isinstance(fact, SupportEngaged)
            if fact.service != service:
                continue
            out.engaged.append((to_us(fact.at), fact.level, pos))
        elif kind is RecoveryPerformed:
            assert isinstance(fact, RecoveryPerformed)
            if fact.service != service:
                continue
            out.recoveries.append((to_us(fact.at), to_us(fact.restored_to), fact.recovery, pos))
        elif kind is HolidaysPinned:
            assert isinstance(fact, HolidaysPinned)
            key = (fact.country, fact.year)
            if key not in out.pins or out.pins[key][0] < pos:  # the latest pin wins
                out.pins[key] = (pos, frozenset(date.fromisoformat(d) for d in fact.dates))
        else:
            continue
        facts[pos] = fact
    for ticket in [t for t in ours if claimed[t][1] != contract]:  # another contract's ticket id
        ours.discard(ticket)
        for _, _, pos in tickets.pop(ticket).opened:
            del facts[pos]
    # Facts about tickets never opened for this contract change nothing. By exact type, as above.
    for rec in later:
        f: Any = rec.fact  # one of _LATER's types, told apart by exact type below
        pos = rec.position
        ticket = f.ticket
        if ticket not in ours:
            continue
        t = tickets[ticket]
        kind = type(f)
        if kind is TicketResponded:
            t.responses.append((to_us(f.at), pos))
        elif kind is SupportTimeLogged:
            t.logs.append((to_us(f.at), f.seconds, pos))
        elif kind is TicketClassified:
            if t.kind is None or t.kind[0] < pos:
                t.kind = (pos, f.kind)
        else:  # TicketSeverityChanged
            t.changes.append((to_us(f.at), f.severity, pos))
        facts[pos] = f
    return out


def calendar_of(rules: SupportRules, lookup: HolidayLookup) -> SupportCalendar:
    """The support clock of a [support] section, with holiday dates from ``lookup``."""
    return SupportCalendar(rules.timezone, rules.hours, rules.holidays, rules.closures, lookup)


def deadline_of(cal: SupportCalendar, target: SupportTarget, opened: int,
                clock: OpenTimeline | None = None) -> int | None:
    """When a ticket opened at ``opened`` must be answered under ``target`` (``clock``: the same, faster)."""
    if target.business_days is not None:
        if clock is not None:
            return clock.add_business_days(opened, target.business_days)
        return add_business_days(cal, opened, target.business_days)
    assert target.open_time is not None
    if clock is not None:
        return clock.add(opened, _us(target.open_time))
    return add_open_time(cal, opened, _us(target.open_time))


def _mean_text(total_us: int, n: int) -> str:
    """``total_us / n`` microseconds in seconds: exact when the decimal ends, else cut at 1 us toward zero."""
    value = Fraction(total_us, n * _US)
    d, twos, fives = value.denominator, 0, 0
    while d % 2 == 0:
        d, twos = d // 2, twos + 1
    while d % 5 == 0:
        d, fives = d // 5, fives + 1
    places = max(twos, fives) if d == 1 else 6
    scaled = value.numerator * 10**places // value.denominator  # value >= 0: floor truncates
    whole, frac = divmod(scaled, 10**places)
    return f"{whole}.{frac:0{places}d}".rstrip("0").rstrip(".") if places else str(whole)


def year_bounds_us(policy: Policy, ms: int) -> tuple[int, int]:
    """The subscription year holding the month's start: [start, end) from ``year_starts``, local midnight."""
    assert policy.support is not None
    assert policy.support.quota is not None
    mon, day = policy.support.quota.year_starts
    tz = policy.timezone
    year = from_us(ms).astimezone(tz).year
    start = to_us(local_midnight(date(year, mon, day), tz))
    if start > ms:
        year -= 1
        start = to_us(local_midnight(date(year, mon, day), tz))
    return start, to_us(local_midnight(date(year + 1, mon, day), tz))


def year_bounds(policy: Policy, month_start: datetime) -> tuple[datetime, datetime]:
    """The quota's subscription year holding ``month_start``, as aware UTC datetimes."""
    start, end = year_bounds_us(policy, to_us(month_start))
    return from_us(start), from_us(end)


def evaluate_support(
    records: Iterable[Recorded],
    policy: Policy,
    policy_version: int,
    month: str,
    *,
    as_of_position: int,
    stretches: Sequence[Stretch] = (),
    stretch_holidays: Mapping[tuple[str, int], tuple[str, frozenset[date]]] | None = None,
    replay_point: datetime | None = None,
    package: HolidayLookup = package_holidays,
    package_source: str | None = None,
) -> SupportReport:
    """The month's support figures from the recorded facts (section 6.3).

    ``stretch_holidays``: the holidays (source and dates) that shaped ``stretches`` (the
    availability fold's maintenance verdicts): named and digested with the clock's own
    when engagement reads the stretches.
    """
    tz = policy.timezone
    ms_dt, me_dt = month_bounds(month, tz)
    ms, me = to_us(ms_dt), to_us(me_dt)
    rp = to_us(replay_point) if replay_point is not None else None
    horizon = max(ms, min(me, rp)) if rp is not None else me
    # As the ledger knew it at the replay point: a fact dated after it (recorded ahead of its
    # `at`) had not happened yet, as availability's outage stops at the horizon.
    facts = _collect(records, policy)
    rules = policy.support
    book = HolidayBook({k: v[1] for k, v in facts.pins.items()}, package, package_source)
    used: set[int] = set()

    targets = {t.severity: t for t in rules.targets} if rules is not None else {}
    cal = calendar_of(rules, book) if rules is not None else None
    # Every ticket's open time and deadline by bisection (tickets come in opening order).
    clock = OpenTimeline(cal) if cal is not None else None
    lines: list[TicketLine] = []
    unknown: list[str] = []
    per_target: dict[str, list[TicketLine]] = defaultdict(list)
    response_us: dict[str, list[int]] = defaultdict(list)
    month_tickets = []
    for ticket, t in facts.tickets.items():
        at, severity, pos = min(t.opened)  # opened twice: the earliest opening counts
        if ms <= at < me and (rp is None or at <= rp):
            month_tickets.append((at, ticket, severity, pos, t))
    for at, ticket, severity, opened_pos, t in sorted(month_tickets):
        first = min((r for r in t.responses if rp is None or r[0] <= rp), default=None)
        upto = first[0] if first is not None else horizon
        events = {opened_pos}
        changes = sorted(c for c in t.changes if c[0] <= upto) if t.changes else t.changes
        if changes:
            severity = changes[-1][1]
            events.update(c[2] for c in changes)
        if first is not None:
            events.add(first[1])
        if t.kind is not None:
            events.add(t.kind[0])
        target = targets.get(severity)
        if target is None or cal is None:
            unknown.append(ticket)
            used.update(events)
            continue
        end = max(upto, at)
        assert clock is not None
        spent = clock.between(at, end)
        due = (clock.add(at, _us(target.open_time)) if target.kind == "mean" and target.open_time
               else deadline_of(cal, target, at, clock))
        status: Status
        if first is not None:
            status = "met" if due is None or first[0] <= due else "breached"
        else:
            status = "breached" if due is not None and due < horizon else "pending"
        line = TicketLine(
            ticket=ticket,
            severity=severity,
            kind=t.kind[1] if t.kind is not None else "account",
            opened_at=_local(at, tz),
            responded_at=_local(first[0], tz) if first is not None else None,
            target=target.text,
            deadline=_local(due, tz) if due is not None else None,
            response_seconds=seconds(spent),
            status=status,
            events=tuple(sorted(events)),
        )
        lines.append(line)
        per_target[severity].append(line)
        response_us[severity].append(spent)
        used.update(events)

    target_lines: list[PerTicketTarget | MeanTarget] = []
    for target in rules.targets if rules is not None else ():
        mine = per_target.get(target.severity, [])
        if target.kind == "per_ticket":
            count = {s: sum(1 for x in mine if x.status == s) for s in ("met", "breached", "pending")}
            target_lines.append(PerTicketTarget(target.severity, target.text, "per_ticket", len(mine),
                                                count["met"], count["breached"], count["pending"]))
        else:
            assert target.open_time is not None
            spent_all = response_us.get(target.severity, [])
            n, total = len(spent_all), sum(spent_all)
            met = n == 0 or total < _us(target.open_time) * n  # "below" the target: strictly
            target_lines.append(MeanTarget(target.severity, target.text, "mean", n,
                                           _mean_text(total, n) if n else None, met))

    engagements = None
    if rules is not None and rules.engagement_level is not None:
        assert rules.engagement_within is not None
        within = _us(rules.engagement_within)
        level_at = sorted((at, pos) for at, level, pos in facts.engaged if level == rules.engagement_level
                          and (rp is None or at <= rp))
        out_e: list[EngagementLine] = []
        for s in stretches:
            if not ms <= s.start_us < horizon:
                continue
            hit = next(((at, pos) for at, pos in level_at if at >= s.start_us), None)
            due_e = s.start_us + within
            ev = set(s.events)
            if hit is not None:
                ev.add(hit[1])
                e_status: Status = "met" if hit[0] <= due_e else "breached"
                took = hit[0] - s.start_us
            else:
                e_status = "breached" if due_e < horizon else "pending"
                took = max(0, horizon - s.start_us)
            out_e.append(EngagementLine(_local(s.start_us, tz), _local(hit[0], tz) if hit else None,
                                        seconds(took), e_status, tuple(sorted(ev))))
            used.update(ev)
        engagements = tuple(out_e)

    recoveries = None
    if rules is not None and rules.max_data_loss is not None:
        allowed = _us(rules.max_data_loss)
        out_r: list[RecoveryLine] = []
        for at, restored, rid, pos in sorted(facts.recoveries):
            if ms <= at < me and (rp is None or at <= rp):
                loss = at - restored
                out_r.append(RecoveryLine(rid, _local(at, tz), _local(restored, tz), seconds(loss),
                                          "met" if loss <= allowed else "breached", (pos,)))
                used.add(pos)
        recoveries = tuple(out_r)

    quota = None
    if rules is not None and rules.quota is not None:
        q = rules.quota
        ys, ye = year_bounds_us(policy, ms)
        granted = int(policy.annual_fee // q.hours_per) * 3600
        drawn = exempt = 0
        for t in facts.tickets.values():
            kind = t.kind[1] if t.kind is not None else "account"
            for at, secs, pos in t.logs:
                if ys <= at < min(me, ye) and (rp is None or at <= rp):
                    if kind in q.exempt:
                        exempt += secs
                    else:
                        drawn += secs
                    used.add(pos)
                    used.add(min(t.opened)[2])
                    if t.kind is not None:
                        used.add(t.kind[0])
        remaining = granted - drawn
        quota = QuotaLine(_local(ys, tz), _local(ye, tz), granted, Decimal(drawn), Decimal(exempt),
                          Decimal(remaining), Decimal(remaining) < seconds(_us(q.warn_below)))

    if engagements is not None and stretch_holidays:
        for key, got in stretch_holidays.items():
            book.used.setdefault(key, got)
    holidays = tuple(HolidayUse(c, y, src) for (c, y), (src, _) in sorted(book.used.items()))
    return SupportReport(
        contract=policy.contract_id,
        month=month,
        timezone=tz.key,
        policy_version=policy_version,
        tickets=tuple(lines),
        targets=tuple(target_lines),
        unknown_severity=tuple(unknown),
        engagements=engagements,
        recoveries=recoveries,
        quota=quota,
        holidays=holidays,
        as_of_position=as_of_position,
        digest=support_digest(policy, policy_version, month,
                              (facts.facts[p] for p in used if p in facts.facts), book),
    )


def support_digest(policy: Policy, policy_version: int, month: str, facts: Iterable[Fact],
                   book: HolidayBook) -> str:
    """"sha256:<hex>" over what ``projections.digest`` covers, plus the holiday dates the figures used."""
    contents = sorted({canonical(f) for f in facts})
    payload = {
        "contract": policy.contract_id,
        "month": month,
        "policy_version": policy_version,
        "policy": msgspec.Raw(_encoder.encode(policy.source)),
        "facts": [msgspec.Raw(c) for c in contents],
        "holidays": [[c, y, sorted(d.isoformat() for d in dates)]
                     for (c, y), (_, dates) in sorted(book.used.items())],
    }
    return "sha256:" + sha256(_encoder.encode(payload)).hexdigest()
