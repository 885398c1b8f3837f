"""Pass 1 of the month fold: read every record once and keep what concerns one contract's service.

One branch per fact type, positions in microseconds (``projections.timeline``); what is
kept is grouped the way pass 2 (``projections.sources``) turns it into intervals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime

import msgspec
from msgspec import field

from ledger import events as ev
from ledger.policy import Policy
from projections.credit import Claim
from projections.timeline import EPOCH, FAIL, MICROSECOND, OPEN, RECOVER, impact_rank, probe_rank, to_us


class Facts(msgspec.Struct):
    """The facts that can matter for one contract's service, grouped for pass 2."""

    probes: dict[str, list[tuple[int, int, int]]] = field(default_factory=lambda: defaultdict(list))
    ignored_probes: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    incidents: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=lambda: defaultdict(list))
    resolutions: dict[str, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))
    announced: dict[str, list[tuple[int, datetime, ev.MaintenanceAnnounced]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    cancelled: dict[str, list[tuple[int, ev.MaintenanceCancelled]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    completed: dict[str, list[tuple[int, ev.MaintenanceCompleted]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    exclusions: list[tuple[int, ev.ForceMajeureDeclared | ev.ExclusionDeclared]] = field(default_factory=list)
    revoked: dict[str, list[tuple[int, ev.ExclusionRevoked]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    claims: list[Claim] = field(default_factory=list)
    # Pinned holidays by (country, year): the latest pin's position and dates. Not in ``facts``:
    # the digest covers the dates a figure used (pinned or not), not the pin itself.
    pins: dict[tuple[str, int], tuple[int, frozenset[date]]] = field(default_factory=dict)
    facts: dict[int, ev.Fact] = field(default_factory=dict)  # position -> fact, for the digest


def collect(records: Iterable[ev.Recorded], policy: Policy, month: str) -> Facts:
    """One pass, one branch per fact type; keeps what concerns this service and contract."""
    out = Facts()
    service, wanted = policy.service, frozenset(policy.probes)
    # Probe facts are nearly all of a busy month's: taken first, with the dictionaries,
    # ``to_us`` and ``probe_rank`` inlined (the same values; any other fact takes the match).
    probes, ignored, kept = out.probes, out.ignored_probes, out.facts
    failed, probe_facts = ev.ProbeFailed, (ev.ProbeFailed, ev.ProbeRecovered)
    for rec in records:
        pos, fact = rec.position, rec.fact
        if isinstance(fact, probe_facts):
            if fact.service == service:
                probe, at = fact.probe, (fact.at - EPOCH) // MICROSECOND
                if probe in wanted:
                    probes[probe].append((at, FAIL if isinstance(fact, failed) else RECOVER, pos))
                else:
                    ignored[probe].append(at)
                kept[pos] = fact
            continue
        match fact:
            case ev.ProbeFailed() | ev.ProbeRecovered() if fact.service == service:
                rank = probe_rank(fact)
                if fact.probe in wanted:
                    out.probes[fact.probe].append((to_us(fact.at), rank, pos))
                else:
                    out.ignored_probes[fact.probe].append(to_us(fact.at))
            case ev.IncidentOpened() if fact.service == service:
                out.incidents[fact.incident].append((to_us(fact.at), OPEN, impact_rank(fact), pos))
            case ev.IncidentResolved():
                # No service on a resolution: keep them all, only ids opened on our service are read.
                out.resolutions[fact.incident].append((to_us(fact.at), pos))
            case ev.MaintenanceAnnounced() if fact.service == service:
                out.announced[fact.maintenance].append((pos, rec.recorded_at, fact))
            case ev.MaintenanceCancelled():
                out.cancelled[fact.maintenance].append((pos, fact))
            case ev.MaintenanceCompleted():
                out.completed[fact.maintenance].append((pos, fact))
            case ev.ForceMajeureDeclared() | ev.ExclusionDeclared() if fact.service == service:
                out.exclusions.append((pos, fact))
            case ev.ExclusionRevoked():
                out.revoked[fact.ref].append((pos, fact))
            case ev.CreditClaimFiled() if fact.contract == policy.contract_id and fact.month == month:
                out.claims.append(Claim(at=fact.at, recorded_at=rec.recorded_at, position=pos))
            case ev.HolidaysPinned():
                key = (fact.country, fact.year)
                if key not in out.pins or out.pins[key][0] < pos:  # the latest pin wins
                    out.pins[key] = (pos, frozenset(date.fromisoformat(d) for d in fact.dates))
                continue
            case ev.ContractRegistered() | ev.ContractAmended():
                continue  # the caller resolved the policy version already
            case _:
                continue  # another service's fact
        out.facts[pos] = fact
    return out

