"""The import strategy: prepare here or in child processes, and relay their batches to the writer.

An import does two kinds of work: decoding and validating each line (msgspec,
canonical JSON, the fact's id and index key), and writing (duplicate check,
``recorded_at``, positions, the hash chain, the inserts). The first needs no
store, so for a large input it runs in a child process while this one writes:
on two cores the halves overlap. ``prepared_batches`` decides which: input
that ends within ``PARALLEL_FROM_BYTES`` bytes is prepared here (a child costs a
fraction of a second to start), anything longer in a child.

The child (``child_main``, a fresh interpreter) reads the input itself if it is a
regular file (from the offset where the import starts), else on its stdin, written
by a feeding thread, and sends back batches of ``Prepared`` rows (length-prefixed
msgpack) on its stdout; a bad line comes back as the same one-line message the
in-process path would raise. On the packed path (``packed_batches``) a second child
(``link_main``) links and packs those batches from where the chain starts, so that
reading, linking and writing run in three processes. Either way the writer sees
the same rows in the same order, so the paths record byte-identical ledgers (tests
hold them to it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Generator, Iterator
from typing import IO, Any, BinaryIO, Final

import msgspec

from ledger.errors import BadInput, LedgerError, StoreError
from ledger.ingest.child import PACKED_BATCH
from ledger.ingest.framing import _CONFLICT, _ERROR, _FAILED, READ_AHEAD, _messages
from ledger.ingest.lines import CHUNK, MAX_LINE, LineSplitter, batched, prepare_chunk
from ledger.persistence.append import PackedBatch
from ledger.persistence.chain import ChainStart
from ledger.persistence.packing import RowColumns, rows_from_columns
from ledger.persistence.port import BATCH, Conflict, IdConflict, Packed
from ledger.persistence.rows import Prepared

PARALLEL_FROM_BYTES: Final = 4 * CHUNK  # input at least this long is prepared in a child process

PACKED_READ_AHEAD: Final = 2  # packed batches are five times larger, and the parent only relays them

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
    parallel_from: int = PARALLEL_FROM_BYTES,
    batch_size: int = BATCH,
) -> Generator[list[Prepared], None, None]:
    """Batches of prepared rows from an NDJSON stream; ``progress`` gets the bytes consumed."""
    at = _readable_at(file)
    head = _read_at_least(file, parallel_from)
    if len(head) < parallel_from:
        splitter = LineSplitter(limit)
        rows: list[Prepared] = []
        prepare_chunk(splitter, head, limit, rows)
        prepare_chunk(splitter, b"", limit, rows)
        yield from batched(rows, batch_size)
        if progress is not None:
            progress(len(head))
        return
    yield from _in_child(file, head, progress, limit, batch_size, at=at)


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
    at = _readable_at(file)
    columns = packing == "rows"  # SQLite's values come as columns (``packing.rows_columns``)
    for events, index, first, count, skipped, conflicts, items, leaves in _in_child(
        file, b"" if at is not None else file.read(CHUNK), progress, limit, batch_size,
        (tuple(start), packing), at, _decode_columns if columns else _decode_packed,
    ):
        if columns:
            try:
                events = rows_from_columns(events)
            except ValueError:
                raise StoreError("import: the process preparing lines sent a damaged batch") from None
        # Lists after msgpack: the items are only unpacked, the conflicts become results.
        yield PackedBatch(Packed(events, index, first, count, leaves), skipped,
                          [Conflict(line, id_, position) for line, id_, position in conflicts], items)


def _readable_at(file: BinaryIO) -> tuple[int, int] | None:
    """(descriptor, offset) of a regular file that a child process can read itself, else None."""
    try:
        fd = file.fileno()
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return fd, file.tell()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
        return None


def _in_child(
    file: BinaryIO, head: bytes, progress: Callable[[int], None] | None, limit: int, batch_size: int,
    link: tuple[tuple[Any, ...], str] | None = None, at: tuple[int, int] | None = None,
    decode_packed: Callable[[bytes], tuple[int, int, Any]] | None = None,
) -> Generator[Any, None, None]:
    # Fresh interpreters, not multiprocessing: nothing of this process (its connections,
    # threads or __main__ module) is copied or re-imported. A regular file (``at``) is read by
    # the reading child itself from the offset where the import starts (``os.pread``: this
    # process's offset is left alone), so this process spends no time handing it on through a
    # pipe while it writes; anything else is fed on its stdin by a thread, from ``head`` on.
    # Given ``link``, a second child links and packs what the first prepares: three processes
    # (four with a database server) share the work of one import.
    if at is not None:
        # A copy of the descriptor, above 2: stdin redirected from a file (``import - < file``)
        # is descriptor 0, which the child's own stdin would replace.
        at = (_descriptor_above_2(at[0]), at[1])
    commands = [f"from ledger.ingest.child import child_main; child_main({limit}, {batch_size}, {at!r})"]
    if link is not None:
        commands.append(f"from ledger.ingest.child import link_main; link_main({link!r})")
    with tempfile.TemporaryFile() as err:
        children: list[subprocess.Popen[bytes]] = []
        try:
            for code in commands:
                stdin: Any = subprocess.PIPE if at is None else subprocess.DEVNULL
                if children:
                    stdin = children[-1].stdout
                children.append(subprocess.Popen(
                    [sys.executable, "-c", code], stdin=stdin, stdout=subprocess.PIPE, stderr=err,
                    pass_fds=() if at is None or children else (at[0],), env={**_CHILD_MALLOC, **os.environ},
                ))
                if len(children) > 1:
                    stdin.close()  # the linking child's now: its end tells the reading child to stop
                _widen(children[-1].stdout)
        except BaseException:
            for child in children:
                child.kill()
                child.wait()
            raise
        finally:
            if at is not None:
                os.close(at[0])  # the reading child has its own
        first, last = children[0], children[-1]
        assert last.stdout is not None
        feeder = None
        if first.stdin is not None:
            feeder = threading.Thread(target=_feed, args=(file, head, first.stdin), daemon=True)
            feeder.start()
        finished = False
        try:
            if link is None:
                yield from _receive(last.stdout, progress, READ_AHEAD, _decode_prepared)
            else:
                yield from _receive(last.stdout, progress, PACKED_READ_AHEAD, decode_packed or _decode_packed)
            finished = True
        except IdConflict:
            raise
        except StoreError:
            codes = [child.wait(timeout=5) for child in children]
            err.seek(0)
            said = err.read().decode(errors="replace").strip().splitlines()[-1:]
            raise StoreError(
                f"import: the process preparing lines stopped (exit code {next((c for c in codes if c), 0)})"
                + (f": {said[0]}" if said else "")
            ) from None
        finally:
            # Stopped early (a bad line, an error while writing, an interrupt): the children's
            # work is no longer wanted. The reader's end closes its stdin, which ends the feeder.
            for child in children:
                if not finished:
                    child.kill()
                child.wait()
            last.stdout.close()
            if feeder is not None:
                feeder.join(timeout=5)
            if first.stdin is not None:
                with contextlib.suppress(OSError):
                    first.stdin.close()


def _descriptor_above_2(fd: int) -> int:
    """A new descriptor for the same open file, numbered 3 or more (the caller closes it)."""
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


# glibc's malloc gives the top of its heap back to the system whenever more than a threshold is
# free there, and takes it back page by page (a fault each) at the next batch. A batch's buffers
# are megabytes, made and dropped each batch: above 128 KiB they are mapped and unmapped each
# time, and once glibc raises that bound, the heap's top is trimmed after each batch and faulted
# back in during the next (the linking child: 13 MB a batch of 10,000, docs/decisions.md, issue
# 19, hY). The children keep up to this much free memory instead (unless the environment says
# otherwise); other C libraries ignore these variables.
_CHILD_MALLOC: Final = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}

_PIPE_SIZE: Final = 1 << 20  # a batch is megabytes: fewer, larger reads and writes than a 64 KiB pipe's


def _widen(pipe: IO[bytes] | None) -> None:
    """Give a pipe a larger buffer where the system allows it (Linux ``F_SETPIPE_SZ``)."""
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)
    if pipe is not None and setpipe is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(pipe.fileno(), setpipe, _PIPE_SIZE)


def _receive(stream: IO[bytes], progress: Callable[[int], None] | None, read_ahead: int,
             decode: Callable[[bytes], tuple[int, int, Any]]) -> Iterator[Any]:
    for message in _messages(stream, read_ahead):
        if not message:
            raise StoreError("import: the process preparing lines stopped")
        try:
            kind, consumed, payload = decode(message)
            if isinstance(payload, str) != (kind in _SAID):  # a message says something; a batch does not
                raise ValueError(kind)
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


# Each message decoded in one pass (a Raw payload decoded afterwards is scanned twice: 0.1 us a
# row of the writer's CPU). The reading child's: Prepared rows decoded as such (typed), or a
# message (a bad line, a failure), or None (the end). The linking child's: plain lists, which
# the writer only unpacks (``packed_batches``), or the same messages.
_SAID: Final = (_ERROR, _CONFLICT, _FAILED)
_decode_prepared: Final = msgspec.msgpack.Decoder(tuple[int, int, list[Prepared] | str | None]).decode
_decode_packed: Final = msgspec.msgpack.Decoder(tuple[int, int, Any]).decode
# SQLite's: the log's values as typed columns, the states as ``bytearray`` (``packing.RowColumns``).
_decode_columns: Final = msgspec.msgpack.Decoder(
    tuple[int, int, tuple[RowColumns, Any, int, int, int, Any, Any, bytes] | str | None]
).decode
