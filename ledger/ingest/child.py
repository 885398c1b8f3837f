"""The child process of a large import: reads the input on stdin, sends prepared (or packed) batches."""

from __future__ import annotations

import gc
import io
import sys
from collections.abc import Callable
from typing import Any, Final

import msgspec

from ledger.errors import BadInput
from ledger.ingest.framing import _CONFLICT, _ERROR, _FAILED, _PACKED, _ROWS, _send, _send_quietly
from ledger.ingest.lines import CHUNK, MAX_LINE, LineSplitter, _prepare_numbered
from ledger.persistence.append import batch_linker
from ledger.persistence.chain import ChainStart
from ledger.persistence.port import BATCH, IdConflict, Prepared

# Rows per batch the child links and packs: the server's cost per statement is then a
# small part of the batch's (1M rows into PostgreSQL: 2,000 per batch 19 s, 10,000 16 s).
PACKED_BATCH: Final = 10_000

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
                                   [(c.line, c.id, c.position) for c in conflicts], items, packed.leaves)

    return batch
