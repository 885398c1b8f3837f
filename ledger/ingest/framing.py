"""The framing between the import and its child: length-prefixed msgpack messages on a pipe."""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Iterator
from typing import IO, BinaryIO, Final

READ_AHEAD: Final = 8  # batches from the child held while the writer is busy

_ROWS, _ERROR, _FAILED, _PACKED, _CONFLICT = 0, 1, 2, 3, 4  # kinds of message from the child

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
                length = int.from_bytes(size, "big") if len(size) == 4 else 0
                message = stream.read(length) if length else b""
                if len(message) != length:
                    message = b""  # the sender stopped part-way through a message: it said nothing
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
