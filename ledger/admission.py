"""What a new fact must hold beyond its type, checked where facts come in (import, append, the server).

``decode_fact`` decodes one JSON line into a checked new fact; ``admit`` (and ``check_content``)
checks what the types cannot say (instants in range, names and free text without control
characters, a claim's month, a contract's policy) and gives the fact's canonical JSON;
``check_keys`` refuses a key given twice. A fact read back from the store is not checked again:
a read (``ledger report``) imports none of this (issue 17).
"""

import functools
import operator
import re
import typing
from collections.abc import Callable
from datetime import date
from typing import Any, Final

import msgspec

from ledger.calendar import FIRST_YEAR, INSTANT_RANGE, LAST_YEAR, check_month, in_range
from ledger.errors import BadInput
from ledger.events import (
    CONTRACT_TYPES,
    FACT_DECODER,
    FACT_TYPES,
    ContractAmended,
    ContractRegistered,
    CreditClaimFiled,
    Fact,
    HolidaysPinned,
    IncidentOpened,
    Name,
    SupportTimeLogged,
    Text,
    Timestamp,
)
from ledger.policy_check import _HOLIDAYS, _HOLIDAYS_RE, check_policy
from ledger.text import bom_or

_encoder: Final = msgspec.json.Encoder(order="sorted")  # as ledger.events encodes: canonical JSON
_FIELD_RE: Final = r"`\$\.([^`]*)`"  # messages only: compiled when first used (re's cache)


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


_DATE_RE: Final = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"  # fromisoformat alone also reads "20261001"


def _pinned(fact: HolidaysPinned) -> HolidaysPinned:
    """Each date a real day of the pinned year; the list in its one canonical form (sorted, once)."""
    if not re.fullmatch(_HOLIDAYS_RE, fact.country):  # as a policy names a holiday calendar
        raise BadInput(f"field `country`: expected {_HOLIDAYS}, got {fact.country!r}")
    days: set[date] = set()
    for i, text in enumerate(fact.dates):
        try:
            if not re.fullmatch(_DATE_RE, text):
                raise ValueError(text)
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
        raise BadInput(bom_or(data, "JSON", f"not valid JSON: {exc}")) from None
    except UnicodeDecodeError as exc:
        raise BadInput(_not_utf8(data, exc)) from None
    except RecursionError:
        raise BadInput("JSON nested too deeply") from None
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    fact, canon, _ = admit(fact, may_hold_control(raw))
    check_keys(raw, fact, canon, b"\\" in raw)
    return fact


def _not_utf8(data: bytes | str, exc: UnicodeDecodeError) -> str:
    """The message for a line that is not UTF-8, naming the offending byte of the line.

    msgspec counts ``exc.start`` from the start of the string value that holds the byte,
    not from the start of the line; decoding the line again finds it in the line. Counted
    from 1, as msgspec counts the bytes of its JSON errors (``trailing characters (byte 8)``).
    """
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            bytes(data).decode("utf-8")
        except UnicodeDecodeError as whole:
            exc = whole
    return f"not valid UTF-8: {exc.reason} at byte {exc.start + 1} of the line"


def fact_from_fields(fact_type: str, fields: dict[str, Any]) -> Fact:
    """Build a fact from loose command-line fields (values as strings)."""
    if fact_type not in FACT_TYPES:
        raise BadInput(f"unknown event type `{fact_type}`")
    if FACT_TYPES[fact_type] in CONTRACT_TYPES:  # a whole policy is no loose field
        verb = "register" if fact_type == "contract_registered" else "amend"
        raise BadInput(f"`{fact_type}`: a policy is recorded from its TOML file "
                       f"(`ledger contract {verb} FILE.toml`), or as a whole fact with `append --json`")
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
