"""The facts the ledger records: one frozen msgspec struct per event type.

Every type is a member of the tagged union ``Fact`` (tag field ``type``). Lines
of an NDJSON import are decoded once, at the boundary, by ``decode_fact``; the
rest of the code only ever sees validated, immutable facts.

Schema evolution rule: add fields only with defaults; never change a field's
type. Anything else is a new event type.

Size: one tagged union of every fact type, with its codecs, in one module:
the house style (a new fact type is added in one place).
"""

# No ``from __future__ import annotations``: msgspec builds the decoder of every fact type
# from the classes' annotations, and evaluating them from strings (a compile and an eval
# each) was a fifth of this module's import, which every command pays (issue 17).
import functools
import operator
import re
import typing
from collections.abc import Callable
from datetime import date, datetime
from typing import Annotated, Any, Final, Literal, TypeAlias

import msgspec

from ledger.calendar import FIRST_YEAR, INSTANT_RANGE, LAST_YEAR, check_month, in_range
from ledger.errors import BadInput
from ledger.hashing import sha256
from ledger.policy import PolicyFile, check_policy

# The types say what a stored fact may hold, and a stored fact is read back with them: a
# constraint added here would make facts recorded before it unreadable. What a *new* fact
# may hold beyond them is ``check_content``, run where facts come in.

# Timestamps must carry an explicit offset (INTERFACE.md section 1); new ones lie in
# 1970..2999 (``ledger.calendar.in_range``).
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
# Identifiers and names: non-empty, bounded, printable on one line. "No control character"
# is not a msgspec pattern but ``check_names``, run by ``decode_fact`` only where the JSON
# could hold one: msgspec calls ``re`` for each patterned field, which made up four fifths
# of decoding a line (and of reading the log back, where the facts are valid already).
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
# Free text: no control character but tab, line feed and carriage return (``check_text``).
Text = Annotated[str, msgspec.Meta(max_length=10_000)]
MonthStr = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]

Impact = Literal["outage", "degraded", "none"]
ExclusionCategory = Literal[
    "customer_isp", "customer_equipment", "customer_action", "third_party", "internet_failure"
]


class _Fact(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="type",
    omit_defaults=True,  # an absent option and `null` encode alike: one canonical form
):
    """Common envelope fields; ``position`` and ``recorded_at`` are set by the ledger.

    On import they are accepted (that is what ``ledger events`` prints): ``position``
    is ignored and assigned afresh, ``recorded_at`` is kept.
    """

    id: Name | None = None
    position: Annotated[int, msgspec.Meta(ge=1)] | None = None
    recorded_at: Timestamp | None = None


def _interval_check(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise ValueError("`ends_at` must be after `starts_at`")


class ProbeFailed(_Fact, frozen=True, tag="probe_failed"):
    service: Name
    probe: Name
    at: Timestamp
    detail: Text | None = None


class ProbeRecovered(_Fact, frozen=True, tag="probe_recovered"):
    service: Name
    probe: Name
    at: Timestamp


class IncidentOpened(_Fact, frozen=True, tag="incident_opened"):
    service: Name
    incident: Name
    at: Timestamp
    impact: Impact
    title: Text | None = None
    # A string or an integer (status pages use both); a new fact holds a string that spells
    # an integer as that integer (``check_content``), so "2" and 2 are one fact.
    severity: Text | int | None = None


class IncidentResolved(_Fact, frozen=True, tag="incident_resolved"):
    incident: Name
    at: Timestamp


class MaintenanceAnnounced(_Fact, frozen=True, tag="maintenance_announced"):
    service: Name
    maintenance: Name
    announced_at: Timestamp
    starts_at: Timestamp
    ends_at: Timestamp
    title: Text | None = None

    def __post_init__(self) -> None:
        _interval_check(self.starts_at, self.ends_at)


class MaintenanceCancelled(_Fact, frozen=True, tag="maintenance_cancelled"):
    maintenance: Name
    at: Timestamp


class MaintenanceCompleted(_Fact, frozen=True, tag="maintenance_completed"):
    maintenance: Name
    at: Timestamp


class ForceMajeureDeclared(_Fact, frozen=True, tag="force_majeure_declared"):
    service: Name
    declaration: Name
    starts_at: Timestamp
    ends_at: Timestamp
    reason: Text

    def __post_init__(self) -> None:
        _interval_check(self.starts_at, self.ends_at)


class ExclusionDeclared(_Fact, frozen=True, tag="exclusion_declared"):
    service: Name
    exclusion: Name
    category: ExclusionCategory
    starts_at: Timestamp
    ends_at: Timestamp
    reason: Text
    contract: Name | None = None

    def __post_init__(self) -> None:
        _interval_check(self.starts_at, self.ends_at)


class ExclusionRevoked(_Fact, frozen=True, tag="exclusion_revoked"):
    ref: Name
    reason: Text


class CreditClaimFiled(_Fact, frozen=True, tag="credit_claim_filed"):
    contract: Name
    month: MonthStr
    at: Timestamp


class ContractRegistered(_Fact, frozen=True, tag="contract_registered"):
    """Version 1 of a contract's policy (the TOML file, as recorded)."""

    policy: PolicyFile


class ContractAmended(_Fact, frozen=True, tag="contract_amended"):
    """A later version of a contract's policy, in force from ``policy.contract.effective_from``."""

    policy: PolicyFile

    def __post_init__(self) -> None:
        if self.policy.contract.effective_from is None:
            raise ValueError("`policy.contract.effective_from` is required to amend a contract")


# --- support commitments (INTERFACE.md section 6.1) ------------------------------------

TicketKind = Literal["account", "bug", "global_issue"]
# A country code as policies write it: "CA", "CA-ON".
CountryCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")]
DateStr = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
# Time logged on one ticket at once: at most a (leap) year.
MAX_LOGGED_SECONDS: Final = 366 * 86_400


class TicketOpened(_Fact, frozen=True, tag="ticket_opened"):
    contract: Name
    ticket: Name
    at: Timestamp
    severity: Name
    title: Text | None = None


class TicketSeverityChanged(_Fact, frozen=True, tag="ticket_severity_changed"):
    ticket: Name
    at: Timestamp
    severity: Name


class TicketResponded(_Fact, frozen=True, tag="ticket_responded"):
    ticket: Name
    at: Timestamp


class TicketClassified(_Fact, frozen=True, tag="ticket_classified"):
    ticket: Name
    kind: TicketKind


class TicketResolved(_Fact, frozen=True, tag="ticket_resolved"):
    ticket: Name
    at: Timestamp


class SupportTimeLogged(_Fact, frozen=True, tag="support_time_logged"):
    ticket: Name
    at: Timestamp
    seconds: Annotated[int, msgspec.Meta(ge=1, le=MAX_LOGGED_SECONDS)]


class SupportEngaged(_Fact, frozen=True, tag="support_engaged"):
    service: Name
    level: Name
    at: Timestamp


class RecoveryPerformed(_Fact, frozen=True, tag="recovery_performed"):
    service: Name
    recovery: Name
    at: Timestamp
    restored_to: Timestamp

    def __post_init__(self) -> None:
        if self.restored_to >= self.at:
            raise ValueError("`restored_to` must be before `at`")


class HolidaysPinned(_Fact, frozen=True, tag="holidays_pinned"):
    country: CountryCode
    year: Annotated[int, msgspec.Meta(ge=FIRST_YEAR, le=LAST_YEAR)]
    dates: tuple[DateStr, ...]


Fact: TypeAlias = (
    ProbeFailed
    | ProbeRecovered
    | IncidentOpened
    | IncidentResolved
    | MaintenanceAnnounced
    | MaintenanceCancelled
    | MaintenanceCompleted
    | ForceMajeureDeclared
    | ExclusionDeclared
    | ExclusionRevoked
    | CreditClaimFiled
    | ContractRegistered
    | ContractAmended
    | TicketOpened
    | TicketSeverityChanged
    | TicketResponded
    | TicketClassified
    | TicketResolved
    | SupportTimeLogged
    | SupportEngaged
    | RecoveryPerformed
    | HolidaysPinned
)

FACT_TYPES: Final[dict[str, type[_Fact]]] = {
    str(cls.__struct_config__.tag): cls for cls in typing.get_args(Fact)
}

FACT_TAGS: Final[dict[type, str]] = {cls: tag for tag, cls in FACT_TYPES.items()}
# The facts that carry a policy. A set of exact types, tested as ``type(fact) in``: the
# union's members have no subclasses, and isinstance against msgspec's metaclass cost
# about as much as decoding a line's fields, where it ran once per imported line.
CONTRACT_TYPES: Final = frozenset({ContractRegistered, ContractAmended})

# The support facts of INTERFACE.md section 6.1 (issue 18).
SUPPORT_TAGS: Final = frozenset({
    "ticket_opened", "ticket_severity_changed", "ticket_responded", "ticket_classified", "ticket_resolved",
    "support_time_logged", "support_engaged", "recovery_performed", "holidays_pinned",
})

# Operational facts: what `ledger append` accepts (contracts go through `ledger contract`).
OPS_TYPES: Final = tuple(t for t in FACT_TYPES if not t.startswith("contract_"))


class Recorded(msgspec.Struct, frozen=True):
    """A fact as the ledger holds it: content plus what the ledger added on append."""

    position: int
    recorded_at: datetime
    id: str
    fact: Fact


class StoredState(msgspec.Struct, frozen=True, array_like=True):
    """What goes into the event store's ``state`` column (position is the row's).

    ``link`` is the hash chain through this fact (``ledger.persistence.chain.chain_hash``): the
    previous link, the position, ``recorded_at``, the id and the canonical content.
    """

    id: str
    recorded_at: datetime
    fact: Fact
    link: str


FACT_DECODER: Final[msgspec.json.Decoder[Fact]] = msgspec.json.Decoder(Fact)
_state_decoder: Final[msgspec.json.Decoder[StoredState]] = msgspec.json.Decoder(StoredState)
_encoder: Final = msgspec.json.Encoder(order="sorted")
_FIELD_RE: Final = r"`\$\.([^`]*)`"  # messages only: compiled when first used (re's cache)


def strip_envelope(fact: Fact) -> Fact:
    """The fact's content alone: without id, position and recorded_at."""
    if fact.id is None and fact.position is None and fact.recorded_at is None:
        return fact
    return msgspec.structs.replace(fact, id=None, position=None, recorded_at=None)


def canonical(fact: Fact) -> bytes:
    """Canonical JSON of a fact's content (sorted keys, no envelope, no null options)."""
    return _encoder.encode(strip_envelope(fact))


def derive_id_from(canon: bytes) -> str:
    """The derived id for a fact whose canonical JSON is ``canon``."""
    return "sha256:" + sha256(canon).hexdigest()[:40]


def derive_id(fact: Fact) -> str:
    """The id of a fact recorded without one: a hash of its canonical content."""
    return derive_id_from(canonical(fact))


def fact_id(fact: Fact) -> str:
    """The idempotency key: the given ``id``, else one derived from content."""
    return fact.id if fact.id is not None else derive_id(fact)


def _explain(exc: msgspec.MsgspecError) -> str:
    msg = str(exc)
    match = re.search(_FIELD_RE, msg)
    if match:
        field = match.group(1) or "line"
        msg = re.sub(r"\s*-\s*at `\$[^`]*`", "", msg)
        if field == "type" and msg.startswith("Invalid value"):
            msg = "unknown event type" + msg[len("Invalid value") :]
        return f"field `{field}`: {msg}"
    return msg


def may_hold_control(data: bytes | str) -> bool:
    """Whether JSON text could decode to a string holding a control character (C0, DEL or C1).

    JSON refuses raw C0 characters in strings (the decoder enforces it): they reach
    a string only as an escape, after a backslash. DEL and the C1 characters may be
    raw; in UTF-8 a C1 character is 0xC2 followed by 0x80-0x9F, so a line without
    the byte 0xC2 holds none (the test is a byte search, not a decode).
    """
    if isinstance(data, str):
        return "\\" in data or re.search(_RAW_CONTROL, data) is not None
    return b"\\" in data or b"\x7f" in data or b"\xc2" in data


def check_names(fact: Fact) -> None:
    """Refuse a fact with a control character in an identifier or name (``Name``)."""
    for field in _NAME_FIELDS[type(fact)]:
        value = getattr(fact, field)
        if value is not None and re.search(_CONTROL, value):
            raise BadInput(f"field `{field}`: must not contain control characters")


def check_text(fact: Fact) -> None:
    """Refuse free text (``Text``) holding a control character other than tab, LF and CR."""
    for field in _TEXT_FIELDS[type(fact)]:
        value = getattr(fact, field)
        if type(value) is str and re.search(_TEXT_CONTROL, value):
            raise BadInput(f"field `{field}`: must not contain control characters other than tab, "
                           "line feed and carriage return")


def _fields_of(cls: type, kind: object) -> tuple[str, ...]:
    fields = msgspec.structs.fields(cls)
    return tuple(f.name for f in fields if f.type == kind or kind in typing.get_args(f.type))


class _PerType(dict[type, Any]):
    """A table per fact type, each entry made on first use: building them all costs a report's start-up."""

    def __init__(self, make: Callable[[type], Any]) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, cls: type) -> Any:
        value = self[cls] = self.make(cls)
        return value


def _by_type(kind: object) -> _PerType:
    return _PerType(lambda cls: _fields_of(cls, kind))


_NAME_FIELDS: Final = _by_type(Name)
_TEXT_FIELDS: Final = _by_type(Text)
_TIME_FIELDS: Final = _by_type(Timestamp)
# Only lines that may hold a control character are searched (``may_hold_control``): compiled when
# first used (``re``'s cache), not by every command's start-up (issue 17).
_CONTROL: Final = r"[\x00-\x1f\x7f-\x9f]"
_TEXT_CONTROL: Final = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"
_RAW_CONTROL: Final = r"[\x7f-\x9f]"
# The severities that are integers spelt as text: exactly str(n) for a 64-bit n.
_INTEGER_TEXT: Final = r"0|-?[1-9][0-9]{0,18}"  # compiled when first used (re's cache)
_SEVERITY_MIN, _SEVERITY_MAX = -(2**63), 2**63 - 1
_FIRST_YEAR, _LAST_YEAR = FIRST_YEAR, LAST_YEAR  # module globals: read once per instant


def check_content(fact: Fact, controls: bool = True) -> Fact:
    """Check what a new fact may hold beyond its type; the fact in its one canonical form.

    Every instant within ``ledger.calendar.in_range``; a claim's month a month;
    names and free text without control characters (only when ``controls``: the
    JSON it came from could hold one, see ``may_hold_control``); a contract's policy
    by ``check_policy``. A string severity that spells a 64-bit integer becomes
    that integer. Raises BadInput naming the field.
    """
    return admit(fact, controls)[0]


def admit(fact: Fact, controls: bool = True) -> tuple[Fact, bytes, int]:
    """``check_content``, with the fact's canonical JSON and ``envelope_quotes``.

    One function for what the import does with every line (Python calls cost more
    than the work in them here).
    """
    times, special = _CONTENT[type(fact)]
    for field in times:
        # The local year settles all but the first and last year (an offset is under a day).
        if not _FIRST_YEAR < getattr(fact, field).year < _LAST_YEAR:
            _check_instant(fact, field)
    id_, position, recorded_at = fact.id, fact.position, fact.recorded_at
    if recorded_at is not None:
        _check_instant(fact, "recorded_at")
    if controls:
        check_names(fact)
        check_text(fact)
    if special is not None:
        fact = special(fact)
    if position is None and recorded_at is None:
        if id_ is None:
            return fact, _encoder.encode(fact), 0
        quotes = 4  # the usual envelope: an id alone
    else:
        quotes = (id_ is not None) * 4 + (position is not None) * 2 + (recorded_at is not None) * 4
    content = msgspec.structs.replace(fact, id=None, position=None, recorded_at=None)
    return fact, _encoder.encode(content), quotes


def content_checks(cls: type) -> tuple[tuple[str, ...], Callable[[Any], Fact] | None]:
    """What ``admit`` checks of a type: its instants (``recorded_at`` aside) and its special check."""
    return _CONTENT[cls]  # type: ignore[no-any-return]


def canonical_plain(facts: list[Fact]) -> tuple[list[bytes], int] | None:
    """The rest of ``admit`` for facts that passed ``content_checks`` and hold no control character.

    Their canonical JSON and their envelopes' quotes in all; None if one has a
    ``recorded_at`` (``admit`` checks it, one at a time). The work per fact is in C
    (``map``): ``admit``'s Python calls were a quarter of an import's reading.
    """
    if any(map(_RECORDED_AT, facts)):
        return None
    canons = list(map(_encoder.encode, map(_WITHOUT_ENVELOPE, facts)))
    quotes = 4 * (len(facts) - list(map(_ID, facts)).count(None))
    quotes += 2 * (len(facts) - list(map(_POSITION, facts)).count(None))
    return canons, quotes


_RECORDED_AT: Final = operator.attrgetter("recorded_at")
_ID: Final = operator.attrgetter("id")
_POSITION: Final = operator.attrgetter("position")
_WITHOUT_ENVELOPE: Final = functools.partial(msgspec.structs.replace, id=None, position=None,
                                             recorded_at=None)


def _check_instant(fact: Fact, field: str) -> None:
    if not in_range(getattr(fact, field)):
        raise BadInput(f"field `{field}`: must lie between {INSTANT_RANGE}")


def _severity(fact: IncidentOpened) -> IncidentOpened:
    sev = fact.severity
    if type(sev) is str:
        if re.fullmatch(_INTEGER_TEXT, sev) and _SEVERITY_MIN <= (number := int(sev)) <= _SEVERITY_MAX:
            return msgspec.structs.replace(fact, severity=number)
    elif type(sev) is int and not _SEVERITY_MIN <= sev <= _SEVERITY_MAX:
        raise BadInput("field `severity`: an integer severity must lie between -2**63 and 2**63-1")
    return fact


def _claim(fact: CreditClaimFiled) -> CreditClaimFiled:
    check_month(fact.month, "field `month`")
    return fact


def _contract(fact: ContractRegistered) -> ContractRegistered:
    try:
        check_policy(fact.policy)
    except BadInput as exc:
        raise BadInput(f"policy: {exc}") from None
    return fact


def _pinned(fact: HolidaysPinned) -> HolidaysPinned:
    """Each date a real day of the pinned year; the list in its one canonical form (sorted, once)."""
    days: set[date] = set()
    for i, text in enumerate(fact.dates):
        try:
            day = date.fromisoformat(text)
        except ValueError:
            raise BadInput(f"field `dates[{i}]`: not a date (YYYY-MM-DD): {text!r}") from None
        if day.year != fact.year:
            raise BadInput(f"field `dates[{i}]`: {text} is not in {fact.year}")
        days.add(day)
    canon = tuple(d.isoformat() for d in sorted(days))
    return fact if canon == fact.dates else msgspec.structs.replace(fact, dates=canon)


# Per type: its required instants (``recorded_at`` is checked apart: it is mostly absent),
# and the check of what only that type holds.
_SPECIAL: Final[dict[type, Callable[[Any], Fact]]] = {
    IncidentOpened: _severity, CreditClaimFiled: _claim,
    ContractRegistered: _contract, ContractAmended: _contract, HolidaysPinned: _pinned,
}
_CONTENT: Final = _PerType(
    lambda cls: (tuple(f for f in _TIME_FIELDS[cls] if f != "recorded_at"), _SPECIAL.get(cls))
)


def check_keys(data: bytes, fact: Fact, canon: bytes, escaped: bool) -> None:
    """Refuse JSON in which an object has a key twice (msgspec keeps the last one, silently).

    The fast test counts quotes. Without a backslash in the line no string holds a
    quote, so each key and each string value has two, in the line as in the fact's
    canonical JSON (and its envelope, which that leaves out): a line with more quotes
    has a key the fact does not show, a repeated one (or one set to null, or a severity
    spelt as text). Only then, for a line with an escape, or for a policy (whose
    canonical form shows fields the line may leave out), is the line parsed again
    keeping every key, to be sure.
    """
    if (
        not escaped
        and type(fact) not in CONTRACT_TYPES
        and data.count(b'"') == canon.count(b'"') + envelope_quotes(fact)
    ):
        return
    where = _repeated_key(data)
    if where is not None:
        raise BadInput(f"field `{where}`: the key appears twice in one object")


def envelope_quotes(fact: Fact) -> int:
    """The quotes of the envelope fields in a line without escapes (canonical JSON leaves them out)."""
    return ((fact.id is not None) * 4 + (fact.position is not None) * 2
            + (fact.recorded_at is not None) * 4)


class _Pairs(list[tuple[str, Any]]):
    """One JSON object's members in order, duplicates kept."""


def _ignore(_: str) -> None:
    return None


def _repeated_key(data: bytes) -> str | None:
    """The path of the first key an object repeats, or None."""
    import json  # rare (a line that may repeat a key): not on every command's start-up

    try:
        root = json.loads(data, object_pairs_hook=_Pairs, parse_int=_ignore, parse_float=_ignore,
                          parse_constant=_ignore)
    except (ValueError, RecursionError) as exc:
        # msgspec read it, yet it cannot be checked: refused rather than trusted
        raise BadInput(f"not valid JSON: {exc}") from None
    return _first_repeat(root, "")


def _first_repeat(value: object, path: str) -> str | None:
    if isinstance(value, _Pairs):
        seen: set[str] = set()
        for key, item in value:
            where = f"{path}.{key}" if path else key
            if key in seen:
                return where
            seen.add(key)
            if (found := _first_repeat(item, where)) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := _first_repeat(item, f"{path}[{i}]")) is not None:
                return found
    return None


def decode_fact(data: bytes | str) -> Fact:
    """Decode one JSON object into a checked new fact; raises BadInput with a one-line reason."""
    try:
        fact = FACT_DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise BadInput(_explain(exc)) from None
    except msgspec.DecodeError as exc:
        raise BadInput(f"not valid JSON: {exc}") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    except RecursionError:
        raise BadInput("JSON nested too deeply") from None
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    fact, canon, _ = admit(fact, may_hold_control(raw))
    check_keys(raw, fact, canon, b"\\" in raw)
    return fact


def fact_from_fields(fact_type: str, fields: dict[str, Any]) -> Fact:
    """Build a fact from loose command-line fields (values as strings)."""
    if fact_type not in FACT_TYPES:
        raise BadInput(f"unknown event type `{fact_type}`")
    payload: dict[str, Any] = {"type": fact_type, **fields}
    loose = _LOOSE.get(FACT_TYPES[fact_type], {})
    for name, shape in loose.items():
        value = payload.get(name)
        if isinstance(value, str):
            if shape == "int" and re.fullmatch(r"-?[0-9]{1,19}", value):
                payload[name] = int(value)
            elif shape == "list":
                payload[name] = [v.strip() for v in value.split(",") if v.strip()]
    return decode_fact(_encoder.encode(payload))


# Fields a command line spells as text: an integer, or a comma-separated list.
_LOOSE: Final[dict[type, dict[str, str]]] = {
    SupportTimeLogged: {"seconds": "int"},
    HolidaysPinned: {"year": "int", "dates": "list"},
}


def encode_state(id_: str, recorded_at: datetime, fact: Fact, link: str) -> bytes:
    """The bytes stored for a fact: envelope fields and the chain link live outside the fact."""
    return state_bytes(_encoder.encode(id_), _encoder.encode(recorded_at), canonical(fact), link.encode())


def state_bytes(id_json: bytes, recorded_at_json: bytes, canon: bytes, link: bytes) -> bytes:
    """``encode_state`` from JSON pieces already at hand (what msgspec would encode, byte for byte)."""
    return b'[%s,%s,%s,"%s"]' % (id_json, recorded_at_json, canon, link)


def decode_stored(position: int, state: bytes) -> tuple[Recorded, str]:
    """A stored row's fact and its chain link."""
    s = _state_decoder.decode(state)
    return Recorded(position=position, recorded_at=s.recorded_at, id=s.id, fact=s.fact), s.link


def decode_state(position: int, state: bytes) -> Recorded:
    """Inverse of ``encode_state`` for a row at ``position`` (the link left out)."""
    return decode_stored(position, state)[0]


def export_line(rec: Recorded) -> bytes:
    """One NDJSON line as ``ledger events`` prints it (imports back unchanged)."""
    raw = msgspec.to_builtins(rec.fact, order="sorted")
    body = {k: v for k, v in raw.items() if v is not None}
    body["id"] = rec.id
    body["position"] = rec.position
    body["recorded_at"] = msgspec.to_builtins(rec.recorded_at)
    return _encoder.encode(body)
