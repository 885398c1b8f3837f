"""The facts of INTERFACE.md 6.1 on both stores: validation, idempotency, key index, verify."""

from __future__ import annotations

import json

import pytest

from ledger.admission import fact_from_fields
from ledger.application import Ledger
from ledger.errors import BadInput
from ledger.events import HolidaysPinned, SupportTimeLogged, TicketOpened
from ledger.persistence.keys import index_keys, reference_key
from ledger.verify import verify
from tests.lines import import_lines

LINES = [
    {"type": "ticket_opened", "contract": "c1", "ticket": "T-1", "at": "2026-10-05T09:00:00+02:00",
     "severity": "production_down", "title": "down"},
    {"type": "ticket_severity_changed", "ticket": "T-1", "at": "2026-10-05T09:10:00+02:00",
     "severity": "moderate"},
    {"type": "ticket_responded", "ticket": "T-1", "at": "2026-10-05T09:20:00+02:00"},
    {"type": "ticket_classified", "ticket": "T-1", "kind": "bug"},
    {"type": "ticket_resolved", "ticket": "T-1", "at": "2026-10-05T11:00:00+02:00"},
    {"type": "support_time_logged", "ticket": "T-1", "at": "2026-10-05T11:00:00+02:00", "seconds": 1800},
    {"type": "support_engaged", "service": "web", "level": "level3", "at": "2026-10-05T09:05:00+02:00"},
    {"type": "recovery_performed", "service": "web", "recovery": "r-1", "at": "2026-10-05T10:00:00Z",
     "restored_to": "2026-10-04T22:00:00Z"},
    {"type": "holidays_pinned", "country": "CA-ON", "year": 2026, "dates": ["2026-12-25", "2026-01-01"]},
]


def _ndjson(lines: list[dict[str, object]]) -> list[bytes]:
    return [json.dumps(x).encode() for x in lines]


def test_support_facts_import_idempotent_and_verify(ledger: Ledger) -> None:
    first = import_lines(ledger, _ndjson(LINES))
    assert (first.appended, first.first_position, first.last_position) == (len(LINES), 1, len(LINES))
    again = import_lines(ledger, _ndjson(LINES))
    assert (again.appended, again.skipped) == (0, len(LINES))
    pinned = [r.fact for r in ledger.records() if isinstance(r.fact, HolidaysPinned)]
    assert pinned[0].dates == ("2026-01-01", "2026-12-25")  # canonical: sorted
    assert verify(ledger.recorder).ok
    # The key index: the contract's tickets by UTC month of opening, the time logged by UTC
    # month under the ticket's contract, everything about a ticket under the ticket.
    assert list(ledger.recorder.read_keyed(["o:c1"], 99)) == []
    assert [r.position for r in ledger.recorder.read_keyed(["u:c1@2026-10"], 99)] == [1]
    assert [r.position for r in ledger.recorder.read_keyed(["q:c1@2026-10"], 99)] == [6]
    assert [r.position for r in ledger.recorder.read_keyed(["t:T-1"], 99)] == [1, 2, 3, 4, 5, 6]
    assert [r.position for r in ledger.recorder.read_keyed(["s:web"], 99)] == [7, 8]
    assert [r.position for r in ledger.recorder.read_keyed(["h:CA-ON"], 99)] == [9]


@pytest.mark.parametrize(("patch", "message"), [
    ({"type": "support_time_logged", "ticket": "T", "at": "2026-10-05T11:00:00Z", "seconds": 0},
     "field `seconds`"),
    ({"type": "support_time_logged", "ticket": "T", "at": "2026-10-05T11:00:00Z", "seconds": 1.5},
     "field `seconds`"),
    ({"type": "recovery_performed", "service": "w", "recovery": "r", "at": "2026-10-05T10:00:00Z",
      "restored_to": "2026-10-05T10:00:00Z"}, "restored_to"),
    ({"type": "ticket_classified", "ticket": "T", "kind": "feature"}, "field `kind`"),
    ({"type": "ticket_opened", "contract": "c", "ticket": "T", "at": "2026-10-05T10:00:00",
      "severity": "x"}, "field `at`"),
    ({"type": "holidays_pinned", "country": "CA", "year": 2026, "dates": ["2027-01-01"]}, "field `dates[0]`"),
    ({"type": "holidays_pinned", "country": "CA", "year": 2026, "dates": ["2026-02-30"]}, "field `dates[0]`"),
    ({"type": "holidays_pinned", "country": "ca", "year": 2026, "dates": []}, "field `country`"),
    ({"type": "ticket_responded", "ticket": "T", "at": "2026-10-05T10:00:00Z", "by": "x"}, "by"),
])
def test_bad_support_facts_keep_nothing(ledger: Ledger, patch: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput, match=r"line 2: .*" + message.replace("[", r"\[").replace("]", r"\]")):
        import_lines(ledger, _ndjson([LINES[0], patch]))
    assert ledger.recorder.last_position() == 0


def test_a_ticket_id_names_one_contract(ledger: Ledger) -> None:
    import_lines(ledger, _ndjson(LINES[:1]))
    other = {**LINES[0], "contract": "c2"}
    with pytest.raises(BadInput, match="field `ticket`: T-1 already names a ticket of contract c1"):
        import_lines(ledger, _ndjson([other]))


def test_command_line_fields_are_loose_integers_and_lists() -> None:
    fact = fact_from_fields("support_time_logged",
                            {"ticket": "T", "at": "2026-10-05T11:00:00Z", "seconds": "60"})
    assert isinstance(fact, SupportTimeLogged)
    assert fact.seconds == 60
    pin = fact_from_fields("holidays_pinned",
                           {"country": "CH", "year": "2026", "dates": "2026-08-01, 2026-01-01"})
    assert isinstance(pin, HolidaysPinned)
    assert pin.dates == ("2026-01-01", "2026-08-01")


def test_keys() -> None:
    fact = fact_from_fields("ticket_opened", {"contract": "c", "ticket": "T", "at": "2026-10-05T11:00:00Z",
                                              "severity": "s"})
    assert isinstance(fact, TicketOpened)
    assert (index_keys(fact), reference_key(fact)) == (("u:c@2026-10", "t:T"), "t:T")
    log = fact_from_fields("support_time_logged", {"ticket": "T", "at": "2026-10-31T23:30:00-01:00",
                                                   "seconds": "60"})
    assert index_keys(log) == ("t:T", "q:@2026-11")  # its ticket's contract not known: an orphan
    assert index_keys(log, "c") == ("t:T", "q:c@2026-11")
