"""What a new fact must agree with in what the ledger holds: the names it gives, contract versions.

An incident, a maintenance window, a force-majeure declaration or an exclusion is
named by an id its corrections refer to without naming a service, so one name
must name one thing: a second opening fact that reuses it for another scope is
bad input. A contract fact must make the next version of its contract. Both are
checked in the append transaction, batch by batch, on every path in (``ledger
append``, ``ledger import`` prepared here or in the child process, ``contract
register``/``amend``), against the store and against what the same append gave
earlier, so that every accepted fact is one the projections evaluate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, NamedTuple

from ledger.contracts import ContractVersion, contract_versions
from ledger.errors import BadInput
from ledger.events import (
    FACT_DECODER,
    ContractAmended,
    ContractRegistered,
    ExclusionDeclared,
    Fact,
    ForceMajeureDeclared,
    IncidentOpened,
    MaintenanceAnnounced,
    Recorded,
    SupportTimeLogged,
    TicketOpened,
    decode_state,
)
from ledger.persistence.keys import CONTRACT, EXCLUSION, INCIDENT, MAINTENANCE

UNIT: Final = "\x1f"  # separates the parts of a scope (no name holds a control character)

# A name's claim is (name, scope): the name with its kind's prefix (the key its corrections
# are indexed under) and what it names. Declarations and exclusions share ``x:``, since an
# ``exclusion_revoked`` names either. The kind is part of the scope: one name, one thing.
Claim = tuple[str, str]


def _incident(fact: IncidentOpened) -> Claim:
    return INCIDENT + fact.incident, "incident" + UNIT + fact.service


def _maintenance(fact: MaintenanceAnnounced) -> Claim:
    return MAINTENANCE + fact.maintenance, "maintenance" + UNIT + fact.service


def _force_majeure(fact: ForceMajeureDeclared) -> Claim:
    return EXCLUSION + fact.declaration, "force_majeure" + UNIT + fact.service


def _exclusion(fact: ExclusionDeclared) -> Claim:
    scope = "exclusion" + UNIT + fact.service
    return EXCLUSION + fact.exclusion, scope if fact.contract is None else scope + UNIT + fact.contract


def _ticket(fact: TicketOpened) -> Claim:
    # A ticket id names one contract's ticket: its responses and logs name no contract.
    return "t:" + fact.ticket, "ticket" + UNIT + fact.contract


def _contract(fact: ContractRegistered | ContractAmended) -> Claim:
    return CONTRACT + fact.policy.contract.id, ""


# By exact type, as the key table: looked up once per imported line (None for most facts).
CLAIM_OF: Final[dict[type, Callable[[Any], Claim]]] = {
    IncidentOpened: _incident,
    MaintenanceAnnounced: _maintenance,
    ForceMajeureDeclared: _force_majeure,
    ExclusionDeclared: _exclusion,
    TicketOpened: _ticket,
    ContractRegistered: _contract,
    ContractAmended: _contract,
}
USE: Final = "use"  # the scope of an item that names a ticket without claiming it (a time log)


def _log_use(fact: SupportTimeLogged) -> Claim:
    # Not a claim: its index key needs the contract of the ticket, if opened before it.
    return "t:" + fact.ticket, USE


# What a prepared row carries to the append's checks: a claim, or a ticket a log names.
ROW_CLAIM_OF: Final[dict[type, Callable[[Any], Claim]]] = {**CLAIM_OF, SupportTimeLogged: _log_use}


def ticket_owner(scope: str) -> str | None:
    """The contract of a ticket claim's scope (None for other claims)."""
    kind, _, rest = scope.partition(UNIT)
    return rest if kind == "ticket" else None


OPENING_TAGS: Final = ("incident_opened", "maintenance_announced", "force_majeure_declared",
                       "exclusion_declared", "ticket_opened")

_FIELD: Final = {"incident": "incident", "maintenance": "maintenance", "force_majeure": "declaration",
                 "exclusion": "exclusion", "ticket": "ticket"}
_KIND: Final = {"incident": "an incident", "maintenance": "a maintenance window",
                "force_majeure": "a force-majeure declaration", "exclusion": "an exclusion"}


def claim_of(fact: Fact) -> Claim | None:
    """The name an opening fact gives (or the contract a contract fact versions), if any."""
    of = CLAIM_OF.get(type(fact))
    return None if of is None else of(fact)


def describe(scope: str) -> str:
    """``an incident of service web``, ``an exclusion of service web for contract c1``..."""
    kind, service, *contract = scope.split(UNIT)
    if kind == "ticket":
        return f"a ticket of contract {service}"
    text = f"{_KIND.get(kind, kind)} of service {service}"
    return text + (f" for contract {contract[0]}" if contract else "")


def name_claim(fact: Fact) -> Claim | None:
    """The name an opening fact gives (incident, window, declaration, exclusion), if any."""
    claim = claim_of(fact)
    return None if claim is None or claim[0].startswith(CONTRACT) else claim


def first_uses(records: Iterable[Recorded]) -> dict[str, tuple[str, int]]:
    """Each name's scope and position at its first use, from opening facts in position order."""
    out: dict[str, tuple[str, int]] = {}
    for rec in records:
        if (claim := name_claim(rec.fact)) is not None:
            out.setdefault(claim[0], (claim[1], rec.position))
    return out


# --- contract versions ---------------------------------------------------------------


class ContractState(NamedTuple):
    """What the next version of a contract must agree with."""

    service: str
    timezone: str
    effective_from: str | None  # the latest version's (None: version 1 alone, in force from the start)
    versions: int
    registered: int  # the registration's position


def contract_state(versions: Sequence[ContractVersion]) -> ContractState | None:
    """The state after ``versions`` (None: not registered)."""
    if not versions:
        return None
    last = versions[-1].policy.contract
    return ContractState(last.service, last.timezone, versions[-1].effective_from, len(versions),
                         versions[0].position)


def contract_problem(fact: ContractRegistered | ContractAmended, state: ContractState | None) -> Claim | None:
    """(field of the policy, reason) if ``fact`` is not the next version of its contract, else None."""
    c = fact.policy.contract
    if isinstance(fact, ContractRegistered):
        if c.effective_from is not None:
            return "contract.effective_from", "only an amendment has an effective_from"
        if state is not None:
            return ("contract.id", f"contract `{c.id}` is already registered (position {state.registered}); "
                    "a later version is a contract_amended")
        return None
    if state is None:
        return "contract.id", f"contract `{c.id}` is not registered; register it first"
    # Months are counted in the contract's time zone: a new zone would leave the hours at the
    # switch in no month or in two. Reports and the key index group a contract by its service.
    if c.timezone != state.timezone:
        return ("contract.timezone", f"an amendment keeps the contract's time zone ({state.timezone}), in "
                "which its months are counted; a new contract id is the way")
    if c.service != state.service:
        return ("contract.service", f"an amendment keeps the contract's service ({state.service}); "
                "a new contract id is the way")
    assert c.effective_from is not None  # ContractAmended requires it
    if state.effective_from is not None and c.effective_from <= state.effective_from:
        return ("contract.effective_from", f"{c.effective_from} is not after {state.effective_from}, "
                f"from which version {state.versions} is in force: each amendment starts a later month")
    return None


def _next_state(fact: ContractRegistered | ContractAmended, state: ContractState | None,
                position: int) -> ContractState:
    c = fact.policy.contract
    if state is None:
        return ContractState(c.service, c.timezone, None, 1, position)
    return state._replace(effective_from=c.effective_from, versions=state.versions + 1)


# --- one append's checks -----------------------------------------------------------------

# A fact to check, as the append knows it: (line, position it gets, name, scope, canonical
# content of a contract fact or None). Built for the facts that give a name or version a contract.
Item = tuple[int, int, str, str, bytes | None]


class Lookup(NamedTuple):
    """What the store holds about a batch's names and contracts."""

    names: dict[str, tuple[str, int]]  # name -> (scope, position of its first use)
    contracts: Sequence[str]  # the contract ids asked about
    contract_rows: Sequence[tuple[int, bytes]]  # (position, state) of their versions


NOTHING: Final = Lookup({}, (), ())


class Pending(NamedTuple):
    """What a batch adds, kept once its rows are sent to the store."""

    names: dict[str, tuple[str, int]]
    contracts: dict[str, ContractState]
    owners: dict[int, str]  # position of a time log -> its ticket's contract (opened before it)

    def rows(self) -> list[tuple[str, str, int]]:
        """Rows of the names table: (name, scope, position)."""
        return [(name, scope, position) for name, (scope, position) in self.names.items()]


NO_CHANGE: Final = Pending({}, {}, {})


class Holdings:
    """Names and contract versions as one append sees them: the store's, then its own batches'."""

    def __init__(self, label: str = "line") -> None:
        self.label = label
        self.names: dict[str, tuple[str, int]] = {}
        self.contracts: dict[str, ContractState | None] = {}

    def wanted(self, items: Iterable[Item]) -> tuple[list[str], list[str]]:
        """The names and contract ids of ``items`` to ask the store about (not known yet)."""
        names: set[str] = set()
        contracts: set[str] = set()
        for item in items:
            name = item[2]
            if item[4] is not None:
                if name[2:] not in self.contracts:
                    contracts.add(name[2:])
            elif name not in self.names:
                names.add(name)
        return sorted(names), sorted(contracts)

    def check(self, items: Iterable[Item], looked: Lookup) -> Pending:
        """What ``items`` add; BadInput naming the first one that contradicts the ledger."""
        self.names.update(looked.names)  # the store's first uses, which no later append changes
        if looked.contracts:
            versions = contract_versions(decode_state(p, s) for p, s in looked.contract_rows)
            for cid in looked.contracts:
                self.contracts[cid] = contract_state(versions.get(cid, []))
        names: dict[str, tuple[str, int]] = {}
        contracts: dict[str, ContractState] = {}
        owners: dict[int, str] = {}
        for line, position, name, scope, canon in items:
            if canon is not None:
                fact = FACT_DECODER.decode(canon)
                assert isinstance(fact, ContractRegistered | ContractAmended)
                cid = name[len(CONTRACT):]
                state = contracts[cid] if cid in contracts else self.contracts.get(cid)
                problem = contract_problem(fact, state)
                if problem is not None:
                    raise BadInput(f"{self._at(line)}field `policy.{problem[0]}`: {problem[1]}")
                contracts[cid] = _next_state(fact, state, position)
                continue
            known = names.get(name) or self.names.get(name)
            if scope == USE:  # a time log: its ticket's contract, when opened at an earlier position
                if known is not None and known[1] < position and (owner := ticket_owner(known[0])):
                    owners[position] = owner
                continue
            if known is None:
                names[name] = (scope, position)
            elif known[0] != scope:
                field = _FIELD.get(scope.split(UNIT, 1)[0], "id")
                raise BadInput(f"{self._at(line)}field `{field}`: {name[2:]} already names "
                               f"{describe(known[0])} (position {known[1]})")
        return Pending(names, contracts, owners) if names or contracts or owners else NO_CHANGE

    def commit(self, pending: Pending) -> None:
        """Take in what a batch sent to the store added."""
        if pending is not NO_CHANGE:
            self.names.update(pending.names)
            self.contracts.update(pending.contracts)

    def _at(self, line: int) -> str:
        return f"{self.label} {line}: " if self.label else ""


def input_owners(items: list[Item], opened: dict[str, tuple[str, int]]) -> tuple[list[Item], dict[int, str]]:
    """The contract of each time log whose ticket an earlier line of the same input opened.

    For an import's child, which does not see the store: ``opened`` gathers the input's
    ticket claims as it goes. Those logs leave the items (their keys are settled); the
    writer checks the others against the store, and one whose ticket the store holds
    sends the input through the checking path (or has its key set in place, on SQLite).
    """
    kept: list[Item] = []
    owners: dict[int, str] = {}
    for item in items:
        _, position, name, scope, _ = item
        if scope == USE:
            known = opened.get(name)
            if known is not None and known[1] < position:
                owners[position] = known[0]
                continue
        elif (owner := ticket_owner(scope)) is not None:
            opened.setdefault(name, (owner, position))
        kept.append(item)
    return kept, owners
