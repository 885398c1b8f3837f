"""Imports prepared in a second process: same ledger as in-process, same errors, nothing half-written."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

import pytest

from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.errors import BadInput, StoreError
from ledger.ingest.lines import CHUNK, MAX_LINE
from ledger.ingest.strategy import PARALLEL_FROM_BYTES
from ledger.verify import verify
from tests.conftest import StepClock
from tests.integration.test_store_contract import snapshot
from tests.lines import import_lines

REPO = Path(__file__).resolve().parents[2]
LINE = b'{"type":"probe_failed","service":"svc-%d","probe":"p","at":"2026-10-04T09:%02d:00Z","id":"e%d"}'


def lines(n: int, start: int = 0) -> list[bytes]:
    return [LINE % (i % 7, i % 60, i) for i in range(start, start + n)]


def data(rows: list[bytes]) -> bytes:
    return b"\n".join(rows) + b"\n"


def children() -> set[int]:
    """This process's child pids (Linux /proc)."""
    found: set[int] = set()
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
            found.update(int(p) for p in f.read().split())
    return found




def test_child_process_records_what_in_process_records(pair: tuple[Ledger, Ledger]) -> None:
    a, b = pair
    rows = lines(5000)
    # Duplicates inside the file and across batches, a blank line, an export line with recorded_at.
    rows += [rows[10], b"", rows[4999]]
    rows.append(b'{"type":"probe_recovered","service":"svc-1","probe":"p","at":"2026-10-04T10:00:00Z",'
                b'"recorded_at":"2026-11-01T12:00:01Z"}')  # the import's instant: a later one is refused
    before = set(children())
    via_child = a.import_file(io.BytesIO(data(rows)), parallel_from=1)
    in_process = import_lines(b, rows)
    assert via_child == in_process
    assert via_child.appended == 5001
    assert via_child.skipped == 2
    assert list(a.recorder.read_raw()) == list(b.recorder.read_raw())  # states and links, byte for byte
    assert verify(a.recorder).ok
    assert children() <= before  # the preparing process is gone


def test_progress_counts_every_input_byte(ledger: Ledger) -> None:
    body = data(lines(3 * CHUNK // 100))
    seen: list[int] = []
    ledger.import_file(io.BytesIO(body), seen.append, parallel_from=1)
    assert sum(seen) == len(body)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_bad_line_in_the_child_keeps_nothing(ledger: Ledger, where: str) -> None:
    import_lines(ledger, lines(3))
    before = snapshot(ledger)
    rows = lines(20000, start=100)
    index = {"first": 0, "middle": 10000, "last": 19999}[where]
    rows[index] = b'{"type":"probe_failed","service":"w","probe":"p","at":"2026-10-04T09:15:00"}'
    with pytest.raises(BadInput, match=rf"^line {index + 1}: field `at`"):
        ledger.import_file(io.BytesIO(data(rows)), parallel_from=1)
    assert snapshot(ledger) == before
    assert import_lines(ledger, lines(1, start=50000)).first_position == 4


@pytest.mark.parametrize("name", [b"a\\u0001b", b"new\\nline", b"del\x7f"])
def test_control_character_in_a_name_in_the_child(ledger: Ledger, name: bytes) -> None:
    # Names are checked only in chunks that hold a backslash or DEL: here one line among 20,000.
    import_lines(ledger, lines(3))
    before = snapshot(ledger)
    rows = lines(20000, start=100)
    rows[12345] = b'{"type":"probe_failed","service":"w","probe":"%s","at":"2026-10-04T09:15:00Z"}' % name
    with pytest.raises(BadInput, match=r"^line 12346: field `probe`: must not contain control characters$"):
        ledger.import_file(io.BytesIO(data(rows)), parallel_from=1)
    assert snapshot(ledger) == before


def test_overlong_line_in_the_child(ledger: Ledger) -> None:
    body = data(lines(100)) + b'{"type":"probe_failed","detail":"' + b"x" * (MAX_LINE + 10) + b'"}\n'
    with pytest.raises(BadInput, match=rf"^line 101: longer than {MAX_LINE} bytes$"):
        ledger.import_file(io.BytesIO(body), parallel_from=1)
    assert ledger.recorder.last_position() == 0


def test_writer_side_error_stops_the_child(ledger: Ledger) -> None:
    # recorded_at earlier than the store's is found by the writer, not by the child.
    import_lines(ledger, lines(2))
    rows = lines(20000, start=10)
    rows[15000] = (b'{"type":"probe_failed","service":"w","probe":"p","at":"2026-10-04T09:15:00Z",'
                   b'"recorded_at":"2001-01-01T00:00:00Z"}')
    before = set(children())
    with pytest.raises(BadInput, match=r"^line 15001: field `recorded_at`"):
        ledger.import_file(io.BytesIO(data(rows)), parallel_from=1)
    assert ledger.recorder.last_position() == 2
    assert children() <= before


def test_child_killed_mid_import_keeps_nothing(ledger: Ledger) -> None:
    import_lines(ledger, lines(2))
    before = snapshot(ledger)
    known = children()
    killed: list[int] = []

    def kill_child(_: int) -> None:
        if not killed:
            for pid in children() - known:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with pytest.raises(StoreError, match="process preparing lines stopped"):
        ledger.import_file(io.BytesIO(data(lines(50000, start=10))), kill_child, parallel_from=1)
    assert killed
    assert snapshot(ledger) == before


def test_cli_import_of_a_large_stdin(tmp_path: Path) -> None:
    # More than PARALLEL_FROM_BYTES bytes through a pipe: the child path, as `ledger import -`.
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    rows = lines(40000)
    body = data(rows)
    proc = subprocess.run([sys.executable, "-m", "cli.main", "--store", url, "import", "-"], input=body,
                          cwd=REPO, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr.decode().startswith("imported 40000 events, 0 already recorded")
    bad = data([*lines(40000, start=100000)[:-1], b'{"type":"probe_failed"'])
    proc = subprocess.run([sys.executable, "-m", "cli.main", "--store", url, "import", "-"], input=bad,
                          cwd=REPO, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 2
    assert proc.stderr.decode().splitlines() == [proc.stderr.decode().strip()]
    assert proc.stderr.decode().startswith("error: line 40000: not valid JSON")
    led = open_ledger(url)
    try:
        assert led.recorder.last_position() == 40000
        assert verify(led.recorder).ok
    finally:
        led.close()


def test_cli_import_of_stdin_redirected_from_a_file(tmp_path: Path) -> None:
    # `ledger import - < FILE`: stdin is a regular file, which the reading child reads itself,
    # through a descriptor of its own (its descriptor 0 is not the file).
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    path = tmp_path / "events.ndjson"
    body = data(lines(60000))
    assert len(body) > PARALLEL_FROM_BYTES
    path.write_bytes(body)
    with open(path, "rb") as stdin:
        proc = subprocess.run([sys.executable, "-m", "cli.main", "--store", url, "import", "-"], stdin=stdin,
                              cwd=REPO, capture_output=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr.decode().startswith("imported 60000 events, 0 already recorded")


def test_position_at_bisects_the_log(store_url: str) -> None:
    led = open_ledger(store_url, clock=StepClock(datetime(2026, 11, 1, tzinfo=UTC)))
    try:
        for i in range(5):
            import_lines(led, lines(3, start=10 * i))
        stamps = [r.recorded_at for r in led.records()]
        assert led.recorder.position_at(stamps[0].replace(year=2000)) == 0
        for i in range(5):
            assert led.recorder.position_at(stamps[3 * i]) == 3 * i + 3
        assert led.recorder.position_at(stamps[-1].replace(year=2100)) == 15
    finally:
        led.close()


def exported(n: int) -> list[bytes]:
    """Lines as `ledger events` prints them: with their own recorded_at, one second apart."""
    return [b'{"type":"probe_failed","service":"s","probe":"p","at":"2026-10-04T09:00:00Z","id":"x%d",'
            b'"recorded_at":"2026-11-01T%02d:%02d:%02dZ"}' % (i, i // 3600, i // 60 % 60, i % 60)
            for i in range(n)]


@pytest.mark.parametrize("parallel_from", [1, 1 << 40])
def test_reimport_skips_recorded_lines_older_than_the_store(ledger: Ledger, parallel_from: int) -> None:
    # The writer links each batch before its duplicate check returns, as if nothing were
    # recorded: here that first pass meets recorded_at values older than the store's last,
    # which belong to recorded lines. They are skipped, not refused.
    rows = exported(5000)
    ledger.import_file(io.BytesIO(data(rows[:2500])), parallel_from=parallel_from)
    result = ledger.import_file(io.BytesIO(data(rows)), parallel_from=parallel_from)
    assert (result.appended, result.skipped, result.first_position) == (2500, 2500, 2501)
    assert verify(ledger.recorder).ok
    again = ledger.import_file(io.BytesIO(data(rows)), parallel_from=parallel_from)
    assert (again.appended, again.skipped) == (0, 5000)


def test_a_new_line_older_than_the_store_is_still_refused(ledger: Ledger) -> None:
    rows = exported(3000)
    import_lines(ledger, rows[1000:])
    with pytest.raises(BadInput, match=r"^line 1: field `recorded_at`: 2026-11-01T00:00:00\+00:00 is ear"):
        import_lines(ledger, rows)
    assert ledger.recorder.last_position() == 2000


# --- batches linked and packed in the child (append_packed) ---------------------------


def test_packed_import_restarts_checking_when_a_later_batch_meets_a_recorded_id(
    pair: tuple[Ledger, Ledger],
) -> None:
    # The child links every batch as if no id were recorded; the third meets recorded ones:
    # nothing of the first pass is kept, the file is read again the checking way, and the
    # ledger is the one an in-process import records, with positions following on.
    a, b = pair
    rows = lines(30000)
    for led in pair:
        import_lines(led, rows[25000:25010])
    body = data(rows)
    seen: list[int] = []
    via_child = a.import_file(io.BytesIO(body), seen.append, parallel_from=1)
    in_process = import_lines(b, rows)
    assert via_child == in_process
    assert (via_child.appended, via_child.skipped, via_child.first_position) == (29990, 10, 11)
    assert list(a.recorder.read_raw()) == list(b.recorder.read_raw())
    assert verify(a.recorder).ok
    assert sum(seen) == len(body)  # each input byte reported once, though read twice


@pytest.mark.parametrize("n", [1, 99, 100, 101, 10_250])
def test_every_row_is_recorded_in_order_whatever_the_batch_length(
    pair: tuple[Ledger, Ledger], n: int
) -> None:
    # SQLite inserts the log and the key index 100 rows a statement, then the rows left in one
    # (``sqlite.recorder._insert_flat``): a batch of any length keeps its rows, in order, each
    # at its position, as PostgreSQL's COPY does; the second ledger imports them in-process.
    a, b = pair
    rows = lines(n)
    for led in pair:
        import_lines(led, lines(3, start=n))  # positions 1-3 taken, so the import starts at 4
    via_child = a.import_file(io.BytesIO(data(rows)), parallel_from=1)
    assert via_child == import_lines(b, rows)
    assert (via_child.appended, via_child.first_position, via_child.last_position) == (n, 4, n + 3)
    assert list(a.recorder.read_raw()) == list(b.recorder.read_raw())
    assert verify(a.recorder).ok


def test_an_sqlite_import_leaves_the_connections_temp_store_as_it_was(tmp_path: Path) -> None:
    # The write session keeps statement journals in memory (PRAGMA temp_store) for its own
    # transaction only: a connection the pool hands out next has its own setting back.
    led = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", clock=StepClock())
    try:
        led.import_file(io.BytesIO(data(lines(300))), parallel_from=1)
        import_lines(led, lines(2, start=300))
        with led.recorder.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            c.execute("PRAGMA temp_store")
            assert c.fetchone()[0] == 0
    finally:
        led.close()


def test_an_sqlite_import_on_a_connection_whose_temp_database_is_open(tmp_path: Path) -> None:
    # SQLite refuses to change temp_store inside a transaction once the connection's temporary
    # database is open (a rebuild on the same pooled connection opens it): the import goes on
    # with the connection's own setting, and leaves it as it was.
    led = open_ledger(f"sqlite:///{tmp_path / 'ledger.db'}", clock=StepClock())
    try:
        with led.recorder.datastore.transaction(commit=True) as c:  # type: ignore[attr-defined]
            c.execute("CREATE TEMP TABLE opened (x)")
        result = import_lines(led, lines(3))
        assert result.appended == 3
        assert len(list(led.recorder.read_raw())) == 3
        with led.recorder.datastore.transaction(commit=False) as c:  # type: ignore[attr-defined]
            c.execute("PRAGMA temp_store")
            assert c.fetchone()[0] == 0
    finally:
        led.close()


def test_packed_import_of_a_repeat_across_batches(pair: tuple[Ledger, Ledger]) -> None:
    a, b = pair
    rows = lines(25000)
    rows.append(rows[7])  # the same fact again, two batches later
    before = set(children())
    via_child = a.import_file(io.BytesIO(data(rows)), parallel_from=1)
    assert via_child == import_lines(b, rows)
    assert (via_child.appended, via_child.skipped) == (25000, 1)
    assert list(a.recorder.read_raw()) == list(b.recorder.read_raw())
    assert children() <= before


def test_packed_import_refuses_a_late_line_older_than_an_earlier_one(pair: tuple[Ledger, Ledger]) -> None:
    # The child cannot tell whether such a line is recorded: the checking pass decides, and
    # refuses it with the in-process message; nothing is kept.
    a, b = pair
    rows = exported(24000)
    rows[23000] = rows[23000].replace(b'"recorded_at":"2026-11-01T', b'"recorded_at":"2026-10-01T')
    errors = []
    for attempt in (lambda: a.import_file(io.BytesIO(data(rows)), parallel_from=1),
                    lambda: import_lines(b, rows)):
        with pytest.raises(BadInput) as caught:
            attempt()
        errors.append(str(caught.value))
    assert errors[0] == errors[1]
    assert errors[0].startswith("line 23001: field `recorded_at`")
    assert a.recorder.last_position() == 0


def test_a_long_file_of_new_facts_is_read_once(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    # New facts only: linked and packed in the child, never read a second time.
    import ledger.ingest.strategy as strategy  # import_file takes it from there when it runs

    def checking_pass(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was read a second time")

    assert ledger.recorder.packer is not None
    monkeypatch.setattr(strategy, "prepared_batches", checking_pass)
    result = ledger.import_file(io.BytesIO(data(lines(25000))), parallel_from=1)
    assert (result.appended, result.first_position, result.last_position) == (25000, 1, 25000)
    assert verify(ledger.recorder).ok


class _Pipe(io.BytesIO):
    def seekable(self) -> bool:
        return False


def test_input_that_cannot_be_read_twice_is_checked_as_it_comes(ledger: Ledger) -> None:
    rows = lines(12000)
    import_lines(ledger, rows[11000:11001])
    result = ledger.import_file(_Pipe(data(rows)), parallel_from=1)
    assert (result.appended, result.skipped) == (11999, 1)
    assert verify(ledger.recorder).ok


# --- the pipe between the processes ------------------------------------------------------


def test_frames_survive_writes_that_stop_part_way(monkeypatch: pytest.MonkeyPatch) -> None:
    # A pipe write may take only part of a batch (a full pipe, an interrupted call): the
    # sender writes the rest, so every frame arrives whole and in order.
    import threading

    from ledger.ingest import framing

    real_write = os.write
    monkeypatch.setattr(framing.os, "write", lambda fd, data: real_write(fd, bytes(data[:777])))
    messages = [bytes([i]) * (i * 5000 + 1) for i in range(20)]
    r, w = os.pipe()
    with open(r, "rb") as inbox, open(w, "wb") as outbox:
        sender = threading.Thread(target=lambda: [framing._send(outbox, m) for m in messages])
        sender.start()
        received = list(islice(framing._messages(inbox), len(messages)))
        sender.join()
    assert received == messages


@pytest.mark.parametrize("cut", [1, 3, 4, 5, 99])
def test_a_sender_stopped_part_way_through_a_frame_said_nothing(cut: int) -> None:
    # A sender killed mid-write leaves a frame cut short (its size, or part of its message): the
    # reader sees the stream end without a word, as if the sender had stopped between frames,
    # never a truncated message to decode (the killed-reader test met that once in CI).
    from ledger.ingest import framing

    whole = b"a" * 100
    frames = len(whole).to_bytes(4, "big") + whole
    stream = io.BytesIO(frames + frames[:cut])
    assert list(framing._messages(stream)) == [whole, b""]


def test_a_damaged_batch_is_a_one_line_store_error() -> None:
    from ledger.ingest import strategy

    frame = b"\x93\x03\x00\x95\xc4\x01x"  # an array of three holding a cut-off array of five
    stream = io.BytesIO(len(frame).to_bytes(4, "big") + frame)
    with pytest.raises(StoreError, match=r"^import: the process preparing lines sent a damaged batch$"):
        list(strategy._receive(stream, None, 2, strategy._decode_packed))


def test_sqlite_rows_cross_as_columns_and_come_back_flat() -> None:
    # The linking child sends SQLite's flat values as columns; the writer gets the same flat
    # values, the states as bytearray (bound without the sqlite3 module's adaptation lookup).
    import msgspec

    from ledger.ingest import strategy
    from ledger.ingest.framing import _PACKED, _ROWS
    from ledger.persistence.packing import pack_rows, rows_columns, rows_from_columns

    events = [("e1", 1, "probe_failed", b'["e1",1]'), ("e2", 1, "probe_ok", b'["e2",2]')]
    packed = pack_rows(events, [("k", 5), ("k", 6)], 5, b"")
    message = msgspec.msgpack.encode(
        (_PACKED, 10, (rows_columns(packed.events), packed.index, 5, 2, 0, [], [], b""))  # type: ignore[arg-type]
    )
    end = msgspec.msgpack.encode((_ROWS, 0, None))
    frames = b"".join(len(m).to_bytes(4, "big") + m for m in (message, end))
    (payload,) = strategy._receive(io.BytesIO(frames), None, 2, strategy._decode_columns)
    flat = rows_from_columns(payload[0])
    assert flat == packed.events
    assert [type(v) for v in flat[3::4]] == [bytearray, bytearray]
    with pytest.raises(ValueError, match="columns"):
        rows_from_columns((["e1"], [1], ["t"], []))


def test_columns_of_different_lengths_are_a_damaged_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.ingest import strategy
    from ledger.persistence.chain import ChainStart

    def one_batch(*args: object, **kwargs: object) -> object:
        yield (["e1"], [1], ["t"], []), [], 1, 1, 0, [], [], b""

    monkeypatch.setattr(strategy, "_in_child", one_batch)
    start = ChainStart(1, "0" * 64, None, '"2026-10-04T09:00:00Z"')
    with pytest.raises(StoreError, match=r"^import: the process preparing lines sent a damaged batch$"):
        list(strategy.packed_batches(io.BytesIO(b""), start, "rows"))


def test_a_regular_file_is_read_by_the_child_from_where_it_stands(
    pair: tuple[Ledger, Ledger], tmp_path: Path
) -> None:
    # The reading child reads the file itself (os.pread from the offset the import starts at),
    # not through this process: what was read before the import is not imported, and the
    # linking child records what an in-process import of the rest records.
    a, b = pair
    rows = lines(30000)
    rows[20000] = rows[5]  # a repeat across batches: the packed path hands over to the checking one
    path = tmp_path / "events.ndjson"
    path.write_bytes(b'{"not": "a fact"}\n' + data(rows))
    before = set(children())
    with open(path, "rb") as f:
        f.readline()
        via_child = a.import_file(f, parallel_from=1)
    assert via_child == import_lines(b, rows)
    assert via_child.appended == 29999
    assert list(a.recorder.read_raw()) == list(b.recorder.read_raw())
    assert children() <= before


def test_a_bad_line_read_from_a_file_by_the_child_keeps_nothing(ledger: Ledger, tmp_path: Path) -> None:
    rows = lines(30000)
    rows[25000] = b'{"type":"probe_failed","service":"s"}'
    path = tmp_path / "events.ndjson"
    path.write_bytes(data(rows))
    before = set(children())
    with open(path, "rb") as f, pytest.raises(BadInput, match=r"^line 25001: "):
        ledger.import_file(f, parallel_from=1)
    assert ledger.recorder.last_position() == 0
    assert children() <= before


def test_the_reading_child_killed_mid_import_keeps_nothing(ledger: Ledger, tmp_path: Path) -> None:
    # The linking child sees its input end without a word: the import fails, nothing is kept.
    # The file is far larger than the pipes between the processes hold, so that the reading
    # child is still reading (held back by them) when the first batch is written.
    import_lines(ledger, lines(2))
    before = snapshot(ledger)
    known = children()
    killed: list[int] = []
    path = tmp_path / "events.ndjson"
    path.write_bytes(data(lines(400_000, start=10)))

    def kill_reader(_: int) -> None:
        for pid in children() - known:
            with open(f"/proc/{pid}/cmdline", "rb") as cmd:
                if not killed and b"child_main" in cmd.read():
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

    with open(path, "rb") as f, pytest.raises(StoreError, match="process preparing lines stopped"):
        ledger.import_file(f, kill_reader, parallel_from=1)
    assert killed
    assert snapshot(ledger) == before
    assert children() <= known


def test_the_children_keep_their_heap_between_batches(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # glibc trimmed the linking child's heap after each batch and faulted it back in during the
    # next (docs/decisions.md, issue 19, hY): both children are started with malloc thresholds
    # above a batch's buffers, and a setting of the caller's own environment wins.
    from ledger.ingest import strategy

    envs: list[dict[str, str]] = []
    real = subprocess.Popen

    def recording(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        envs.append(dict(kwargs["env"]))  # type: ignore[call-overload]
        return real(*args, **kwargs)  # type: ignore[call-overload,no-any-return]

    monkeypatch.setattr(strategy.subprocess, "Popen", recording)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")
    assert ledger.import_file(io.BytesIO(data(lines(300))), parallel_from=1).appended == 300
    assert len(envs) == 2  # the reading and the linking child
    for env in envs:
        assert env["MALLOC_MMAP_THRESHOLD_"] == str(32 << 20)
        assert env["MALLOC_TRIM_THRESHOLD_"] == "12345"
        assert env["PATH"] == os.environ["PATH"]
