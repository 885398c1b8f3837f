"""Month-bounded support reads (issue 18): the figures of a read by month equal those of the whole history.

A contract-month reads the tickets opened in the UTC months it touches and the time
logged in its quota year (``ledger.support_read.ticket_records``); the property compares
it, on both stores, with the same report over every fact the ledger holds, whatever the
import order (logs before their ticket, tickets opened twice), the batch split, the time
zone, the subscription year and the replay position. ``ledger verify`` holds throughout.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger.ingest.lines as lines_module
import ledger.support_read as support_read
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.events import SupportTimeLogged, TicketOpened
from ledger.persistence.port import LedgerRecorder
from ledger.policy import Policy
from ledger.policy_check import load_policy
from ledger.support_read import support_report
from ledger.verify import verify
from projections.support_model import support_json
from tests.conftest import StepClock
from tests.integration.test_support_examples import POLICY_B
from tests.integration.test_tamper import PostgresTamper, SQLiteTamper, Tamper
from tests.lines import import_lines
from tests.pgserver import scratch_database

C = "sla-b"
MONTHS = ("2026-01", "2026-03", "2026-10", "2026-12", "2027-01")
ZONES = ("Europe/Zurich", "Pacific/Auckland", "America/Los_Angeles")
BASE = datetime(2025, 10, 1, tzinfo=UTC)


def _policy(zone: str, year_starts: str) -> bytes:
    return (POLICY_B.replace(b'"Europe/Zurich"', f'"{zone}"'.encode())
            .replace(b'year_starts = "01-01"', f'year_starts = "{year_starts}"'.encode()))


def _at(hours: int) -> str:
    return (BASE + timedelta(hours=hours)).isoformat()


# Instants over 16 months, with a bias to the ends of months (where UTC and local months part).
_EDGES = [24 * d + h for d in (91, 92, 365, 366, 396, 456, 457) for h in (-14, -1, 0, 13)]
_hours = st.one_of(st.integers(0, 16 * 730), st.sampled_from(_EDGES))
_SEVERITIES = st.sampled_from(["production_down", "moderate", "limited", "odd"])


@st.composite
def _tickets(draw: st.DrawFn) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 10))):
        ticket = f"T-{i}"
        contract = C if draw(st.integers(0, 4)) else "other"
        for _ in range(draw(st.integers(1, 2))):  # opened twice: the earliest counts
            lines.append({"type": "ticket_opened", "contract": contract, "ticket": ticket,
                          "at": _at(draw(_hours)), "severity": draw(_SEVERITIES)})
        for _ in range(draw(st.integers(0, 2))):
            lines.append({"type": "ticket_responded", "ticket": ticket, "at": _at(draw(_hours))})
        if draw(st.booleans()):
            lines.append({"type": "ticket_severity_changed", "ticket": ticket, "at": _at(draw(_hours)),
                          "severity": draw(st.sampled_from(["production_down", "limited"]))})
        for _ in range(draw(st.integers(0, 2))):
            lines.append({"type": "ticket_classified", "ticket": ticket,
                          "kind": draw(st.sampled_from(["account", "bug", "global_issue"]))})
        for _ in range(draw(st.integers(0, 3))):
            lines.append({"type": "support_time_logged", "ticket": ticket, "at": _at(draw(_hours)),
                          "seconds": draw(st.integers(1, 20000))})
    return draw(st.permutations(lines))  # any order: a log may come before its ticket


def _whole_history(recorder: LedgerRecorder, policy: Policy, month: str, upto: int) -> list[Any]:
    """Every fact up to ``upto``: what the read by month must give the same figures as."""
    return list(recorder.read_records(1, upto))


def _same_figures(led: Ledger, monkeypatch: pytest.MonkeyPatch, month: str, position: int | None) -> None:
    bounded = support_json(support_report(led, C, month, position=position))
    with monkeypatch.context() as m:
        m.setattr(support_read, "ticket_records", _whole_history)
        whole = support_json(support_report(led, C, month, position=position))
    assert bounded == whole


def _check(url: str, policy: bytes, lines: list[dict[str, Any]], split: int, month: str, position: int,
           monkeypatch: pytest.MonkeyPatch) -> None:
    led = open_ledger(url, clock=StepClock())
    try:
        led.register_contract(load_policy(policy))
        data = [json.dumps(x).encode() for x in lines]
        split = min(split, len(data))
        import_lines(led, data[:split])
        import_lines(led, data[split:])
        result = verify(led.recorder)
        assert result.ok, result.problem
        last = led.recorder.last_position()
        for at in (None, min(position, last)):
            _same_figures(led, monkeypatch, month, at)
    finally:
        led.close()


_CASE = {"zone": st.sampled_from(ZONES), "year_starts": st.sampled_from(["01-01", "04-01", "10-15"]),
         "lines": _tickets(), "split": st.integers(0, 60), "month": st.sampled_from(MONTHS),
         "position": st.integers(1, 60)}


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(**_CASE)
def test_read_by_month_equals_whole_history_sqlite(monkeypatch: pytest.MonkeyPatch, zone: str,
                                                   year_starts: str, lines: list[dict[str, Any]], split: int,
                                                   month: str, position: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/l.db"
        _check(url, _policy(zone, year_starts), lines, split, month, position, monkeypatch)


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(**_CASE)
def test_read_by_month_equals_whole_history_postgres(pg_admin_url: str, monkeypatch: pytest.MonkeyPatch,
                                                     zone: str, year_starts: str, lines: list[dict[str, Any]],
                                                     split: int, month: str, position: int) -> None:
    with scratch_database(pg_admin_url) as url:
        _check(url, _policy(zone, year_starts), lines, split, month, position, monkeypatch)


@contextmanager
def _counting(recorder: LedgerRecorder) -> Iterator[list[int]]:
    """The positions the recorder's keyed reads return, while inside."""
    seen: list[int] = []
    original = recorder.read_keyed_states

    def counted(keys: Any, upto: int) -> Iterator[tuple[int, bytes]]:
        for row in original(keys, upto):
            seen.append(row[0])
            yield row

    recorder.read_keyed_states = counted  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        recorder.read_keyed_states = original  # type: ignore[method-assign]


def test_a_month_reads_its_own_tickets(ledger: Ledger) -> None:
    """A year of tickets before the month is not read; a log in the quota year of an old ticket is."""
    ledger.register_contract(load_policy(POLICY_B))
    lines: list[dict[str, Any]] = []
    for month in range(1, 11):
        for i in range(5):
            ticket = f"M{month}-{i}"
            lines.append({"type": "ticket_opened", "contract": C, "ticket": ticket,
                          "at": f"2025-{month:02d}-1{i}T10:00:00+02:00", "severity": "moderate"})
            lines.append({"type": "ticket_responded", "ticket": ticket,
                          "at": f"2025-{month:02d}-1{i}T11:00:00+02:00"})
    # An old ticket (2025) logged in the quota year (2026), and the month's own ticket.
    lines.append({"type": "support_time_logged", "ticket": "M3-0", "at": "2026-02-02T10:00:00+01:00",
                  "seconds": 600})
    lines.append({"type": "ticket_opened", "contract": C, "ticket": "N", "at": "2026-03-03T10:00:00+01:00",
                  "severity": "moderate"})
    import_lines(ledger, [json.dumps(x).encode() for x in lines])
    with _counting(ledger.recorder) as seen:
        report = support_report(ledger, C, "2026-03")
    assert [t.ticket for t in report.tickets] == ["N"]
    assert report.quota is not None
    assert report.quota.used_seconds == 600
    tickets = {p for p in seen if p > 1}  # position 1: the contract
    # N's opening; the log and everything about M3-0 (its opening, response, log): nothing else.
    assert len(tickets) == 4, sorted(tickets)


def _lines(*facts: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(x).encode() + b"\n" for x in facts)


def test_log_keys_on_every_import_path(ledger: Ledger) -> None:
    """A log is filed under its ticket's contract once the ticket is opened before it, on every path."""
    opened = {"type": "ticket_opened", "contract": C, "ticket": "T1", "at": "2026-10-05T09:00:00Z",
              "severity": "moderate"}

    def log(ticket: str, day: int) -> dict[str, Any]:
        return {"type": "support_time_logged", "ticket": ticket, "at": f"2026-10-{day:02d}T10:00:00Z",
                "seconds": 60}

    # The packed path (a child links and packs): the ticket opened earlier in the same input.
    ledger.import_file(io.BytesIO(_lines(opened, log("T1", 6))), parallel_from=1)
    # A ticket the store holds (SQLite sets the key in place, PostgreSQL goes the checking way).
    ledger.import_file(io.BytesIO(_lines(log("T1", 7))), parallel_from=1)
    # A log before its ticket: an orphan, found by the month's quota read all the same.
    ledger.import_file(io.BytesIO(_lines(log("T2", 8), {**opened, "ticket": "T2"})), parallel_from=1)
    # The checking path, one fact at a time.
    ledger.append(SupportTimeLogged(ticket="T2", at=datetime(2026, 10, 9, tzinfo=UTC), seconds=60))
    rec = ledger.recorder
    assert [r.position for r in rec.read_keyed(["q:sla-b@2026-10"], 99)] == [2, 3, 6]
    assert [r.position for r in rec.read_keyed(["q:@2026-10"], 99)] == [4]
    result = verify(rec)
    assert result.ok, result.problem
    ledger.register_contract(load_policy(POLICY_B))
    report = support_report(ledger, C, "2026-10")
    assert report.quota is not None
    assert report.quota.used_seconds == 240


@contextmanager
def _earlier_keys() -> Iterator[None]:
    """Appends file support facts as the version before month-bounded reads did (``o:``, ``t:`` alone)."""
    table = lines_module._TAG_AND_KEY
    saved: dict[type, Any] = {cls: table[cls] for cls in (TicketOpened, SupportTimeLogged)}
    table[TicketOpened] = (saved[TicketOpened][0], lambda f: "o:" + f.contract, saved[TicketOpened][2])
    table[SupportTimeLogged] = (saved[SupportTimeLogged][0], lambda f: "t:" + f.ticket, None)
    try:
        yield
    finally:
        table.update(saved)


def test_a_store_written_before_reads_the_contract_whole(ledger: Ledger,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Tickets under ``o:<contract>``: that contract is read whole, as then; new facts join; verify holds."""
    ledger.register_contract(load_policy(POLICY_B))
    old = [{"type": "ticket_opened", "contract": C, "ticket": f"A{i}", "severity": "moderate",
            "at": f"2026-0{1 + i}-10T10:00:00Z"} for i in range(3)]
    logs = [{"type": "support_time_logged", "ticket": f"A{i}", "at": "2026-03-20T10:00:00Z", "seconds": 60}
            for i in range(3)]
    with _earlier_keys():
        import_lines(ledger, [json.dumps(x).encode() for x in [logs[0], *old, logs[1]]])
    assert [r.position for r in ledger.recorder.read_keyed(["o:sla-b"], 99)] == [3, 4, 5]
    # Written now: the new keys, beside the old ones.
    import_lines(ledger, [json.dumps(x).encode() for x in [
        logs[2], {**old[0], "ticket": "B", "at": "2026-03-11T10:00:00Z"}]])
    result = verify(ledger.recorder)
    assert result.ok, result.problem
    for month in ("2026-01", "2026-03"):
        _same_figures(ledger, monkeypatch, month, None)
    report = support_report(ledger, C, "2026-03")
    assert [t.ticket for t in report.tickets] == ["A2", "B"]
    assert report.quota is not None
    assert report.quota.used_seconds == 180


def test_verify_names_a_missing_log_key(ledger: Ledger) -> None:
    """A log filed under its ticket alone, in a ledger with no ticket filed the earlier way: reported."""
    with _earlier_keys():
        import_lines(ledger, [_lines({"type": "support_time_logged", "ticket": "T", "seconds": 60,
                                      "at": "2026-03-20T10:00:00Z"})])
    import_lines(ledger, [_lines({"type": "ticket_opened", "contract": C, "ticket": "T",
                                  "severity": "moderate", "at": "2026-03-10T10:00:00Z"})])
    result = verify(ledger.recorder)
    assert not result.ok
    assert result.problem is not None
    assert result.problem.startswith("position 1: key index row of a time log missing")


@pytest.fixture
def raw(store_url: str) -> Tamper:
    return SQLiteTamper(store_url.removeprefix("sqlite:///")) if store_url.startswith("sqlite") \
        else PostgresTamper(store_url)


def test_verify_names_a_support_key_removed(ledger: Ledger, raw: Tamper) -> None:
    """Each of a support fact's keys is checked: a month key removed is reported at its position."""
    import_lines(ledger, _lines(
        {"type": "ticket_opened", "contract": C, "ticket": "T", "severity": "moderate",
         "at": "2026-03-10T10:00:00Z"},
        {"type": "support_time_logged", "ticket": "T", "seconds": 60, "at": "2026-03-20T10:00:00Z"},
        {"type": "support_time_logged", "ticket": "T", "seconds": 60, "at": "2026-03-21T10:00:00Z"},
    ).splitlines())
    assert verify(ledger.recorder).ok
    raw.execute("DELETE FROM ledger_index WHERE key = %s AND position = %s", ("q:sla-b@2026-03", 3))
    result = verify(ledger.recorder)
    assert not result.ok
    assert result.problem is not None
    assert result.problem.startswith("position 3: key index row missing (filed the earlier way")
    raw.execute("DELETE FROM ledger_index WHERE key = %s", ("u:sla-b@2026-03",))
    result = verify(ledger.recorder)
    assert result.problem is not None
    assert result.problem.startswith("position 1: key index row 'u:sla-b@2026-03' missing"), result.problem
