"""Turning input into rows ready to append, in this process or in a second one.

An import does two kinds of work: decoding and validating each line (msgspec,
canonical JSON, the fact's id and index key), and writing (duplicate check,
``recorded_at``, positions, the hash chain, the inserts). The first needs no
store, so for a large input it runs in a child process while this one writes:
on two cores the two halves overlap. ``prepared_batches`` decides which: input
that ends within ``PARALLEL_FROM`` bytes is prepared here (a child costs a
fraction of a second to start), anything longer in a child.

The child (``child_main``, a fresh interpreter) reads the input on its stdin,
written by a feeding thread, and sends back batches of ``Prepared`` rows
(length-prefixed msgpack) on its stdout; a bad line comes back as the same
one-line message the in-process path would raise. Either way the writer sees
the same rows in the same order, so the two paths record byte-identical
ledgers (a test holds them to it).
"""

from __future__ import annotations

import contextlib
import gc
import io
import os
import queue
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from itertools import islice
from typing import IO, Any, BinaryIO, Final

import msgspec

from ledger.errors import BadInput, LedgerError, StoreError
from ledger.events import (
    CONTRACT_TYPES,
    FACT_DECODER,
    FACT_TAGS,
    Fact,
    admit,
    canonical,
    check_keys,
    decode_fact,
    derive_id_from,
    may_hold_control,
)
from ledger.persistence.append import PackedBatch, batch_linker
from ledger.persistence.chain import ChainStart
from ledger.persistence.consistency import CLAIM_OF
from ledger.persistence.keys import KEY_OF
from ledger.persistence.port import BATCH, Conflict, IdConflict, Packed, Prepared

MAX_LINE: Final = 16 * 1024 * 1024  # bytes; a longer line is refused without reading it whole
CHUNK: Final = 1 << 20  # bytes handed to the child at a time
PARALLEL_FROM: Final = 4 * CHUNK  # input at least this long is prepared in a child process
READ_AHEAD: Final = 8  # batches from the child held while the writer is busy
PACKED_READ_AHEAD: Final = 2  # packed batches are five times larger, and the parent only relays them
# Rows per batch the child links and packs: the server's cost per statement is then a
# small part of the batch's (1M rows into PostgreSQL: 2,000 per batch 19 s, 10,000 16 s).
PACKED_BATCH: Final = 10_000


_json: Final = msgspec.json.Encoder()
_ROWS, _ERROR, _FAILED, _PACKED, _CONFLICT = 0, 1, 2, 3, 4  # kinds of message from the child


def prepare_fact(lineno: int, fact: Fact) -> Prepared:
    """The row the writer needs for one validated fact (canonical JSON computed once)."""
    return prepare_row(lineno, fact, canonical(fact))


def prepare_row(lineno: int, fact: Fact, canon: bytes) -> Prepared:
    """``prepare_fact`` given the fact's canonical JSON."""
    # The type's tag, index key and name (if it gives one) from one table lookup: this runs
    # once per imported line.
    tag, key_of, claim_of = _TAG_AND_KEY[type(fact)]
    id_ = fact.id if fact.id is not None else derive_id_from(canon)
    at = None if fact.recorded_at is None else _json.encode(fact.recorded_at)
    return Prepared(lineno, id_, _json.encode(id_), tag, key_of(fact), canon, at,
                    None if claim_of is None else claim_of(fact))


_TAG_AND_KEY: Final[dict[type, tuple[str, Callable[[Any], str], Callable[[Any], tuple[str, str]] | None]]] = {
    cls: (FACT_TAGS[cls], key_of, CLAIM_OF.get(cls)) for cls, key_of in KEY_OF.items()
}


def prepare_line(lineno: int, line: bytes | str, limit: int = MAX_LINE) -> Prepared | None:
    """Decode and check one NDJSON line (None for a blank one); errors name the line."""
    if len(line) > limit:
        raise BadInput(f"line {lineno}: longer than {limit} bytes")
    if not line.strip():
        return None
    try:
        fact = decode_fact(line)
    except BadInput as exc:
        raise BadInput(f"line {lineno}: {exc}") from None
    return prepare_fact(lineno, fact)


def batched(rows: Iterable[Prepared], size: int = BATCH) -> Iterator[list[Prepared]]:
    """``rows`` in lists of ``size`` (the last one shorter)."""
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def prepare_lines(lines: Iterable[bytes | str], batch_size: int = BATCH) -> Iterator[list[Prepared]]:
    """Batches of prepared rows from lines, in this process."""
    rows = (prepare_line(lineno, line) for lineno, line in enumerate(lines, 1))
    return batched((row for row in rows if row is not None), batch_size)


def prepare_facts(facts: Iterable[Fact], batch_size: int = BATCH) -> Iterator[list[Prepared]]:
    """Batches of prepared rows from facts built in code, numbered from 1 for error messages."""

    def rows() -> Iterator[Prepared]:
        for n, fact in enumerate(facts, 1):
            # No JSON to tell where a control character could be: every field is checked.
            checked, canon, _ = admit(fact)
            yield prepare_row(n, checked, canon)

    return batched(rows(), batch_size)


class LineSplitter:
    """Cuts a byte stream into lines (newline kept), refusing one longer than ``limit`` bytes.

    A partial line is kept only up to ``limit`` bytes: past that it is refused
    at once, so an endless line costs at most ``limit`` plus one chunk.
    """

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self.lineno = 0
        self.partial = b""
        # About the lines the last call returned, from one scan of the bytes instead of one
        # per line: whether none can decode to a string holding a control character or
        # holds an escape (``may_hold_control``), and how many quotes they hold.
        self.plain = True
        self.quotes = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        """The complete lines (newline kept) that ``chunk`` finishes, numbered."""
        data = self.partial + chunk if self.partial else chunk
        pieces = data.split(b"\n")
        self.partial = pieces.pop()
        self._scan(data, len(data) - len(self.partial))
        out = []
        for piece in pieces:
            self.lineno += 1
            if len(piece) >= self.limit:  # with its newline, longer than the limit
                raise BadInput(f"line {self.lineno}: longer than {self.limit} bytes")
            out.append((self.lineno, piece + b"\n"))
        if len(self.partial) > self.limit:
            raise BadInput(f"line {self.lineno + 1}: longer than {self.limit} bytes")
        return out

    def finish(self) -> list[tuple[int, bytes]]:
        """The last line, if the input does not end with a newline."""
        if not self.partial:
            return []
        self.lineno += 1
        last, self.partial = self.partial, b""
        self._scan(last, len(last))
        return [(self.lineno, last)]

    def _scan(self, data: bytes, end: int) -> None:
        # The control test covers the partial line too: cheaper than slicing it off.
        self.plain = not may_hold_control(data)
        self.quotes = data.count(b'"', 0, end)


def _prepare_numbered(lines: list[tuple[int, bytes]], limit: int, out: list[Prepared],
                      splitter: LineSplitter) -> None:
    # prepare_line, unrolled for the bulk path (the splitter has checked the lengths, and
    # ``plain`` says that no line holds a backslash, DEL or 0xC2: no control character, and
    # no quote inside a string); any failure goes back through prepare_line for its
    # one-line message.
    #
    # Repeated keys (``check_keys``) are counted for all the lines at once: the quotes of
    # the lines against those of their canonical forms and envelopes. A policy or a line
    # with an escape is checked on its own.
    decode = FACT_DECODER.decode
    plain = splitter.plain
    quotes = splitter.quotes
    canons: list[bytes] = []
    counted = canons.append
    envelope = 0
    first = len(out)
    for lineno, line in lines:
        if not line or line.isspace():
            continue
        try:
            fact, canon, quoted = admit(decode(line), not plain and may_hold_control(line))
            row = prepare_row(lineno, fact, canon)
            if (plain or b"\\" not in line) and type(fact) not in CONTRACT_TYPES:
                counted(canon)
                envelope += quoted
            else:
                check_keys(line, fact, canon, not plain and b"\\" in line)
                quotes -= line.count(b'"')
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError, BadInput):
            # The first bad line is the one to name: one before may repeat a key.
            _check_keys_each(lines, out[first:], plain, lineno)
            prepare_line(lineno, line, limit)
            raise
        out.append(row)
    if b"".join(canons).count(b'"') + envelope != quotes:
        # A line repeats a key, or sets one to null, or spells an integer severity as
        # text: each line is counted on its own, and one with too many quotes parsed.
        _check_keys_each(lines, out[first:], plain)


def _check_keys_each(lines: list[tuple[int, bytes]], rows: list[Prepared], plain: bool,
                     before: int | None = None) -> None:
    """``check_keys`` line by line (``rows`` are the lines' prepared rows, blank lines left out)."""
    decode = FACT_DECODER.decode
    prepared = iter(rows)
    for lineno, line in lines:
        if lineno == before:
            return
        if line and not line.isspace():
            try:
                check_keys(line, decode(line), next(prepared).canon, not plain and b"\\" in line)
            except BadInput as exc:
                raise BadInput(f"line {lineno}: {exc}") from None


def child_main(limit: int = MAX_LINE, batch_size: int = BATCH,
               link: tuple[tuple[Any, ...], str] | None = None) -> None:
    """The preparing process: NDJSON on stdin; framed msgpack batches on stdout.

    Each message is a 4-byte big-endian length and msgpack ``[kind, bytes consumed,
    payload]``. A batch is its prepared rows or, given ``link`` (where the chain
    starts and the name of the backend's packer), its rows linked as if none of
    their ids were recorded and packed for the store: ``[events, index, start,
    count, repeats dropped]``. It never prints a traceback: a bad line, a line the
    linking refused, or a failure is a message.
    """
    gc.disable()  # it builds no cycles; collection passes over millions of short-lived facts cost time
    encode = msgspec.msgpack.Encoder().encode
    inbox: io.BufferedReader = sys.stdin.buffer  # type: ignore[assignment]
    outbox = sys.stdout.buffer
    batch = _batch_rows if link is None else _batch_packer(ChainStart(*link[0]), link[1])
    try:
        splitter = LineSplitter(limit)
        rows: list[Prepared] = []
        consumed = 0
        while True:
            chunk = inbox.read1(CHUNK)
            lines = splitter.feed(chunk) if chunk else splitter.finish()
            _prepare_numbered(lines, limit, rows, splitter)
            consumed += len(chunk)
            if len(rows) >= batch_size or not chunk:
                _send(outbox, encode(batch(consumed, rows)))
                rows, consumed = [], 0
            if not chunk:
                _send(outbox, encode((_ROWS, 0, None)))
                return
    except IdConflict as exc:
        _send_quietly(outbox, encode((_CONFLICT, 0, str(exc))))
    except BadInput as exc:
        _send_quietly(outbox, encode((_ERROR, 0, str(exc))))
    except (OSError, KeyboardInterrupt):
        return  # the writer has gone or is going (it failed or was stopped): nobody to tell
    except Exception as exc:
        _send_quietly(outbox, encode((_FAILED, 0, f"{type(exc).__name__}: {exc}")))


def _batch_rows(consumed: int, rows: list[Prepared]) -> tuple[int, int, object]:
    return _ROWS, consumed, rows


def _batch_packer(
    start: ChainStart, packing: str
) -> Callable[[int, list[Prepared]], tuple[int, int, object]]:
    """Each batch linked and packed from ``start`` on (``batch_linker``), framed for the writer."""
    link = batch_linker(start, packing)

    def batch(consumed: int, rows: list[Prepared]) -> tuple[int, int, object]:
        packed, skipped, conflicts, items = link(rows)
        return _PACKED, consumed, (packed.events, packed.index, packed.start, packed.count, skipped,
                                   [(c.line, c.id, c.position) for c in conflicts], items)

    return batch


def _send(outbox: BinaryIO, message: bytes) -> None:
    # os.write until every byte is out, not the buffered stream: a BufferedWriter whose
    # write to the pipe was interrupted part-way (seen under a sampling profiler's ptrace
    # stops) dropped bytes, and the parent got a damaged batch.
    fd = outbox.fileno()
    for part in (len(message).to_bytes(4, "big"), message):
        view = memoryview(part)
        while view:
            view = view[os.write(fd, view) :]


def _send_quietly(outbox: BinaryIO, message: bytes) -> None:
    with contextlib.suppress(OSError):
        _send(outbox, message)


def _feed(file: BinaryIO, first: bytes, inbox: BinaryIO) -> None:
    """Hand the input to the child, then close its stdin for the end."""
    try:
        chunk = first
        while chunk:
            inbox.write(chunk)
            chunk = file.read(CHUNK)
        inbox.close()
    except (OSError, ValueError):
        pass  # the child stopped (a bad line) or the import was abandoned: the writer knows


def _read_at_least(file: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes, fewer only at the end of the input (pipes return short reads)."""
    parts, have = [], 0
    while have < size:
        part = file.read(size - have)
        if not part:
            break
        parts.append(part)
        have += len(part)
    return b"".join(parts)


def prepared_batches(
    file: BinaryIO,
    progress: Callable[[int], None] | None = None,
    *,
    limit: int = MAX_LINE,
    parallel_from: int = PARALLEL_FROM,
    batch_size: int = BATCH,
) -> Generator[list[Prepared], None, None]:
    """Batches of prepared rows from an NDJSON stream; ``progress`` gets the bytes consumed."""
    head = _read_at_least(file, parallel_from)
    if len(head) < parallel_from:
        splitter = LineSplitter(limit)
        rows: list[Prepared] = []
        _prepare_numbered(splitter.feed(head), limit, rows, splitter)
        _prepare_numbered(splitter.finish(), limit, rows, splitter)
        yield from batched(rows, batch_size)
        if progress is not None:
            progress(len(head))
        return
    yield from _in_child(file, head, progress, limit, batch_size)


def packed_batches(
    file: BinaryIO,
    start: ChainStart,
    packing: str,
    progress: Callable[[int], None] | None = None,
    *,
    limit: int = MAX_LINE,
    batch_size: int = PACKED_BATCH,
) -> Generator[PackedBatch, None, None]:
    """Batches of an NDJSON stream linked from ``start`` and packed (``packing``), in a child process.

    Each comes with its repeats and conflicts within the batch and the facts to check
    (see ``append_packed``); a line the linking refused raises ``IdConflict``.
    """
    for events, index, first, count, skipped, conflicts, items in _in_child(
        file, file.read(CHUNK), progress, limit, batch_size, (tuple(start), packing)
    ):
        # Lists after msgpack: the items are only unpacked, the conflicts become results.
        yield PackedBatch(Packed(events, index, first, count), skipped,
                          [Conflict(line, id_, position) for line, id_, position in conflicts], items)


def _in_child(
    file: BinaryIO, head: bytes, progress: Callable[[int], None] | None, limit: int, batch_size: int,
    link: tuple[tuple[Any, ...], str] | None = None,
) -> Generator[Any, None, None]:
    # A fresh interpreter, not multiprocessing: nothing of this process (its connections,
    # threads or __main__ module) is copied or re-imported.
    code = f"from ledger.ingest import child_main; child_main({limit}, {batch_size}, {link!r})"
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
        )
        assert child.stdin is not None
        assert child.stdout is not None
        feeder = threading.Thread(target=_feed, args=(file, head, child.stdin), daemon=True)
        feeder.start()
        finished = False
        try:
            yield from _receive(child.stdout, progress, READ_AHEAD if link is None else PACKED_READ_AHEAD)
            finished = True
        except IdConflict:
            raise
        except StoreError:
            child.wait(timeout=5)
            err.seek(0)
            last = err.read().decode(errors="replace").strip().splitlines()[-1:]
            raise StoreError(
                f"import: the process preparing lines stopped (exit code {child.returncode})"
                + (f": {last[0]}" if last else "")
            ) from None
        finally:
            # Stopped early (a bad line, an error while writing, an interrupt): the child's
            # work is no longer wanted. Its end closes its stdin, which ends the feeder.
            if not finished:
                child.kill()
            child.wait()
            child.stdout.close()
            feeder.join(timeout=5)
            with contextlib.suppress(OSError):
                child.stdin.close()


def _receive(stream: IO[bytes], progress: Callable[[int], None] | None, read_ahead: int) -> Iterator[Any]:
    for message in _messages(stream, read_ahead):
        if not message:
            raise StoreError("import: the process preparing lines stopped")
        try:
            kind, consumed, raw = _frame(message)
            # Prepared rows decoded as such (typed); the rest as plain lists, which the writer only unpacks.
            payload = _decode_rows(raw) if kind == _ROWS else _decode_any(raw)
        except (msgspec.DecodeError, ValueError, TypeError):
            raise StoreError("import: the process preparing lines sent a damaged batch") from None
        if kind == _ERROR:
            raise BadInput(payload)
        if kind == _CONFLICT:
            raise IdConflict(payload)
        if kind == _FAILED:
            raise LedgerError(f"import: preparing lines failed: {payload}")
        if payload is None:
            return
        if progress is not None and consumed:
            progress(consumed)
        if payload:
            yield payload


_frame: Final = msgspec.msgpack.Decoder(tuple[int, int, msgspec.Raw]).decode
_decode_rows: Final = msgspec.msgpack.Decoder(list[Prepared] | None).decode
_decode_any: Final = msgspec.msgpack.Decoder().decode


def _messages(stream: IO[bytes], read_ahead: int = READ_AHEAD) -> Iterator[bytes]:
    """The child's framed messages, read ahead on a thread (b"" when the stream ends early).

    A batch is larger than a pipe's buffer: without a reader the child would wait
    for the writer to take each one, and the writer for the child.
    """
    inbox: queue.Queue[bytes] = queue.Queue(maxsize=read_ahead)
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                size = stream.read(4)
                message = stream.read(int.from_bytes(size, "big")) if len(size) == 4 else b""
                inbox.put(message)
                if not message:
                    return
        except (OSError, ValueError):
            inbox.put(b"")  # the stream was closed under us: the caller has stopped anyway

    reader = threading.Thread(target=read, name="ledger-import-reader", daemon=True)
    reader.start()
    try:
        while message := inbox.get():
            yield message
        yield b""
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a reader waiting for room; the child is killed by our caller
                inbox.get_nowait()
