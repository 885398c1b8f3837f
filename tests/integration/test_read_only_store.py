"""Read-only commands' stores (issue 17, a fast start): the SQLite reader reads what the full recorder reads.

``open_ledger(url, read_only=True)`` opens, on SQLite, ``SQLiteReader`` (``sqlite3`` alone,
no eventsourcing import); on PostgreSQL the usual recorder. Every read must give exactly
what the full recorder gives, the same refusals must hold, and whatever is not a read
must still work through it (on the full recorder it opens).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from cli.demo.run import run_demo
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.checkpoint import inclusion
from ledger.errors import BadInput, StoreError
from ledger.events import ProbeFailed
from ledger.persistence.keys import CONTRACT, contract_key, service_key
from ledger.persistence.merkle_read import root_of
from ledger.persistence.sqlite.reads import SQLiteReader
from ledger.verify import verify
from projections.model import to_json
from tests.conftest import StepClock

ROOT = Path(__file__).resolve().parents[2]
MONTH = "2026-10"


@pytest.fixture
def demo_url(store_url: str, clock: StepClock) -> str:
    led = open_ledger(store_url, clock=clock)
    run_demo(led, MONTH)
    led.close()
    return store_url


def _reads(led: Ledger) -> list[object]:
    """What the read path asks of a recorder, each read once."""
    r = led.recorder
    last = r.last_position()
    services = sorted({getattr(rec.fact, "service", "") for rec in r.read_records()} - {""})
    return [
        last,
        [(x.position, x.fact, x.recorded_at) for x in r.read_records()],
        [(x.position, x.fact) for x in r.read_records(3, 7)],
        list(r.read_raw()),
        list(r.read_raw(last - 2)),
        [list(r.read_keyed_states([service_key(s)], last)) for s in services],
        list(r.read_keyed_states([service_key(s) for s in services], last // 2)),
        list(r.read_position_states(list(range(1, last + 1, 3)))),
        [(x.position, x.fact) for x in r.read_key_prefix(CONTRACT, last)],
        list(r.read_keyed([contract_key("sla-a-2026")], last)),
        r.position_of(next(r.read_raw())[1]),
        r.position_of("no such id"),
        r.position_at(next(r.read_records(last, last)).recorded_at),
        r.merkle_sizes(),
        root_of(r, last),
        root_of(r, last // 2),
        inclusion(r, 2, last),
    ]


def _reports(led: Ledger) -> list[bytes]:
    return [to_json(led.report(c, MONTH).report) for c in ("sla-a-2026", "sla-b-2026", "sla-d-2026")]


def test_read_only_reads_and_reports_equal_the_full_recorders(demo_url: str) -> None:
    full, reader = open_ledger(demo_url, create=False), open_ledger(demo_url, read_only=True)
    try:
        assert isinstance(reader.recorder, SQLiteReader) == demo_url.startswith("sqlite")
        assert _reads(reader) == _reads(full)
        assert _reports(reader) == _reports(full)
        assert reader.audit("sla-a-2026", MONTH, position=20) == full.audit("sla-a-2026", MONTH, position=20)
        assert reader.recorder.store_errors  # a store failure is told from a fact's
    finally:
        full.close()
        reader.close()


def test_what_is_not_a_read_goes_to_the_full_recorder(demo_url: str, clock: StepClock) -> None:
    led = open_ledger(demo_url, read_only=True, clock=clock)
    try:
        before = led.recorder.last_position()
        at = datetime(2026, 10, 20, tzinfo=UTC)
        result = led.append(ProbeFailed(service="api", probe="read-only", at=at))
        assert result.first_position == before + 1 == led.recorder.last_position()  # the reader sees it
        assert verify(led.recorder).ok  # verify's snapshot
        view = led.recorder.existing_view()
        assert view is None or isinstance(view[1], set)
    finally:
        led.close()


def test_the_reader_refuses_what_the_recorder_refuses(tmp_path: Path) -> None:
    missing, text, empty = tmp_path / "missing.db", tmp_path / "text.db", tmp_path / "empty.db"
    text.write_text("not a database")
    sqlite3.connect(empty).close()
    for path in (missing, text, empty):
        for read_only in (False, True):
            with pytest.raises(BadInput if path == text else StoreError,
                               match="not a SQLite database" if path == text else "not a ledger store"):
                open_ledger(f"sqlite:///{path}", create=False, read_only=read_only)
    assert not missing.exists()  # nothing created
    old = tmp_path / "old.db"
    open_ledger(f"sqlite:///{old}").close()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    state = msgspec.json.encode(["e1", at, ProbeFailed(service="w", probe="p", at=at)])
    with sqlite3.connect(old) as conn:
        conn.execute("INSERT INTO stored_events VALUES (?, 1, 'probe_failed', ?)", ("0" * 32, state))
    with pytest.raises(StoreError, match="earlier ledger format"):
        open_ledger(f"sqlite:///{old}", read_only=True)


def test_a_read_only_ledger_imports_no_eventsourcing(demo_url: str) -> None:
    probe = ("import sys; from ledger.bootstrap import open_ledger; "
             f"led = open_ledger({demo_url!r}, read_only=True); led.report('sla-a-2026', {MONTH!r}); "
             "print(' '.join(m for m in sorted(sys.modules) if m.split('.')[0] == 'eventsourcing'))")
    got = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    if demo_url.startswith("sqlite"):
        assert got.stdout.split() == []
    else:  # PostgreSQL reads through its recorder (the library's), said in docs/decisions.md
        assert "eventsourcing.postgres" in got.stdout.split()
