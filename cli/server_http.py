"""``ledger serve``'s HTTP/1.1 connections: uvicorn's httptools protocol, with a request's head bounded.

uvicorn bounds neither the time a request's head may take (a connection opened and left
silent, or a head sent a byte at a time, is held for ever) nor its size (llhttp keeps
every header byte it is sent: a client could fill the server's memory). Here the head
(request line and headers) must arrive within the request timeout, counted from the
connection or from the request's first byte, and within ``MAX_HEAD`` bytes; otherwise
the answer is a JSON error (408 or 431) and the connection is closed. A request uvicorn's
parser refuses is answered in JSON too (400), as every other error of the server.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any, Final

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD: Final = 64 * 1024  # bytes of request line and headers (a browser's are a few KB)


class _Refused(Exception):
    """Raised in a parser callback: the parser stops, and uvicorn answers through ``send_400_response``."""


class BoundedProtocol(HttpToolsProtocol):
    """uvicorn's protocol, with a request head's time and size bounded (``protocol`` sets the time)."""

    timeout: float = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_size = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.refused: tuple[int, str] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_size = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        status, message = self.refused or (400, msg)
        self._answer(status, message)

    def _count(self, size: int) -> None:
        self.head_size += size
        if self.head_size > MAX_HEAD:
            self.refused = (431, f"request line and headers over {MAX_HEAD} bytes")
            raise _Refused

    def _arm(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.timeout, self._late)

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _late(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self._arm()  # a pipelined request's answer is being written: not in the middle of it
            return
        self._answer(408, f"request headers not received within {self.timeout:g} s")

    def _answer(self, status: int, message: str) -> None:
        body = msgspec.json.encode({"error": message}) + b"\n"
        head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode()]
        head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
                    % len(body))
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def protocol(timeout: float) -> type[BoundedProtocol]:
    """The protocol class uvicorn instantiates per connection, with this request timeout."""
    return type("BoundedProtocol", (BoundedProtocol,), {"timeout": timeout})
