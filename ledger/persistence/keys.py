"""The key scheme of ``ledger_index``: the one place that knows how a key is spelled.

Size: over 400 lines: every key kind's spelling, the earlier stores' key sets, and the
reads of a service's whole history that depend on where its facts are filed, together.

Every fact is indexed under its key: its service (``s:``), the id it corrects
(``i:``, ``m:``, ``x:``), its contract's claims (``c:``), its contract's versions
(``k:``), the ticket it is about (``t:``) or the country whose holidays it pins
(``h:``). A contract-month reads its service's facts, then the corrections that refer
to their ids, then its claims and versions: never the rest of the ledger.

Support facts have two keys each (the index's primary key is (key, position)), so that
a contract-month's support figures read the month, not the contract's history: a
``ticket_opened`` is under ``u:<contract>@<YYYY-MM>`` (the UTC month of its ``at``) and
under ``t:<ticket>``; a ``support_time_logged`` under ``t:<ticket>`` and under
``q:<contract>@<YYYY-MM>``, its ticket's contract when the ticket was opened at an
earlier position (the append path knows it from the ticket's claim), else
``q:@<YYYY-MM>`` (a log recorded before its ticket). Stores written before kept a
contract's openings under ``o:<contract>`` (``LEGACY_TICKETS``) and logs under ``t:``
alone; ``ledger verify`` accepts those key sets and ``ledger.support_read`` reads such a
contract's whole history, as then.

So that a contract-month's availability reads the month rather than the history
(``ledger.month_read``), a service's facts are under a key with time in it (names escaped,
``escaped``; instants in UTC). A probe report (most facts) is under
``p:<service>/<probe>@<YYYY-MM-DD>`` alone (one probe's days are one key range; the
service's probes, the range ``p:<service>/``). The other service facts are under
``s:<service>`` and also under a second key: a maintenance window, force majeure or exclusion under
``w:<service>@<YYYY-MM>`` for each UTC month its ``[starts_at, ends_at)`` touches
(``w:<service>`` alone when that is more than ``WINDOW_MONTHS``), an announcement also under
``a:<maintenance>`` (all its versions), an incident's opening under
``n:<service>/<at>/<incident>`` and a resolution, besides ``i:<incident>``, under
``r:<incident>@<at>`` (so that the incidents still open at an instant are found in the index
alone). A reader of a service's whole history reads ``s:<service>`` and its probe range
(``read_service_states``). docs/decisions.md (issue 17, hA and hI). Stores written before
filed them under ``s:`` (or ``i:``) alone (``legacy_keys``); such a service is read whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Protocol, get_args

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
    ProbeFailed,
    ProbeRecovered,
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
TICKETS: Final = "o:"  # a contract's tickets (ticket_opened), as stores written before held them
LEGACY_TICKETS: Final = TICKETS
TICKET: Final = "t:"  # the facts about one ticket
OPENED: Final = "u:"  # a contract's tickets opened in one UTC month: u:<contract>@<YYYY-MM>
LOGGED: Final = "q:"  # a contract's support time logged in one UTC month: q:<contract>@<YYYY-MM>
HOLIDAYS: Final = "h:"  # a country's pinned holidays
ORPHAN: Final = LOGGED + "@"  # the start of a log's key while its ticket's contract is not known
PROBES: Final = "p:"  # one probe's reports of one UTC day: p:<service>/<probe>@<YYYY-MM-DD> (names escaped)
WINDOWS: Final = "w:"  # a service's windows touching a UTC month: w:<service>@<YYYY-MM>; long: w:<service>
VERSIONS: Final = "a:"  # every announcement (version) of one maintenance window: a:<maintenance>
OPENINGS: Final = "n:"  # an incident opening: n:<service>/<at, UTC, 27 characters>/<incident>
RESOLVED: Final = "r:"  # an incident resolution: r:<incident, escaped>@<at, UTC, 27 characters>
KEY_KINDS: Final = (SERVICE, INCIDENT, MAINTENANCE, EXCLUSION, CLAIMS, CONTRACT, TICKETS, TICKET, HOLIDAYS,
                    OPENED, LOGGED, PROBES, WINDOWS, VERSIONS, OPENINGS, RESOLVED)
# A window touching more UTC months than this is filed under its service's one long-window key
# (read by every month) rather than under each month: a decade-long exclusion is one row, not 120.
WINDOW_MONTHS: Final = 12
# The fact types filed under month buckets besides their service (``legacy_keys`` gives their
# earlier key set): what ``ledger.month_read`` reads by month.
BUCKETED: Final = (ProbeFailed, ProbeRecovered, IncidentOpened, MaintenanceAnnounced, ForceMajeureDeclared,
                   ExclusionDeclared)
# An instant in a key: UTC, fixed width, so that keys sort as instants do (years 1970..2999).
INSTANT_WIDTH: Final = 27


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
    """The key a store written before month-bounded reads filed a contract's tickets under."""
    return TICKETS + contract


def utc_month(at: datetime) -> str:
    """``YYYY-MM`` of an instant in UTC (the bucket of a support key)."""
    u = at.astimezone(UTC)
    return f"{u.year:04d}-{u.month:02d}"


def utc_months(start: datetime, end: datetime) -> list[str]:
    """The UTC months ``[start, end)`` touches, in order (a contract month in any zone: at most two)."""
    if end <= start:
        return []
    s, e = start.astimezone(UTC), (end - timedelta(microseconds=1)).astimezone(UTC)
    out = []
    year, month = s.year, s.month
    while (year, month) <= (e.year, e.month):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def opened_key(contract: str, month: str) -> str:
    """The key of a contract's tickets opened in a UTC month."""
    return f"{OPENED}{contract}@{month}"


def logged_key(contract: str | None, month: str) -> str:
    """The key of a contract's time logged in a UTC month (None: logs recorded before their ticket)."""
    return f"{LOGGED}{contract or ''}@{month}"


def ticket_key(ticket: str) -> str:
    """The key of the facts about one ticket."""
    return TICKET + ticket


def holidays_key(country: str) -> str:
    """The key of a country's pinned holidays."""
    return HOLIDAYS + country


def index_key(fact: Fact) -> str:
    """The first key a fact is found by: its service, or the id it refers to, or its contract."""
    key = KEY_OF[type(fact)](fact)
    return key if isinstance(key, str) else key[0]


def index_keys(fact: Fact, owner: str | None = None) -> tuple[str, ...]:
    """Every key a fact is filed under; ``owner``: the contract of a logged ticket opened before it."""
    key = KEY_OF[type(fact)](fact)
    if isinstance(key, str):
        return (key,)
    return owned(key, owner) if owner is not None else key


def legacy_keys(fact: Fact) -> tuple[str, ...] | None:
    """The keys a store written before month-bounded reads filed a support or service fact under."""
    if type(fact) in BUCKETED:
        return (SERVICE + fact.service,)  # type: ignore[union-attr]
    if type(fact) is IncidentResolved:
        return (INCIDENT + fact.incident,)
    if type(fact) is TicketOpened:
        return (TICKETS + fact.contract,)
    if type(fact) is SupportTimeLogged:
        return (TICKET + fact.ticket,)
    return None


def owned(keys: tuple[str, ...], owner: str) -> tuple[str, ...]:
    """A log's keys once its ticket's contract is known (``q:@M`` becomes ``q:<owner>@M``)."""
    return tuple(LOGGED + owner + k[2:] if k.startswith(ORPHAN) else k for k in keys)


def own_keys(rows: list[tuple[str, int]], owners: Mapping[int, str]) -> None:
    """Give the logs at ``owners``' positions their contract's key, in place in (key, position) rows."""
    for i, (key, position) in enumerate(rows):
        if position in owners and key.startswith(ORPHAN):
            rows[i] = (LOGGED + owners[position] + key[2:], position)


def _opened_keys(fact: TicketOpened) -> tuple[str, str]:
    return opened_key(fact.contract, utc_month(fact.at)), TICKET + fact.ticket


def _logged_keys(fact: SupportTimeLogged) -> tuple[str, str]:
    return TICKET + fact.ticket, logged_key(None, utc_month(fact.at))


def escaped(name: str) -> str:
    """A name as it appears inside a key: ``%``, ``/`` and ``@`` escaped, so they only ever separate."""
    return name.replace("%", "%25").replace("/", "%2F").replace("@", "%40")


_DAYS: dict[int, str] = {}  # ordinal -> YYYY-MM-DD: formatting a date was most of a probe key's cost


def utc_day(at: datetime) -> str:
    """``YYYY-MM-DD`` of an instant in UTC (the bucket of a probe report)."""
    # An instant given in UTC (most are) is its own UTC date: no converted copy.
    ordinal = (at if at.tzinfo is UTC else at.astimezone(UTC)).toordinal()
    day = _DAYS.get(ordinal)
    if day is None:
        if len(_DAYS) > 100_000:
            _DAYS.clear()
        day = _DAYS[ordinal] = date.fromordinal(ordinal).isoformat()
    return day


def utc_instant(at: datetime) -> str:
    """An instant as a key spells it: UTC, to the microsecond, ``INSTANT_WIDTH`` characters."""
    u = at.astimezone(UTC)
    return (f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
            f".{u.microsecond:06d}Z")


def probe_prefix(service: str, probe: str | None = None) -> str:
    """The start of the keys of one probe of a service (None: of all its probes)."""
    base = f"{PROBES}{escaped(service)}/"
    return base if probe is None else f"{base}{escaped(probe)}@"


def probe_key(service: str, probe: str, day: str) -> str:
    """The key of one probe's reports of a UTC day."""
    return probe_prefix(service, probe) + day


def openings_prefix(service: str) -> str:
    """The start of the keys of a service's incident openings (followed by the instant, then the id)."""
    return f"{OPENINGS}{escaped(service)}/"


def resolved_key(incident: str, at: datetime) -> str:
    """The key a resolution is found by when asking whether an incident was resolved between two instants."""
    return f"{RESOLVED}{escaped(incident)}@{utc_instant(at)}"


def window_key(service: str, month: str | None) -> str:
    """The key of a service's windows touching a UTC month (None: the long windows)."""
    return f"{WINDOWS}{escaped(service)}" if month is None else f"{WINDOWS}{escaped(service)}@{month}"


def windows_from(service: str, month: str) -> tuple[str, str]:
    """The key range [lo, hi) of a service's windows touching a UTC month or a later one."""
    return f"{WINDOWS}{escaped(service)}@{month}", prefix_end(f"{WINDOWS}{escaped(service)}@")


def versions_key(maintenance: str) -> str:
    """The key of every announcement of one maintenance window."""
    return VERSIONS + maintenance


_PROBES: dict[tuple[str, str], str] = {}  # (service, probe) -> key prefix: escaping: a third of a key's cost


def _probe_key(fact: ProbeFailed | ProbeRecovered) -> str:
    # One row: whole-service readers read the service's probe range besides ``s:`` (``service_ranges``).
    named = (fact.service, fact.probe)
    prefix = _PROBES.get(named)
    if prefix is None:
        if len(_PROBES) > 100_000:
            _PROBES.clear()
        prefix = _PROBES[named] = probe_prefix(*named)
    return prefix + utc_day(fact.at)


def _window_keys(service: str, start: datetime, end: datetime) -> list[str]:
    months = utc_months(start, end)
    if len(months) > WINDOW_MONTHS:
        return [window_key(service, None)]
    return [window_key(service, m) for m in months]


def _announced_keys(fact: MaintenanceAnnounced) -> tuple[str, ...]:
    return (SERVICE + fact.service, versions_key(fact.maintenance),
            *_window_keys(fact.service, fact.starts_at, fact.ends_at))


def _declared_keys(fact: ForceMajeureDeclared | ExclusionDeclared) -> tuple[str, ...]:
    return (SERVICE + fact.service, *_window_keys(fact.service, fact.starts_at, fact.ends_at))


def _opened_incident_keys(fact: IncidentOpened) -> tuple[str, str]:
    opening = f"{openings_prefix(fact.service)}{utc_instant(fact.at)}/{escaped(fact.incident)}"
    return SERVICE + fact.service, opening


def _resolved_keys(fact: IncidentResolved) -> tuple[str, str]:
    return INCIDENT + fact.incident, resolved_key(fact.incident, fact.at)


def _contract_key(fact: ContractRegistered | ContractAmended) -> str:
    return CONTRACT + fact.policy.contract.id


def _field_key(prefix: str, field: str) -> Callable[[Any], str]:
    get = attrgetter(field)
    return lambda fact: prefix + get(fact)


# A table by exact type, not a match statement or isinstance chain: it runs once per imported line.
_KEY_FIELD: Final[dict[type, tuple[str, str]]] = {
    MaintenanceCancelled: (MAINTENANCE, "maintenance"),
    MaintenanceCompleted: (MAINTENANCE, "maintenance"),
    ExclusionRevoked: (EXCLUSION, "ref"),
    CreditClaimFiled: (CLAIMS, "contract"),
    # Support (section 6.1). Engagements and recoveries name a service: its key, as its other facts.
    TicketSeverityChanged: (TICKET, "ticket"),
    TicketResponded: (TICKET, "ticket"),
    TicketClassified: (TICKET, "ticket"),
    TicketResolved: (TICKET, "ticket"),
    HolidaysPinned: (HOLIDAYS, "country"),
}
# A fact's key, or its keys (a tuple: the support facts read by month, see the module's text).
_SEVERAL_KEYS: Final[dict[type, Callable[[Any], tuple[str, ...]]]] = {
    TicketOpened: _opened_keys,
    SupportTimeLogged: _logged_keys,
    IncidentOpened: _opened_incident_keys,
    IncidentResolved: _resolved_keys,
    MaintenanceAnnounced: _announced_keys,
    ForceMajeureDeclared: _declared_keys,
    ExclusionDeclared: _declared_keys,
}
KEY_OF: Final[dict[type, Callable[[Any], str | tuple[str, ...]]]] = {
    cls: _contract_key if cls in CONTRACT_TYPES
    else _probe_key if cls in (ProbeFailed, ProbeRecovered)
    else _SEVERAL_KEYS[cls] if cls in _SEVERAL_KEYS
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


def service_ranges(keys: Iterable[str]) -> list[str]:
    """The probe-report prefixes (``p:<service>/``) of the services whose ``s:`` keys are in ``keys``.

    A probe report is filed under its probe's day alone (issue 17, hI); a store written before
    month-bounded reads filed it under ``s:`` alone: reading both covers every layout.
    """
    return [probe_prefix(k[len(SERVICE):]) for k in keys if k.startswith(SERVICE)]


if TYPE_CHECKING:  # a type only: a Protocol class costs every command's start-up (issue 17)

    class KeyedReader(Protocol):
        """What ``read_related`` needs of a recorder: stored states by key, and by key range."""

        def read_keyed_states(self, keys: Sequence[str], upto: int) -> Iterator[tuple[int, bytes]]: ...

        def read_key_range_states(self, lo: str, hi: str, upto: int) -> Iterator[tuple[int, bytes]]: ...


def read_service_states(reader: KeyedReader, keys: Sequence[str], upto: int) -> Iterator[tuple[int, bytes]]:
    """(position, state) of the facts under ``keys`` and, for each ``s:`` key, its service's probe
    reports (``service_ranges``), each once, in position order: a service's whole history."""
    rows = dict(reader.read_keyed_states(keys, upto))
    for prefix in service_ranges(keys):
        rows.update(reader.read_key_range_states(prefix, prefix_end(prefix), upto))
    for position in sorted(rows):
        yield position, rows[position]


def read_related(
    reader: KeyedReader, keys: Sequence[str], upto: int,
    each: Callable[[Recorded, bytes], None] | None = None,
) -> Iterator[Recorded]:
    """The facts under ``keys``, then the corrections that refer to their ids, up to ``upto``.

    Two reads through the key index: the facts themselves (a service's probe reports by
    their range, ``read_service_states``), then every reference key they name. Each group
    comes in position order (the caller merges if it needs one order); ``each`` sees every
    fact with its stored state as it is decoded.
    """
    refs: set[str] = set()
    for position, state in read_service_states(reader, keys, upto):
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
