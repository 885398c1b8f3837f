"""The key scheme of ``ledger_index``: the one place that knows how a key is spelled.

Every fact is indexed under one key: its service (``s:``), the id it corrects
(``i:``, ``m:``, ``x:``), its contract's claims (``c:``), its contract's versions
(``k:``), its contract's tickets (``o:``), the ticket it is about (``t:``) or the
country whose holidays it pins (``h:``). A contract-month reads its service's facts,
then the corrections that refer to their ids, then its claims and versions: never the
rest of the ledger; its support figures read its tickets, then what refers to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import attrgetter
from typing import Any, Final, Protocol, get_args

from ledger.events import (
    CONTRACT_TYPES,
    ContractAmended,
    ContractRegistered,
    CreditClaimFiled,
    ExclusionDeclared,
    ExclusionRevoked,
    Fact,
    ForceMajeureDeclared,
    HolidaysPinned,
    IncidentOpened,
    IncidentResolved,
    MaintenanceAnnounced,
    MaintenanceCancelled,
    MaintenanceCompleted,
    Recorded,
    SupportTimeLogged,
    TicketClassified,
    TicketOpened,
    TicketResolved,
    TicketResponded,
    TicketSeverityChanged,
    decode_state,
)

SERVICE: Final = "s:"
INCIDENT: Final = "i:"
MAINTENANCE: Final = "m:"
EXCLUSION: Final = "x:"
CLAIMS: Final = "c:"
CONTRACT: Final = "k:"
TICKETS: Final = "o:"  # a contract's tickets (ticket_opened)
TICKET: Final = "t:"  # the facts about one ticket
HOLIDAYS: Final = "h:"  # a country's pinned holidays
KEY_KINDS: Final = (SERVICE, INCIDENT, MAINTENANCE, EXCLUSION, CLAIMS, CONTRACT, TICKETS, TICKET, HOLIDAYS)


def service_key(service: str) -> str:
    """The key of a service's own facts."""
    return SERVICE + service


def claims_key(contract: str) -> str:
    """The key of a contract's credit claims."""
    return CLAIMS + contract


def contract_key(contract: str) -> str:
    """The key of a contract's versions."""
    return CONTRACT + contract


def tickets_key(contract: str) -> str:
    """The key of a contract's tickets (``ticket_opened``)."""
    return TICKETS + contract


def holidays_key(country: str) -> str:
    """The key of a country's pinned holidays."""
    return HOLIDAYS + country


def index_key(fact: Fact) -> str:
    """The one key a fact is found by: its service, or the id it refers to, or its contract."""
    return KEY_OF[type(fact)](fact)


def _contract_key(fact: ContractRegistered | ContractAmended) -> str:
    return CONTRACT + fact.policy.contract.id


def _field_key(prefix: str, field: str) -> Callable[[Any], str]:
    get = attrgetter(field)
    return lambda fact: prefix + get(fact)


# A table by exact type, not a match statement or isinstance chain: it runs once per imported line.
_KEY_FIELD: Final[dict[type, tuple[str, str]]] = {
    IncidentResolved: (INCIDENT, "incident"),
    MaintenanceCancelled: (MAINTENANCE, "maintenance"),
    MaintenanceCompleted: (MAINTENANCE, "maintenance"),
    ExclusionRevoked: (EXCLUSION, "ref"),
    CreditClaimFiled: (CLAIMS, "contract"),
    # Support (section 6.1). Engagements and recoveries name a service: its key, as its other facts.
    TicketOpened: (TICKETS, "contract"),
    TicketSeverityChanged: (TICKET, "ticket"),
    TicketResponded: (TICKET, "ticket"),
    TicketClassified: (TICKET, "ticket"),
    TicketResolved: (TICKET, "ticket"),
    SupportTimeLogged: (TICKET, "ticket"),
    HolidaysPinned: (HOLIDAYS, "country"),
}
KEY_OF: Final[dict[type, Callable[[Any], str]]] = {
    cls: _contract_key if cls in CONTRACT_TYPES
    else _field_key(*_KEY_FIELD.get(cls, (SERVICE, "service")))
    for cls in get_args(Fact)
}


def reference_key(fact: Fact) -> str | None:
    """The index key of the corrections that may refer to this fact's id."""
    match fact:
        case IncidentOpened():
            return INCIDENT + fact.incident
        case MaintenanceAnnounced():
            return MAINTENANCE + fact.maintenance
        case ForceMajeureDeclared():
            return EXCLUSION + fact.declaration
        case ExclusionDeclared():
            return EXCLUSION + fact.exclusion
        case TicketOpened():
            return TICKET + fact.ticket
        case _:
            return None


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def month_keys(services: Iterable[str], contracts: Iterable[str], *, versions: bool = False) -> list[str]:
    """The keys of ``services``' facts and ``contracts``' claims (and, with ``versions``, their versions)."""
    cids = list(contracts)
    keys = [*(SERVICE + s for s in services), *(CLAIMS + c for c in cids)]
    if versions:
        keys += [CONTRACT + c for c in cids]
    return keys


class KeyedReader(Protocol):
    """What ``read_related`` needs of a recorder: stored states by key."""

    def read_keyed_states(self, keys: Sequence[str], upto: int) -> Iterator[tuple[int, bytes]]: ...


def read_related(
    reader: KeyedReader, keys: Sequence[str], upto: int,
    each: Callable[[Recorded, bytes], None] | None = None,
) -> Iterator[Recorded]:
    """The facts under ``keys``, then the corrections that refer to their ids, up to ``upto``.

    Two reads through the key index: the facts themselves, then every reference key
    they name. Each group comes in position order (the caller merges if it needs one
    order); ``each`` sees every fact with its stored state as it is decoded.
    """
    refs: set[str] = set()
    for position, state in reader.read_keyed_states(keys, upto):
        rec = decode_state(position, state)
        if each is not None:
            each(rec, state)
        if (ref := reference_key(rec.fact)) is not None:
            refs.add(ref)
        yield rec
    if refs:
        for position, state in reader.read_keyed_states(sorted(refs), upto):
            rec = decode_state(position, state)
            if each is not None:
                each(rec, state)
            yield rec
