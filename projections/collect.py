"""Pass 1 of the month fold: read every record once and keep what concerns one contract's service.

One branch per fact type, positions in microseconds (``projections.timeline``); what is
kept is grouped the way pass 2 (``projections.sources``) turns it into intervals.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import date, datetime

from ledger import events as ev
from ledger.policy import Policy
from projections.credit import Claim
from projections.timeline import EPOCH, FAIL, MICROSECOND, OPEN, RECOVER, impact_rank, probe_rank, to_us


class Facts:
    """The facts that can matter for one contract's service, grouped for pass 2.

    A plain class: a msgspec struct type cost every report's start-up about 0.2M instructions
    (its twelve default factories), and this one is only filled and read, never encoded.
    """

    __slots__ = ("announced", "cancelled", "claims", "completed", "exclusions", "facts", "ignored_probes",
                 "incidents", "pins", "probes", "resolutions", "revoked")

    def __init__(self) -> None:
        self.probes: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
        self.ignored_probes: dict[str, list[int]] = defaultdict(list)
        self.incidents: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
        self.resolutions: dict[str, list[tuple[int, int]]] = defaultdict(list)
        self.announced: dict[str, list[tuple[int, datetime, ev.MaintenanceAnnounced]]] = defaultdict(list)
        self.cancelled: dict[str, list[tuple[int, ev.MaintenanceCancelled]]] = defaultdict(list)
        self.completed: dict[str, list[tuple[int, ev.MaintenanceCompleted]]] = defaultdict(list)
        self.exclusions: list[tuple[int, ev.ForceMajeureDeclared | ev.ExclusionDeclared]] = []
        self.revoked: dict[str, list[tuple[int, ev.ExclusionRevoked]]] = defaultdict(list)
        self.claims: list[Claim] = []
        # Pinned holidays by (country, year): the latest pin's position and dates. Not in ``facts``:
        # the digest covers the dates a figure used (pinned or not), not the pin itself.
        self.pins: dict[tuple[str, int], tuple[int, frozenset[date]]] = {}
        self.facts: dict[int, ev.Fact] = {}  # position -> fact, for the digest


def collect(records: Iterable[ev.Recorded], policy: Policy, month: str,
            instants: Mapping[int, int] | None = None) -> Facts:
    """One pass, one branch per fact type; keeps what concerns this service and contract.

    ``instants``: probe facts' ``at`` in microseconds by position, where the caller has them
    (``Known.instants``, a rebuild's); a position it lacks is converted here.
    """
    out = Facts()
    service, wanted = policy.service, frozenset(policy.probes)
    # Probe facts are nearly all of a busy month's: taken first, with the dictionaries,
    # ``to_us`` and ``probe_rank`` inlined (the same values; any other fact takes the match).
    probes, ignored, kept = out.probes, out.ignored_probes, out.facts
    failed, probe_facts = ev.ProbeFailed, (ev.ProbeFailed, ev.ProbeRecovered)
    known_at = (instants if instants is not None else {}).get
    for rec in records:
        pos, fact = rec.position, rec.fact
        if isinstance(fact, probe_facts):
            if fact.service == service:
                probe = fact.probe
                at = known_at(pos)
                if at is None:
                    at = (fact.at - EPOCH) // MICROSECOND
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

