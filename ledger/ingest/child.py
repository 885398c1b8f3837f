"""The child processes of a large import: one reads the input and sends prepared batches; one links them.

``child_main`` decodes and checks lines and sends ``Prepared`` rows; on an import's
packed path ``link_main`` takes its messages on its stdin and links and packs each batch,
so that the two halves of the child's work run in two processes beside the writer.
"""

from __future__ import annotations

import gc
import io
import os
import sys
from collections.abc import Callable
from typing import Any, Final

import msgspec

from ledger.errors import BadInput
from ledger.ingest.framing import (
    _CONFLICT,
    _ERROR,
    _FAILED,
    _PACKED,
    _ROWS,
    READ_AHEAD,
    _messages,
    _send,
    _send_quietly,
)
from ledger.ingest.lines import CHUNK, MAX_LINE, LineSplitter, prepare_chunk
from ledger.persistence.append import batch_linker
from ledger.persistence.chain import ChainStart
from ledger.persistence.packing import rows_columns
from ledger.persistence.port import BATCH, IdConflict
from ledger.persistence.rows import Prepared

# Rows per batch the child links and packs: the server's cost per statement is then a
# small part of the batch's (1M rows into PostgreSQL: 2,000 per batch 19 s, 10,000 16 s).
PACKED_BATCH: Final = 10_000

def child_main(limit: int = MAX_LINE, batch_size: int = BATCH, source: tuple[int, int] | None = None) -> None:
    """The preparing process: NDJSON on stdin; framed msgpack batches on stdout.

    Each message is a 4-byte big-endian length and msgpack ``[kind, bytes consumed,
    payload]``: a batch is its prepared rows (``link_main`` links and packs them). It never
    prints a traceback: a bad line or a failure is a message. ``source``: read a regular
    file's descriptor from an offset on (``os.pread``) instead of stdin.
    """
    gc.disable()  # it builds no cycles; collection passes over millions of short-lived facts cost time
    encode = msgspec.msgpack.Encoder().encode
    outbox = sys.stdout.buffer
    read = _stdin_reader() if source is None else _file_reader(*source)
    try:
        splitter = LineSplitter(limit)
        rows: list[Prepared] = []
        consumed = 0
        while True:
            chunk = read()
            prepare_chunk(splitter, chunk, limit, rows)
            consumed += len(chunk)
            if len(rows) >= batch_size or not chunk:
                _send(outbox, encode((_ROWS, consumed, rows)))
                rows, consumed = [], 0
            if not chunk:
                _send(outbox, encode((_ROWS, 0, None)))
                return
    except BadInput as exc:
        _send_quietly(outbox, encode((_ERROR, 0, str(exc))))
    except (OSError, KeyboardInterrupt):
        return  # the writer has gone or is going (it failed or was stopped): nobody to tell
    except Exception as exc:
        _send_quietly(outbox, encode((_FAILED, 0, f"{type(exc).__name__}: {exc}")))


def link_main(link: tuple[tuple[Any, ...], str]) -> None:
    """The linking process: ``child_main``'s messages on stdin; each batch of rows linked and packed.

    ``link`` is where the chain starts and the name of the backend's packer. Messages
    other than rows (a bad line, a failure, the end) are passed on as they came; a line
    the linking refused is a conflict message. Like ``child_main``, it never prints a traceback.
    """
    gc.disable()  # as child_main: no cycles, millions of short-lived rows
    encode = msgspec.msgpack.Encoder().encode
    outbox = sys.stdout.buffer
    batch = _batch_packer(ChainStart(*link[0]), link[1])
    try:
        for message in _messages(sys.stdin.buffer, READ_AHEAD):
            if not message:
                return  # the reading process stopped without a word: the writer sees the stream end
            kind, consumed, payload = _decode(message)
            rows = payload if kind == _ROWS and not isinstance(payload, str) else None
            if rows is None:  # the end, a bad line or a failure: for the writer, and the last message
                _send(outbox, message)
                return
            _send(outbox, encode(batch(consumed, rows)))
    except IdConflict as exc:
        _send_quietly(outbox, encode((_CONFLICT, 0, str(exc))))
    except (OSError, KeyboardInterrupt):
        return
    except Exception as exc:
        _send_quietly(outbox, encode((_FAILED, 0, f"{type(exc).__name__}: {exc}")))


# A message in one pass: prepared rows (typed), a bad line's or a failure's words, or None (the end).
_decode: Final = msgspec.msgpack.Decoder(tuple[int, int, list[Prepared] | str | None]).decode


def _stdin_reader() -> Callable[[], bytes]:
    inbox: io.BufferedReader = sys.stdin.buffer  # type: ignore[assignment]
    return lambda: inbox.read1(CHUNK)


def _file_reader(fd: int, offset: int) -> Callable[[], bytes]:
    """Successive chunks of a file from ``offset`` on, without moving the descriptor's offset."""
    at = offset

    def read() -> bytes:
        nonlocal at
        chunk = os.pread(fd, CHUNK, at)
        at += len(chunk)
        return chunk

    return read


def _batch_packer(
    start: ChainStart, packing: str
) -> Callable[[int, list[Prepared]], tuple[int, int, object]]:
    """Each batch linked and packed from ``start`` on (``batch_linker``), framed for the writer."""
    link = batch_linker(start, packing)
    columns = packing == "rows"  # SQLite's flat values go as columns (``packing.rows_columns``)

    def batch(consumed: int, rows: list[Prepared]) -> tuple[int, int, object]:
        packed, skipped, conflicts, items = link(rows)
        events = rows_columns(packed.events) if columns else packed.events  # type: ignore[arg-type]
        return _PACKED, consumed, (events, packed.index, packed.start, packed.count, skipped,
                                   [(c.line, c.id, c.position) for c in conflicts], items, packed.leaves)

    return batch
