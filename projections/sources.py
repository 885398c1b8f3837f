"""Pass 2 of the month fold: each kind of fact becomes sources, half-open intervals of outage or excuse.

Probe down-times, outage incidents, maintenance windows and exclusions, in integer
microseconds, each carrying the positions of the facts behind it. The rules that refuse a
window or an exclusion also leave a finding for the auditor here, where they are decided.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec

from ledger.calendar import HolidayLookup, add_business_days, business_intervals, holiday_dates
from ledger.events import ForceMajeureDeclared, MaintenanceAnnounced, canonical
from ledger.policy import Policy, format_duration
from projections.collect import Facts
from projections.explain import ahead, business_hours, late_text, local_text
from projections.model import Finding
from projections.timeline import FAIL, OPEN, OUTAGE, RESOLVE, to_us

# "unannounced": the part of a window before its announcement, which excuses nothing (INTERFACE.md
# section 2: a window only exists from its announced_at); it is named in the reason all the same.
SourceKind = Literal["probe", "incident", "maintenance", "nonconforming", "unannounced", "exclusion"]


class Source(msgspec.Struct, frozen=True):
    """A half-open interval [start, end) in microseconds that can make or classify outage."""

    start: int
    end: int
    kind: SourceKind
    name: str  # probe name, incident id, maintenance id, exclusion id: sorts reasons
    label: str  # the rule, in words
    events: tuple[int, ...]


def probe_sources(probe: str, events: list[tuple[int, int, int]], horizon: int) -> list[Source]:
    """Down from a failure until the next recovery by `at`; no recovery: down until the horizon."""
    out: list[Source] = []
    down_since: int | None = None
    started_by: list[int] = []
    for at, rank, pos in sorted(events):
        if rank == FAIL:
            if down_since is None:
                down_since, started_by = at, [pos]
            elif at == down_since:
                started_by.append(pos)  # same-instant duplicates all start it: order-independent
            # a later failure while down changes nothing
        elif down_since is not None:
            if at > down_since:
                out.append(Source(down_since, at, "probe", probe, probe, (*started_by, pos)))
            down_since = None
        # a recovery while up changes nothing
    if down_since is not None and down_since < horizon:
        out.append(Source(down_since, horizon, "probe", probe, probe, tuple(started_by)))
    return out


def incident_sources(
    incident: str, opened: list[tuple[int, int, int, int]], resolved: list[tuple[int, int]], horizon: int
) -> list[Source]:
    """Outage while open with impact outage; a re-opening changes the impact from its `at`."""
    label = f"incident {incident} (impact outage)"
    steps = sorted([*opened, *((at, RESOLVE, 0, pos) for at, pos in resolved)])
    out: list[Source] = []
    is_open = False
    since: int | None = None  # start of the current outage stretch
    started_by: list[int] = []
    for at, rank, impact, pos in steps:
        if rank == OPEN:
            is_open = True
            if impact == OUTAGE:
                if since is None:
                    since, started_by = at, [pos]
                elif at == since:
                    started_by.append(pos)
            elif since is not None:
                # downgraded while open: the outage part ends here
                if at > since:
                    out.append(Source(since, at, "incident", incident, label, (*started_by, pos)))
                since = None
        elif is_open:
            if since is not None and at > since:
                out.append(Source(since, at, "incident", incident, label, (*started_by, pos)))
            is_open, since = False, None
    if since is not None and since < horizon:
        out.append(Source(since, horizon, "incident", incident, label, tuple(started_by)))
    return out



def _verdict(mid: str, ann: MaintenanceAnnounced, policy: Policy,
             holidays: HolidayLookup = holiday_dates) -> tuple[bool, str]:
    """Whether a window conforms to the maintenance clause, and the rule in words."""
    rules = policy.maintenance
    assert rules is not None
    parts: list[str] = []
    notice = ann.starts_at - ann.announced_at
    if rules.min_notice.business_days is not None:
        n = rules.min_notice.business_days
        due = add_business_days(ann.announced_at, n, policy.calendar, holidays)
        # No instant to reach (past the end of datetime's calendar): the notice is never enough.
        ok = due is not None and ann.starts_at >= due
        runs_to = "past the end of the calendar" if due is None else f"to {local_text(due, policy)}"
        parts.append(
            f"announced {ahead(notice)}; {rules.min_notice.describe()} required "
            f"(notice from {local_text(ann.announced_at, policy)} runs {runs_to})"
        )
    else:
        assert rules.min_notice.fixed is not None
        ok = notice >= rules.min_notice.fixed
        parts.append(f"announced {ahead(notice)}; {rules.min_notice.describe()} required")
    if rules.outside_business_hours:
        first = next(business_intervals(ann.starts_at, ann.ends_at, policy.calendar, holidays), None)
        hours = business_hours(policy)
        if first is not None:
            ok = False
            parts.append(f"overlaps business hours {hours} on {local_text(first[0], policy)}")
        else:
            parts.append(f"outside business hours {hours}")
    if ok:
        tail = "conforming, counted in M"
    elif rules.nonconforming == "emergency":
        tail = "non-conforming: emergency maintenance, counted in M"
    else:
        tail = "non-conforming, counted as downtime"
    return ok, f"maintenance {mid} {'; '.join(parts)} ({tail})"


class Scope:
    """The month being evaluated, and the findings its rules leave for the auditor.

    A plain class (a msgspec struct type cost every report's start-up about 0.15M instructions):
    one is made per evaluation, filled and read, never encoded.
    """

    __slots__ = ("findings", "holidays", "horizon", "looked_up", "month_end", "month_start", "policy")

    def __init__(self, policy: Policy, month_start: int, month_end: int, horizon: int,
                 holidays: HolidayLookup = holiday_dates) -> None:
        self.policy = policy
        self.month_start = month_start
        self.month_end = month_end
        self.horizon = horizon
        # Public holidays for the notice in business days and business hours: pinned dates where
        # the facts pin them (``HolidayBook``), else the package's.
        self.holidays = holidays
        self.findings: list[Finding] = []
        # The country-years each window's verdict looked up, by the window's position: the report
        # names (and its digest covers) those of the windows its figures cite, no others (a window
        # that cannot touch the month is not even read by the reporting view).
        self.looked_up: dict[int, dict[tuple[str, int], frozenset[date]]] = {}

    def lookup_for(self, position: int) -> HolidayLookup:
        """``holidays``, remembering under ``position`` each country-year asked for (and its dates)."""
        seen = self.looked_up.setdefault(position, {})
        holidays = self.holidays

        def get(country: str, year: int) -> frozenset[date]:
            dates = seen.get((country, year))
            if dates is None:
                dates = seen[(country, year)] = holidays(country, year)
            return dates

        return get

    def in_month(self, start: datetime, end: datetime) -> bool:
        return to_us(start) < self.month_end and to_us(end) > self.month_start

    def find(self, kind: str, ref: str, text: str, *events: int) -> None:
        self.findings.append(Finding(kind=kind, ref=ref, text=text, events=tuple(sorted(set(events)))))


def maintenance_sources(ctx: Scope, facts: Facts) -> list[Source]:
    """Windows in force: the latest announcement per id, shortened by completion, unless cancelled."""
    out: list[Source] = []
    policy = ctx.policy
    for mid in sorted(facts.announced):
        versions = facts.announced[mid]
        # Latest announced_at wins (a re-announcement is new notice); exact ties by content,
        # so neither the store nor import order can change which version is in force.
        pos, recorded_at, ann = max(versions, key=lambda v: (v[2].announced_at, canonical(v[2]), v[0]))
        if to_us(ann.ends_at) < ctx.month_start:
            # Over before the month (a completion only shortens it): no finding, and the fold
            # drops sources ending before the month, so its verdict need not be written.
            continue
        relevant = ctx.in_month(ann.starts_at, ann.ends_at)
        if relevant:
            for old_pos, _, old in sorted(versions, key=lambda v: (v[2].announced_at, v[0])):
                if old_pos != pos and old != ann:
                    ctx.find(
                        "superseded",
                        mid,
                        f"announcement of maintenance {mid} at {old.announced_at.isoformat()} superseded by "
                        f"the one at {ann.announced_at.isoformat()}",
                        old_pos,
                        pos,
                    )
            if recorded_at > ann.announced_at:
                ctx.find(
                    "backdated_notice",
                    mid,
                    f"maintenance {mid} says it was announced at {ann.announced_at.isoformat()} but was "
                    f"recorded at {recorded_at.isoformat()}; notice is counted from announced_at",
                    pos,
                )
        cancels = facts.cancelled.get(mid, [])
        if cancels:
            if relevant:
                cpos, cancel = min(cancels, key=lambda c: (c[1].at, c[0]))
                ctx.find(
                    "cancelled",
                    mid,
                    f"maintenance {mid} was cancelled at {cancel.at.isoformat()}: the window excuses nothing",
                    pos,
                    cpos,
                )
            continue
        if policy.maintenance is None:
            if relevant:
                ctx.find(
                    "maintenance_refused",
                    mid,
                    f"maintenance {mid}: the policy has no maintenance clause, the window excuses nothing",
                    pos,
                )
            continue
        start, end = to_us(ann.starts_at), to_us(ann.ends_at)
        ended = ann.ends_at
        events = [pos]
        completions = facts.completed.get(mid, [])
        if completions:
            dpos, done = min(completions, key=lambda c: (c[1].at, c[0]))
            if to_us(done.at) < end:
                end, ended = to_us(done.at), done.at
                events.append(dpos)
                if relevant:
                    ctx.find(
                        "completed_early",
                        mid,
                        f"maintenance {mid} completed at {done.at.isoformat()}, before its announced end: "
                        "outage after that is downtime",
                        pos,
                        dpos,
                    )
        conforming, label = _verdict(mid, ann, policy, ctx.lookup_for(pos))
        if not conforming and relevant:
            ctx.find("maintenance_refused", mid, label, pos)
        announced = to_us(ann.announced_at)
        if announced > start:
            # A window only exists from its announcement (INTERFACE.md section 2), whatever the
            # rule: outage before it is downtime, even for emergency maintenance.
            cut = min(announced, end)
            if relevant:
                ctx.find("announced_late", mid, late_text(mid, ann, ended), *events)
            if start < cut:
                said = local_text(ann.announced_at, policy)
                late = (
                    f"maintenance {mid} not yet announced (announced at {said}, "
                    f"{format_duration(ann.announced_at - ann.starts_at)} after it started): a window only "
                    "exists from its announcement, outage before it is downtime"
                )
                out.append(Source(start, cut, "unannounced", mid, late, tuple(events)))
            start = cut
            label += f"; in force only from its announcement at {local_text(ann.announced_at, policy)}"
        if start < end:
            kind: SourceKind = (
                "maintenance"
                if conforming or policy.maintenance.nonconforming == "emergency"
                else "nonconforming"
            )
            out.append(Source(start, end, kind, mid, label, tuple(events)))
    return out



def exclusion_sources(ctx: Scope, facts: Facts) -> list[Source]:
    """Force majeure and exclusions that excuse: excludable category, this contract, not revoked."""
    out: list[Source] = []
    policy = ctx.policy
    # In time order, so findings read the same whatever order the facts arrived in.
    for pos, fact in sorted(facts.exclusions, key=lambda e: (e[1].starts_at, e[1].ends_at, e[0])):
        contract: str | None
        if isinstance(fact, ForceMajeureDeclared):
            xid, category, contract = fact.declaration, "force_majeure", None
            label = f"force majeure {xid}: {fact.reason}"
        else:
            xid, category, contract = fact.exclusion, fact.category, fact.contract
            label = f"exclusion {xid} ({category}): {fact.reason}"
        relevant = ctx.in_month(fact.starts_at, fact.ends_at)
        revocations = facts.revoked.get(xid, [])
        if revocations:
            if relevant:
                why = "; ".join(sorted({r.reason for _, r in revocations}))
                ctx.find("revoked", xid, f"{label} -- revoked: {why}", pos, *(p for p, _ in revocations))
            continue
        if contract is not None and contract != policy.contract_id:
            if relevant:
                ctx.find(
                    "exclusion_refused",
                    xid,
                    f"{label} -- applies to contract {contract} only, not {policy.contract_id}",
                    pos,
                )
            continue
        if category not in policy.excludable:
            if relevant:
                allowed = ", ".join(sorted(policy.excludable)) or "none"
                ctx.find(
                    "exclusion_refused",
                    xid,
                    f"{label} -- category {category} is not excludable under this contract "
                    f"(excludable: {allowed})",
                    pos,
                )
            continue
        out.append(Source(to_us(fact.starts_at), to_us(fact.ends_at), "exclusion", xid, label, (pos,)))
    return out

