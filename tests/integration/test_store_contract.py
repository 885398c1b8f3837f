"""The store contract: one abstract suite, run on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.errors import BadInput, StoreError
from ledger.events import ProbeFailed, export_line
from ledger.persistence.postgres.connect import parse_postgres_url
from ledger.persistence.sqlite.recorder import PAGE_SIZE
from ledger.verify import verify
from tests.conftest import StepClock
from tests.lines import import_lines
from tests.pgserver import scratch_database

REPO = Path(__file__).resolve().parents[2]

GOOD = [
    b'{"type":"probe_failed","service":"web","probe":"paris","at":"2026-10-04T09:15:00Z","id":"e1"}',
    b'{"type":"probe_recovered","service":"web","probe":"paris","at":"2026-10-04T09:45:00+02:00"}',
    b'{"type":"incident_opened","service":"web","incident":"INC-1","at":"2026-10-05T10:00:00Z",'
    b'"impact":"outage","title":"db down","severity":1}',
    b'{"type":"incident_resolved","incident":"INC-1","at":"2026-10-05T11:00:00Z"}',
    b'{"type":"maintenance_announced","service":"web","maintenance":"mw-1",'
    b'"announced_at":"2026-10-01T00:00:00Z","starts_at":"2026-10-10T01:00:00Z","ends_at":"2026-10-10T02:00:00Z"}',
    b'{"type":"exclusion_declared","service":"web","exclusion":"ex-1","category":"third_party",'
    b'"starts_at":"2026-10-12T00:00:00Z","ends_at":"2026-10-12T01:00:00Z","reason":"CDN","contract":"c1"}',
    b'{"type":"exclusion_revoked","ref":"ex-1","reason":"CDN was ours"}',
    b'{"type":"credit_claim_filed","contract":"c1","month":"2026-10","at":"2026-11-02T10:00:00Z"}',
]

# (line, what the one-line message must name)
BAD = [
    (b'{"type":"probe_exploded","service":"web","probe":"p","at":"2026-10-04T09:15:00Z"}', "type"),
    (b'{"type":"probe_failed","service":"web","probe":"p","at":"2026-10-04T09:15:00Z","colour":"red"}',
     "colour"),
    (b'{"type":"probe_failed","service":"web","at":"2026-10-04T09:15:00Z"}', "probe"),
    (b'{"type":"probe_failed","service":"web","probe":"p","at":"2026-10-04T09:15:00"}', "at"),
    (b'{"type":"probe_failed","service":"web","probe":"p","at":"yesterday"}', "at"),
    (b'{"type":"probe_failed","service":7,"probe":"p","at":"2026-10-04T09:15:00Z"}', "service"),
    (b'{"type":"incident_opened","service":"w","incident":"i","at":"2026-10-04T09:15:00Z","impact":"bad"}',
     "impact"),
    (b'{"type":"force_majeure_declared","service":"w","declaration":"d","reason":"storm",'
     b'"starts_at":"2026-10-04T10:00:00Z","ends_at":"2026-10-04T10:00:00Z"}', "ends_at"),
    (b'{"type":"exclusion_declared","service":"w","exclusion":"x","category":"gremlins","reason":"r",'
     b'"starts_at":"2026-10-04T10:00:00Z","ends_at":"2026-10-04T11:00:00Z"}', "category"),
    (b'{"type":"credit_claim_filed","contract":"c","month":"2026-13","at":"2026-10-04T10:00:00Z"}', "month"),
    (b'{"type":"probe_failed","service":"","probe":"p","at":"2026-10-04T09:15:00Z"}', "service"),
    (b'{"type":"probe_failed","service":"w","probe":"p","at":"2026-10-04T09:15:00Z","id":""}', "id"),
    (b'{"type":"probe_failed", "service":', "JSON"),
    (b'[1, 2, 3]', "object"),
    (b'"just a string"', "object"),
    (b'{"type":"probe_failed","service":"w\xff","probe":"p","at":"2026-10-04T09:15:00Z"}', "UTF-8"),
    (b'{"type":"probe_failed","service":"w","probe":"p","at":"2026-10-04T09:15:00Z",'
     b'"recorded_at":"2001-01-01T00:00:00Z"}', "recorded_at"),
]


def snapshot(led: Ledger) -> list[bytes]:
    """Everything observable about the store's content."""
    rows = [export_line(r) for r in led.records()]
    raw = [repr(r).encode() for r in led.recorder.read_raw()]  # stream ids, topics, states with links
    return rows + raw


class StoreContract:
    """Behaviour every store must have; subclasses provide ``url``."""

    @pytest.fixture
    def url(self) -> Iterator[str]:
        raise NotImplementedError

    @pytest.fixture
    def led(self, url: str, clock: StepClock) -> Iterator[Ledger]:
        led = open_ledger(url, clock=clock)
        yield led
        led.close()

    def test_append_assigns_positions_and_recorded_at(self, led: Ledger) -> None:
        fact = ProbeFailed(service="web", probe="paris", at=datetime(2026, 10, 4, 9, 15, tzinfo=UTC))
        first = led.append(fact)
        second = led.append(msgspec.structs.replace(fact, probe="london"))
        assert (first.first_position, second.first_position) == (1, 2)
        recs = list(led.records())
        assert [r.position for r in recs] == [1, 2]
        assert recs[0].recorded_at < recs[1].recorded_at
        assert recs[0].id.startswith("sha256:")
        assert recs[0].fact == fact

    def test_same_id_twice_changes_nothing(self, led: Ledger) -> None:
        fact = ProbeFailed(service="web", probe="p", at=datetime(2026, 10, 4, tzinfo=UTC), id="k1")
        assert led.append(fact).appended == 1
        before = snapshot(led)
        again = led.append(fact)
        assert (again.appended, again.skipped) == (0, 1)
        # Same id, other content: a conflict, refused with the id and its position (issue 14).
        with pytest.raises(BadInput, match=r"^field `id`: k1 is already recorded with other content "
                                           r"\(position 1\); nothing appended$"):
            led.append(msgspec.structs.replace(fact, probe="other"))
        assert snapshot(led) == before

    def test_derived_id_makes_identical_content_idempotent(self, led: Ledger) -> None:
        line = b'{"type":"probe_failed","service":"w","probe":"p","at":"2026-10-04T09:15:00Z"}'
        same_with_null = (
            b'{"detail":null,"at":"2026-10-04T09:15:00Z","probe":"p","service":"w","type":"probe_failed"}'
        )
        assert import_lines(led, [line]).appended == 1
        assert import_lines(led, [same_with_null]).appended == 0

    def test_import_and_reimport(self, led: Ledger) -> None:
        result = import_lines(led, GOOD)
        assert (result.appended, result.first_position, result.last_position) == (len(GOOD), 1, len(GOOD))
        before = snapshot(led)
        again = import_lines(led, GOOD)
        assert (again.appended, again.skipped) == (0, len(GOOD))
        assert snapshot(led) == before

    def test_a_recorded_id_inside_a_batch_is_skipped_and_the_rest_kept(self, led: Ledger) -> None:
        # SQLite inserts a batch first and checks only on a conflict: the rows the batch
        # inserted before the recorded one must be taken back, and the positions stay gap-free.
        def line(i: int) -> bytes:
            body = b'"type":"probe_failed","service":"w","probe":"p","at":"2026-01-01T00:00:%02dZ"' % i
            return b'{"id":"e%d",%s}' % (i, body)

        assert import_lines(led, [line(5)]).appended == 1
        result = import_lines(led, [line(i) for i in range(10)])
        assert (result.appended, result.skipped, result.first_position, result.last_position) == (9, 1, 2, 10)
        assert [r.id for r in led.records()] == ["e5", *(f"e{i}" for i in range(10) if i != 5)]
        assert [r.position for r in led.records()] == list(range(1, 11))
        assert verify(led.recorder).ok
        again = import_lines(led, [line(i) for i in range(12)])
        assert (again.appended, again.skipped) == (2, 10)
        assert verify(led.recorder).ok

    def test_duplicates_inside_one_file_are_recorded_once(self, led: Ledger) -> None:
        result = import_lines(led, [GOOD[0], GOOD[1], GOOD[0]])
        assert (result.appended, result.skipped) == (2, 1)

    @pytest.mark.parametrize(("bad", "names"), BAD)
    def test_bad_line_rejects_the_whole_file(self, led: Ledger, bad: bytes, names: str) -> None:
        import_lines(led, GOOD[:2])
        before = snapshot(led)
        lines = [*GOOD[2:5], bad, *GOOD[5:]]
        with pytest.raises(BadInput) as err:
            import_lines(led, lines)
        message = str(err.value)
        assert message.startswith("line 4: "), message
        assert names in message, message
        assert "\n" not in message
        assert snapshot(led) == before
        # and nothing was burnt: the next append takes the next position
        assert import_lines(led, GOOD[2:3]).first_position == 3

    def test_bad_line_late_in_a_large_file_keeps_nothing(self, led: Ledger) -> None:
        lines = [
            b'{"type":"probe_failed","service":"w","probe":"p%d","at":"2026-10-04T09:15:00Z"}' % i
            for i in range(5000)
        ]
        lines.append(b'{"type":"probe_failed"}')
        with pytest.raises(BadInput, match=r"^line 5001: "):
            import_lines(led, lines)
        assert led.recorder.last_position() == 0
        assert list(led.records()) == []

    def test_blank_lines_are_skipped_but_counted(self, led: Ledger) -> None:
        with pytest.raises(BadInput, match=r"^line 3: "):
            import_lines(led, [GOOD[0], b"\n", b"{}"])

    def test_export_import_round_trip_keeps_recorded_at(self, led: Ledger, clock: StepClock,
                                                         tmp_path: Path) -> None:
        import_lines(led, GOOD[:4])
        import_lines(led, GOOD[4:])
        exported = [export_line(r) for r in led.records()]
        other = open_ledger(f"sqlite:///{tmp_path / 'copy.db'}", clock=clock)
        try:
            import_lines(other, exported)
            assert [export_line(r) for r in other.records()] == exported
            assert list(other.recorder.read_raw()) == list(led.recorder.read_raw())
            when = list(led.records())[3].recorded_at
            assert other.recorder.position_at(when) == led.recorder.position_at(when) == 4
            # importing it again changes nothing
            assert import_lines(other, exported).appended == 0
        finally:
            other.close()

    def test_recorded_at_earlier_than_the_store_is_refused(self, led: Ledger) -> None:
        import_lines(led, GOOD[:1])
        old = b'{"type":"probe_failed","service":"w","probe":"q","at":"2026-10-04T09:15:00Z",' \
              b'"recorded_at":"2026-01-01T00:00:00Z"}'
        with pytest.raises(BadInput, match=r"^line 1: field `recorded_at`"):
            import_lines(led, [old])
        assert led.recorder.last_position() == 1

    def test_events_filters(self, led: Ledger) -> None:
        import_lines(led, [*GOOD, b'{"type":"probe_failed","service":"api","probe":"p",'
                                  b'"at":"2026-10-20T00:00:00Z"}'])
        web = [r.position for r in led.events(service="web")]
        assert web == [1, 2, 3, 4, 5, 6, 7]  # the revocation refers to a web exclusion
        api = [r.position for r in led.events(service="api")]
        assert api == [9]
        since = [r.position for r in led.events(since=datetime(2026, 10, 10, 1, 30, tzinfo=UTC))]
        assert since == [5, 6, 7, 8, 9]
        until = [r.position for r in led.events(until=datetime(2026, 10, 5, tzinfo=UTC))]
        assert until == [1, 2, 7]

    def test_verify_passes_on_an_honest_ledger(self, led: Ledger) -> None:
        import_lines(led, GOOD)
        result = verify(led.recorder)
        assert result.ok, result.problem
        assert result.position == len(GOOD)

    def test_concurrent_importers_keep_positions_gap_free(self, url: str, led: Ledger,
                                                          tmp_path: Path) -> None:
        files = []
        for w in range(2):
            path = tmp_path / f"w{w}.ndjson"
            path.write_bytes(b"\n".join(
                b'{"type":"probe_failed","service":"w","probe":"p%d-%d","at":"2026-10-04T09:15:00Z"}' % (w, i)
                for i in range(3000)
            ))
            files.append(path)
        procs = [
            subprocess.Popen([sys.executable, "-m", "cli.main", "--store", url, "import", "-q", str(f)],
                             cwd=REPO, stderr=subprocess.PIPE)
            for f in files
        ]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()
        positions = [r.position for r in led.records()]
        assert positions == list(range(1, 6001))
        assert verify(led.recorder).ok


    def test_stream_id_is_the_fact_id(self, led: Ledger) -> None:
        import_lines(led, GOOD)
        raw = list(led.recorder.read_raw())
        assert [oid for _, oid, _, _ in raw] == [r.id for r in led.records()]
        assert led.recorder.position_of("e1") == raw[0][0]
        assert led.recorder.position_of("nope") is None


class TestSQLiteStore(StoreContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'ledger.db'}"

    def test_a_store_of_the_earlier_format_is_refused(self, tmp_path: Path) -> None:
        # The earlier format keyed streams by uuid5(namespace, id): a re-import would duplicate.
        path = tmp_path / "old.db"
        open_ledger(f"sqlite:///{path}").close()
        at = datetime(2026, 1, 1, tzinfo=UTC)
        # The earlier state: [id, recorded_at, fact], no chain link (that lived in another table).
        state = msgspec.json.encode(["e1", at, ProbeFailed(service="w", probe="p", at=at)])
        with sqlite3.connect(path) as conn:
            conn.execute("INSERT INTO stored_events VALUES (?, 1, 'probe_failed', ?)", ("0" * 32, state))
        with pytest.raises(StoreError, match="earlier ledger format"):
            open_ledger(f"sqlite:///{path}")

    def test_a_new_store_gets_large_pages_and_an_existing_one_keeps_its_own(self, tmp_path: Path) -> None:
        new, old = tmp_path / "new.db", tmp_path / "old.db"
        with sqlite3.connect(old) as conn:  # a store created before: SQLite's default pages
            conn.execute("PRAGMA page_size = 4096")
            conn.execute("PRAGMA journal_mode = WAL")
        for path, size in ((new, PAGE_SIZE), (old, 4096)):
            led = open_ledger(f"sqlite:///{path}")
            line = b'{"type":"probe_failed","service":"w","probe":"p","at":"2026-01-01T00:00:00Z"}'
            import_lines(led, [line])
            assert [type(r.fact).__name__ for r in led.records()] == ["ProbeFailed"]
            led.close()
            with sqlite3.connect(path) as conn:
                assert conn.execute("PRAGMA page_size").fetchone()[0] == size
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.postgres
class TestPostgresStore(StoreContract):
    @pytest.fixture
    def url(self, pg_admin_url: str) -> Iterator[str]:
        with scratch_database(pg_admin_url) as url:
            yield url

    def test_a_store_of_the_earlier_format_is_refused(self, pg_admin_url: str) -> None:
        # The earlier format had uuid stream ids (the library's default column type).
        with scratch_database(pg_admin_url) as url:
            a = parse_postgres_url(url)
            datastore = PostgresDatastore(**a, originator_id_type="uuid")
            PostgresApplicationRecorder(datastore).create_table()
            datastore.close()
            with pytest.raises(StoreError, match="earlier ledger format"):
                open_ledger(url)


@pytest.mark.parametrize("keys", [["p:svc-3/p@2026-10-04"], [f"i:INC-{n}" for n in range(60)]])
def test_postgres_keyed_read_is_an_index_walk_after_a_bulk_load(pg_url: str, keys: list[str]) -> None:
    # After a load large enough to be analyzed, a keyed read must still fetch the log by
    # position: one probe's thousands of reports of a day, or sixty reference keys with few facts.
    line = '{"type":"probe_failed","service":"svc-%d","probe":"p","at":"2026-10-04T09:%02d:00Z","id":"e%d"}'
    rows = [(line % (i % 7, i % 60, i)).encode() for i in range(60_000)]
    rows += [b'{"type":"incident_resolved","incident":"INC-%d","at":"2026-10-05T11:00:00Z"}' % n
             for n in range(40)]
    led = open_ledger(pg_url, clock=StepClock())
    try:
        import_lines(led, rows)
        recorder = led.recorder
        with recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            statement = recorder.sql_keyed_states.as_string(conn)  # type: ignore[attr-defined]
            plan = "\n".join(r["QUERY PLAN"] for r in conn.execute("EXPLAIN " + statement, (keys, 10**9)))
        assert "Seq Scan on stored_events" not in plan
        assert "stored_events_notification_id_idx" in plan
        found = list(recorder.read_keyed_states(keys, 10**9))
        assert [p for p, _ in found] == sorted(p for p, _ in found)
        assert len(found) == (sum(1 for i in range(60_000) if i % 7 == 3) if len(keys) == 1 else 40)
    finally:
        led.close()
