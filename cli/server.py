"""``ledger serve``: the store over HTTP (INTERFACE.md section 9), Starlette served by uvicorn.

The ledger's calls block (SQLite, psycopg): each runs on a worker thread. Writes go
through one writer task (``cli.group_commit.Writer``): a request's body is read in
full, within its size limit, and its facts decoded and checked (a large body on a
worker thread) before it queues, so a slow or malformed client holds up nobody
else; the requests queued while a write is in flight are then appended together in
one transaction (group commit), each answered with what its own facts did. Reads
run a few at a time (no more than the store's connection pool holds).
"""

from __future__ import annotations

import hmac
import io
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final, TypeVar

import anyio
import anyio.to_thread
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from cli import server_proofs
from cli.group_commit import Job, Writer
from cli.server_params import instant, single_values, wants_html, whole_number
from cli.server_reads import (
    ReadPool,
    contract_list,
    events_page,
    report_html,
    report_json,
    support_html,
    support_json,
)
from ledger.application import Ledger
from ledger.calendar import check_month
from ledger.errors import BadInput, LedgerError, LockWaitTimeout, NotFound, one_line
from ledger.feeds import LabelMap, facts_from
from ledger.ingest.lines import prepare_facts
from ledger.ingest.strategy import PARALLEL_FROM_BYTES, prepared_batches
from ledger.persistence.port import AppendResult
from ledger.text import printable, shortened

T = TypeVar("T")

MAX_BODY: Final = 4 * 1024 * 1024  # larger imports go through `ledger import`
INLINE_BODY: Final = 16 * 1024  # bodies up to this size are prepared on the event loop
READERS: Final = 3  # with the one writer: the PostgreSQL pool's connections (2 + 2 overflow)
PAGE: Final = 1000  # events read per call while streaming GET /v1/events
NDJSON_TYPES: Final = ("application/x-ndjson", "application/ndjson", "application/jsonl")
JSON_TYPES: Final = ("application/json",)


class ServerConfig(msgspec.Struct, frozen=True):
    """What the app needs besides the ledger: tokens (None: not checked), label map, body limit,
    the read workers' CPU priority (``cli.server_reads.lower``) and the time a body may take."""

    write_token: str | None
    read_token: str | None
    labels: LabelMap
    max_body: int
    read_priority: str = "idle"
    request_timeout: float = 30.0  # seconds a request's body may take to arrive (then 408)


class HttpError(Exception):
    """An error answer: its status, one line and any headers it needs."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = one_line(message)
        self.headers = headers


_encoder: Final = msgspec.json.Encoder()


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_encoder.encode(body) + b"\n", status, headers, media_type="application/json")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="ledger"'}
    # What the message echoes (a contract id from the path) is shown as the CLI's stderr shows it:
    # a bidi override or an escape sequence escaped, not handed raw to the terminal of whoever reads it.
    return json_response({"error": shortened(printable(one_line(message)))}, status, headers)


def summary(result: AppendResult) -> dict[str, Any]:
    """The 200 answer of every write, as section 9 gives it, with the conflicts `import` prints."""
    return {
        "imported": result.appended,
        "already_recorded": result.skipped,
        "first_position": result.first_position,
        "last_position": result.last_position,
        "conflicts": [{"line": c.line, "id": c.id, "position": c.position} for c in result.conflicts],
    }


# --- the app -----------------------------------------------------------------------


class _State:
    """The opened ledger, its writer, its read workers and the readers' limiter (made at startup)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.ledger: Ledger | None = None
        self.writer = Writer()
        self.readers = anyio.CapacityLimiter(READERS)
        self.pool: ReadPool | None = None

    def opened(self) -> Ledger:
        assert self.ledger is not None, "the app's lifespan opens the ledger"
        return self.ledger

    async def read(self, call: Callable[[Ledger], T]) -> T:
        ledger = self.opened()
        return await anyio.to_thread.run_sync(call, ledger, limiter=self.readers)

    async def compute(self, call: Callable[..., T], *args: Any) -> T:
        """``call(ledger, *args)`` in a read worker process (``cli.server_reads``): folds off this process.

        On a thread here when the ledger cannot be reopened elsewhere (an opener without ``reopen``).
        """
        if self.pool is None:
            ledger = self.opened()
            return await anyio.to_thread.run_sync(lambda: call(ledger, *args), limiter=self.readers)
        return await self.pool.run(call, *args)

    async def write(self, job: Job) -> AppendResult:
        """Queue a job for the writer; its answer once its transaction has committed."""
        if job.alone is None and not job.rows:
            return AppendResult(0, 0, None, None)  # nothing to write: no transaction
        return await self.writer.submit(job)


def _authorize(request: Request, state: _State, write: bool) -> None:
    config = state.config
    tokens = [config.write_token] if write else [config.read_token, config.write_token]
    if all(t is None for t in tokens) or (not write and config.read_token is None):
        return  # --insecure-local without that token: open
    given_all = request.headers.getlist("authorization")
    if len(given_all) > 1:  # which one counts would be this server's guess, and a proxy's another
        raise HttpError(401, "Authorization given more than once")
    scheme, _, given = (given_all or [""])[0].partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise HttpError(401, "missing bearer token (Authorization: Bearer TOKEN)")
    for token in tokens:
        if token is not None and hmac.compare_digest(given.strip().encode(), token.encode()):
            return
    raise HttpError(401, "wrong token" + (" (writes need the write token)" if write else ""))


def _content_type(request: Request, accepted: tuple[str, ...]) -> None:
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given not in accepted:
        raise HttpError(400, f"Content-Type: expected {' or '.join(accepted)}, got {given or 'none'}")


async def _body(request: Request, config: ServerConfig) -> bytes:
    """The whole body, within the size limit and in time: read before the request queues for the writer."""
    limit = config.max_body
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HttpError(413, f"body too large: {length} bytes, the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    # uvicorn waits for a body as long as its client likes: a client that stops half-way would hold
    # its connection (and a write's memory) for ever. What it sent is dropped, the connection closed.
    with anyio.move_on_after(config.request_timeout) as timer:
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise HttpError(413, f"body too large: over {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:  # nobody to answer: nothing kept, and no traceback in the log
            raise HttpError(400, "the client disconnected before the body's end") from None
    if timer.cancelled_caught:
        raise HttpError(408, f"body not received within {config.request_timeout:g} s: nothing kept",
                        {"Connection": "close"})
    return b"".join(chunks)


def _state(request: Request) -> _State:
    state: _State = request.app.state.ledger
    return state


async def _prepare(body: bytes, prepare: Callable[[], T]) -> T:
    """Decode and check a body's facts: a small one at once, a larger one on a worker thread.

    A webhook of a few alerts takes less time to prepare than a hand-over to a thread
    and back (under load, waiting for the interpreter lock each way); a large one
    would hold up the other requests.
    """
    if len(body) <= INLINE_BODY:
        return prepare()
    return await anyio.to_thread.run_sync(prepare)


async def post_events(request: Request) -> Response:
    state = _state(request)
    _authorize(request, state, write=True)
    _content_type(request, NDJSON_TYPES)
    body = await _body(request, state.config)
    if len(body) >= PARALLEL_FROM_BYTES:  # prepared in a child process, as `ledger import` would
        job = Job([], "line", lambda ledger: ledger.import_file(io.BytesIO(body)))
    else:
        job = Job(await _prepare(body, lambda: list(prepared_batches(io.BytesIO(body)))), "line")
    return json_response(summary(await state.write(job)))


def _hook(source: str) -> Callable[[Request], Awaitable[Response]]:
    async def post(request: Request) -> Response:
        state = _state(request)
        _authorize(request, state, write=True)
        _content_type(request, JSON_TYPES)
        body = await _body(request, state.config)
        service = _query(request).get("service")
        labels = state.config.labels
        batches = await _prepare(body, lambda: list(prepare_facts(facts_from(source, body, labels, service))))
        return json_response(summary(await state.write(Job(batches, "event"))))

    return post


async def get_contracts(request: Request) -> Response:
    state = _state(request)
    _authorize(request, state, write=False)
    # The bytes `ledger contract list --format json` prints, its line break included.
    return Response(await state.compute(contract_list), media_type="application/json")


def _query(request: Request) -> dict[str, str]:
    return single_values(request.query_params.multi_items())


def _month_query(request: Request) -> tuple[str, str, datetime | None, int | None]:
    """A month path's contract, month and replay point (``?as_of=`` or ``?position=``, as for `audit`)."""
    contract = request.path_params["contract"]
    month = check_month(request.path_params["month"], "month")
    query = _query(request)
    unknown = sorted(set(query) - {"as_of", "position"})
    if unknown:
        raise BadInput(f"unknown query parameter `{unknown[0]}` (expected as_of or position)")
    return contract, month, instant(query.get("as_of")), whole_number("position", query.get("position"))


async def get_month(request: Request) -> Response:
    state = _state(request)
    _authorize(request, state, write=False)
    contract, month, as_of, position = _month_query(request)
    if wants_html(request.headers.get("accept", "")):
        # The bytes `ledger report --format html` prints (`ledger audit --format html` at a replay point).
        page = await state.compute(report_html, contract, month, as_of, position)
        return Response(page, media_type="text/html; charset=utf-8")
    # The bytes `ledger report --format json` prints, its line break included.
    return Response(await state.compute(report_json, contract, month, as_of, position),
                    media_type="application/json")


async def get_support(request: Request) -> Response:
    state = _state(request)
    _authorize(request, state, write=False)
    contract, month, as_of, position = _month_query(request)
    if wants_html(request.headers.get("accept", "")):
        # The bytes `ledger support --contract C --format html` prints (at the replay point, if one).
        page = await state.compute(support_html, contract, month, as_of, position)
        return Response(page, media_type="text/html; charset=utf-8")
    # The bytes `ledger support --contract C --format json` prints, its line break included.
    return Response(await state.compute(support_json, contract, month, as_of, position),
                    media_type="application/json")


async def get_events(request: Request) -> Response:
    state = _state(request)
    _authorize(request, state, write=False)
    query = _query(request)
    unknown = sorted(set(query) - {"after"})
    if unknown:
        raise BadInput(f"unknown query parameter `{unknown[0]}` (expected after)")
    after = whole_number("position", query.get("after")) or 0
    last = await state.read(lambda ledger: ledger.recorder.last_position())

    async def stream() -> AsyncIterator[bytes]:
        # Page by page up to the last position at the request's start: a consistent prefix,
        # and no connection held while a slow client reads.
        start = after + 1
        while start <= last:
            yield await state.compute(events_page, start, min(start + PAGE - 1, last))
            start += PAGE

    return StreamingResponse(stream(), media_type="application/x-ndjson")


async def events(request: Request) -> Response:
    return await (post_events if request.method == "POST" else get_events)(request)


def _proof(call: server_proofs.Endpoint) -> Callable[[Request], Awaitable[Response]]:
    async def get(request: Request) -> Response:
        state = _state(request)
        _authorize(request, state, write=False)
        query = _query(request)
        # The bytes the command prints: compact JSON and a line break.
        return json_response(await state.compute(call, query))

    return get


async def get_openapi(request: Request) -> Response:
    from cli.openapi import document

    return json_response(document())


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HttpError):
        return error_response(exc.status, exc.message, exc.headers)
    if isinstance(exc, HTTPException):  # a 405's Allow kept
        return error_response(exc.status_code, exc.detail or "error", dict(exc.headers or {}))
    if isinstance(exc, BadInput):
        return error_response(400, str(exc))
    if isinstance(exc, NotFound):
        return error_response(404, str(exc))
    if isinstance(exc, LockWaitTimeout):
        return error_response(503, str(exc))
    if isinstance(exc, LedgerError):
        return error_response(500, str(exc))
    # Logged one line, answered without the details: never a stack trace to a client.
    print(f"ledger serve: {type(exc).__name__}: {one_line(str(exc))}", file=sys.stderr, flush=True)
    return error_response(500, "internal error")


def create_app(opener: Callable[[], Ledger], config: ServerConfig,
               started: Callable[[], None] | None = None) -> Starlette:
    """The ASGI app over the ledger ``opener`` opens at startup (and that is closed at shutdown).

    ``started`` is called once the ledger is open and the read workers are up, before
    the first request.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        state = _State(config)
        ledger = state.ledger = await anyio.to_thread.run_sync(opener)
        app.state.ledger = state
        try:
            if ledger.reopen is not None:
                state.pool = ReadPool(ledger.reopen, priority=config.read_priority)
                await state.pool.start()
            if started is not None:
                started()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(state.writer.run, ledger)
                yield
                # Shutdown comes after the requests in flight have finished (uvicorn waits for
                # them), so the writer has nothing queued: it can stop.
                tasks.cancel_scope.cancel()
        finally:
            if state.pool is not None:
                await anyio.to_thread.run_sync(state.pool.close)
            ledger.close()

    routes = [
        # One route for both methods: a 405 on /v1/events then allows both (Allow: GET, HEAD, POST).
        Route("/v1/events", events, methods=["GET", "POST"]),
        Route("/v1/hooks/alertmanager", _hook("alertmanager"), methods=["POST"]),
        Route("/v1/hooks/uptime-kuma", _hook("uptime-kuma"), methods=["POST"]),
        Route("/v1/imports/statuspage", _hook("statuspage"), methods=["POST"]),
        Route("/v1/contracts", get_contracts, methods=["GET"]),
        Route("/v1/contracts/{contract}/months/{month}", get_month, methods=["GET"]),
        Route("/v1/contracts/{contract}/months/{month}/support", get_support, methods=["GET"]),
        Route("/openapi.json", get_openapi, methods=["GET"]),
    ]
    routes += [Route(path, _proof(f), methods=["GET"]) for path, f in server_proofs.ENDPOINTS.items()]
    handlers: dict[Any, Any] = {Exception: _http_error, HTTPException: _http_error, HttpError: _http_error,
                                LedgerError: _http_error}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    # `/v1/contracts/` is not a route: a JSON 404 as for any unknown path, not an empty redirect.
    app.router.redirect_slashes = False
    return app


# --- the command ---------------------------------------------------------------------
