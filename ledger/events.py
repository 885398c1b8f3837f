"""The facts the ledger records: one frozen msgspec struct per event type.

Every type is a member of the tagged union ``Fact`` (tag field ``type``). Lines
of an NDJSON import are decoded once, at the boundary, by ``ledger.admission.decode_fact``
(with the checks a new fact must pass beyond its type); the rest of the code only ever
sees validated, immutable facts. A stored fact is read back with these types alone.

Schema evolution rule: add fields only with defaults; never change a field's
type. Anything else is a new event type.
"""

# No ``from __future__ import annotations``: msgspec builds the decoder of every fact type
# from the classes' annotations, and evaluating them from strings (a compile and an eval
# each) was a fifth of this module's import, which every command pays (issue 17).
import typing
from collections.abc import Iterable
from datetime import datetime
from typing import Annotated, Final, Literal, TypeAlias

import msgspec

from ledger.calendar import FIRST_YEAR, LAST_YEAR
from ledger.hashing import sha256
from ledger.policy import HolidaysCode, MonthStr, PolicyFile

# The types say what a stored fact may hold, and a stored fact is read back with them: a
# constraint added here would make facts recorded before it unreadable. What a *new* fact
# may hold beyond them is ``ledger.admission.check_content``, run where facts come in.

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
# A date "YYYY-MM-DD". This, a claim's month ("YYYY-MM", ``MonthStr``) and a pin's country
# (``HolidaysCode``, as policies name holiday calendars) are bounded here and checked whole by
# ``ledger.admission`` where a new fact comes in: no msgspec pattern, as for ``Name``.
DateStr = Annotated[str, msgspec.Meta(max_length=64)]
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
    country: HolidaysCode
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
    """Inverse of ``encode_state`` for a row at ``position`` (the link left out).

    ``decode_stored``'s body, not a call to it: a rebuild decodes every fact of the log here, and the
    call and its tuple were about a fifteenth of a fact's decoding.
    """
    s = _state_decoder.decode(state)
    return Recorded(position=position, recorded_at=s.recorded_at, id=s.id, fact=s.fact)


def decode_states(positions: Iterable[int], states: Iterable[bytes]) -> list[Recorded]:
    """``decode_state`` of each position and its state, in one loop without a call per state (a
    rebuild's group decodes a thousand at once)."""
    decode = _state_decoder.decode
    return [Recorded(position, (s := decode(state)).recorded_at, s.id, s.fact)
            for position, state in zip(positions, states, strict=True)]


def export_line(rec: Recorded) -> bytes:
    """One NDJSON line as ``ledger events`` prints it (imports back unchanged)."""
    raw = msgspec.to_builtins(rec.fact, order="sorted")
    body = {k: v for k, v in raw.items() if v is not None}
    body["id"] = rec.id
    body["position"] = rec.position
    body["recorded_at"] = msgspec.to_builtins(rec.recorded_at)
    return _encoder.encode(body)
