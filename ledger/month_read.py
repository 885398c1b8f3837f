"""A contract-month's availability facts, read by month instead of by the service's history (issue 17).

The fold (``projections.availability``) keeps what touches ``[month start - 1 us, horizon)``
and, past the horizon, a downtime stretch that began in the month. What can matter is:

- **probe reports**: every report of the UTC days from the microsecond before the month to
  its end, of every probe of the service (one index seek per probe name finds them, as keys
  put the probe before the day; reports of probes outside the policy are counted); for each
  probe of the policy, its earlier days back to the latest one holding one of its recoveries
  (one index seek per day with reports): the probe is up after its last recovery whatever
  came before, so a source that starts later is the same as in a full replay, and one that
  ends by then ends before the month;
- **windows** (maintenance, force majeure, exclusions) touching one of the month's UTC months,
  and the long ones (``keys.window_key``), every version of each maintenance window (``a:``);
- **incident openings** from the microsecond before the month on, and every earlier one that
  no resolution of its incident follows before the month (``unclosed_openings``, in the key
  index alone: an opening's and a resolution's keys carry their instants); an incident opened
  years ago and never resolved is still open, and is found so, without reading the others;
- the corrections that refer to any of those (``i:``, ``m:``, ``x:``) and the contract's claims;
- **after the month**, only if a probe or incident source of the read facts reaches the
  horizon (a stretch may run on, and a probe's recovery after the month is cited by the
  month's intervals): every probe report and window of the later months.

A service whose first fact of a bucketed type under ``s:`` is filed there alone (a store
written before these keys; a probe report is now under its day alone, never under ``s:``)
is read whole, as before (``s:`` and the probe range, ``keys.read_service_states``);
``ledger verify`` refuses a fact filed the earlier way after the first one filed this way,
so the first one decides for the service.
docs/decisions.md (issue 17, hA) has the reasoning; ``tests/integration/test_month_bounded.py``
compares the result with a full replay.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Final

from ledger.calendar import month_bounds
from ledger.contracts import ContractVersion, contract_versions
from ledger.errors import NotFound
from ledger.events import (
    IncidentOpened,
    IncidentResolved,
    MaintenanceAnnounced,
    ProbeFailed,
    ProbeRecovered,
    Recorded,
    decode_state,
)
from ledger.persistence.keys import (
    BUCKETED,
    claims_key,
    contract_key,
    index_keys,
    month_keys,
    openings_prefix,
    prefix_end,
    probe_prefix,
    read_related,
    reference_key,
    service_key,
    utc_day,
    utc_instant,
    utc_months,
    versions_key,
    window_key,
    windows_from,
)
from ledger.persistence.port import LedgerRecorder
from ledger.policy import Policy

_BUCKETED_TAGS: Final = tuple(str(cls.__struct_config__.tag) for cls in BUCKETED)
_US: Final = timedelta(microseconds=1)


def versions_upto(recorder: LedgerRecorder, contract: str, upto: int) -> list[ContractVersion]:
    """The versions of ``contract`` recorded up to position ``upto``; none: ``unregistered``."""
    versions = contract_versions(recorder.read_keyed([contract_key(contract)], upto)).get(contract)
    if not versions:
        raise unregistered(recorder, contract, upto)
    return versions


def unregistered(recorder: LedgerRecorder, contract: str, upto: int) -> NotFound:
    """NotFound for ``contract`` at position ``upto``; a replay before its registration names both.

    Without the positions, a replay point before the registration said only "is not
    registered", of a contract that `ledger contract list` shows.
    """
    last = recorder.last_position()
    later = contract_versions(recorder.read_keyed([contract_key(contract)], last)).get(contract)
    if upto >= last or not later:
        return NotFound(f"contract `{contract}` is not registered")
    return NotFound(f"contract `{contract}` was not registered yet at the replay point, position {upto} "
                    f"(it was registered at position {later[0].position})")


def _next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year + mon // 12:04d}-{mon % 12 + 1:02d}"


def is_bucketed(recorder: LedgerRecorder, service: str, upto: int) -> bool:
    """Whether a service's facts up to ``upto`` are filed under the keys that carry time (else: whole)."""
    own = service_key(service)
    first = recorder.first_filed(own, _BUCKETED_TAGS, upto)
    if first is None:
        return True  # none under ``s:`` (probe reports are filed under their day alone): nothing to miss
    rec = decode_state(*first)
    keys = index_keys(rec.fact)
    if own not in keys:
        return False  # a probe report under ``s:``: filed the earlier way
    return recorder.filed_under(next(k for k in keys if k != own), rec.position)


class _Read:
    """The facts read so far by position, and the keys whose facts (and corrections) are in."""

    def __init__(self, recorder: LedgerRecorder, upto: int) -> None:
        self.recorder, self.upto = recorder, upto
        self.got: dict[int, Recorded] = {}
        self.keys: set[str] = set()
        self.fresh: list[Recorded] = []  # read, their corrections not yet

    def add(self, rows: Iterable[tuple[int, bytes]]) -> list[Recorded]:
        new = []
        for position, state in rows:
            if position not in self.got:
                rec = self.got[position] = decode_state(position, state)
                new.append(rec)
        self.fresh += new
        return new

    def exact(self, keys: list[str]) -> list[Recorded]:
        keys = [k for k in keys if k not in self.keys]
        self.keys.update(keys)
        return self.add(self.recorder.read_keyed_states(keys, self.upto)) if keys else []

    def range(self, lo: str, hi: str) -> None:
        self.add(self.recorder.read_key_range_states(lo, hi, self.upto))

    def close(self) -> None:
        """Read the corrections referring to what was read, and every version of its windows."""
        while self.fresh:
            fresh, self.fresh = self.fresh, []
            refs: set[str] = set()
            for rec in fresh:
                fact = rec.fact
                if (ref := reference_key(fact)) is not None:
                    refs.add(ref)
                if type(fact) is MaintenanceAnnounced:
                    refs.add(versions_key(fact.maintenance))
            self.exact(sorted(refs))


def _probe_names(recorder: LedgerRecorder, service: str, upto: int) -> list[str]:
    """Every probe name (as keys spell it) a service's reports up to ``upto`` have: one index seek each."""
    base = probe_prefix(service)
    hi, lo, names = prefix_end(base), base, []
    while (key := recorder.edge_key(lo, hi, upto)) is not None:
        name = key[len(base):-11]  # <base><name>@<YYYY-MM-DD>
        names.append(name)
        lo = prefix_end(f"{base}{name}@")
    return names


def _walk_back(read: _Read, service: str, probe: str, before: str) -> None:
    """A probe's reports of the UTC days before ``before``, back to its latest day with a recovery."""
    prefix = probe_prefix(service, probe)
    while (key := read.recorder.edge_key(prefix, prefix + before, read.upto, last=True)) is not None:
        if any(isinstance(r.fact, ProbeRecovered) and r.fact.service == service and r.fact.probe == probe
               for r in read.exact([key])):
            return
        before = key[len(prefix):]


def _reaches(records: list[Recorded], policy: Policy, horizon: int) -> bool:
    """Whether a probe or outage incident source of ``records`` runs to ``horizon`` or past it."""
    from projections.sources import incident_sources, probe_sources
    from projections.timeline import OPEN, impact_rank, probe_rank, to_us

    service, wanted = policy.service, frozenset(policy.probes)
    probes: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    opened: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
    resolved: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for rec in records:
        fact = rec.fact
        if isinstance(fact, (ProbeFailed, ProbeRecovered)):
            if fact.service == service and fact.probe in wanted:
                probes[fact.probe].append((to_us(fact.at), probe_rank(fact), rec.position))
        elif isinstance(fact, IncidentOpened):
            if fact.service == service:
                opened[fact.incident].append((to_us(fact.at), OPEN, impact_rank(fact), rec.position))
        elif isinstance(fact, IncidentResolved):
            resolved[fact.incident].append((to_us(fact.at), rec.position))
    for probe, evs in probes.items():
        if any(s.end >= horizon for s in probe_sources(probe, evs, horizon)):
            return True
    return any(s.end >= horizon for inc, evs in opened.items()
               for s in incident_sources(inc, evs, resolved.get(inc, []), horizon))


def month_records(recorder: LedgerRecorder, policy: Policy, month: str, upto: int,
                  replay_point: datetime | None = None) -> list[Recorded]:
    """Every fact up to ``upto`` that the month's figures, citations and digest can depend on, by position.

    The contract's versions and pinned holidays are read by the caller.
    """
    from projections.timeline import to_us

    service, contract = policy.service, policy.contract_id
    if not is_bucketed(recorder, service, upto):
        whole = read_related(recorder, month_keys([service], [contract]), upto)
        return sorted(whole, key=lambda r: r.position)
    ms_dt, me_dt = month_bounds(month, policy.timezone)
    ms, me = to_us(ms_dt), to_us(me_dt)
    rp = to_us(replay_point) if replay_point is not None else None
    horizon = max(ms, min(me, rp)) if rp is not None else me
    months = utc_months(ms_dt - _US, me_dt)  # the fold looks at the microsecond before the month too
    first, last_day = utc_day(ms_dt - _US), utc_day(me_dt - _US)
    after = utc_day(datetime.fromisoformat(last_day).replace(tzinfo=UTC) + timedelta(days=1))
    read = _Read(recorder, upto)
    base = probe_prefix(service)
    names = _probe_names(recorder, service, upto)
    for name in names:  # every probe's reports of the month's UTC days (others' are counted)
        read.range(f"{base}{name}@{first}", f"{base}{name}@{after}")
    for probe in policy.probes:
        _walk_back(read, service, probe, first)
    read.fresh = []  # probe reports are corrected by nothing
    # Incidents: every opening from the microsecond before the month on, and each earlier one
    # that no resolution follows before the month (the index alone tells).
    since, until = utc_instant(ms_dt - _US), utc_instant(ms_dt)
    opened = recorder.unclosed_openings(openings_prefix(service), since, until, upto)
    read.add(recorder.read_position_states(opened))
    read.exact([window_key(service, None), *(window_key(service, m) for m in months), claims_key(contract)])
    read.close()
    if _reaches(list(read.got.values()), policy, horizon):
        for name in names:
            read.range(f"{base}{name}@{after}", prefix_end(f"{base}{name}@"))
        read.fresh = []
        read.range(*windows_from(service, _next_month(months[-1])))
        read.close()
    return sorted(read.got.values(), key=lambda r: r.position)
