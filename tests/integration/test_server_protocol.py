"""`ledger serve` at the HTTP level, over raw sockets on a loopback port, on both stores.

Methods a route does not take, headers given twice, a body that stops half-way or whose
client goes away, and many writers at once, good and bad bodies mixed with reads.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.serve_load import READ_TOKEN, ROOT, WRITE_TOKEN, ServerProcess
from cli.main import cli
from cli.openapi import document
from tests.pgserver import scratch_database

NDJSON = "application/x-ndjson"
ROUTES = {  # path: the methods it answers (HEAD with GET)
    "/v1/events": {"GET", "HEAD", "POST"},
    "/v1/hooks/alertmanager": {"POST"},
    "/v1/hooks/uptime-kuma": {"POST"},
    "/v1/imports/statuspage": {"POST"},
    "/v1/contracts": {"GET", "HEAD"},
    "/v1/contracts/sla-a-2026/months/2026-10": {"GET", "HEAD"},
    "/v1/contracts/sla-a-2026/months/2026-10/support": {"GET", "HEAD"},
    "/v1/checkpoint": {"GET", "HEAD"},
    "/v1/proofs/inclusion": {"GET", "HEAD"},
    "/v1/proofs/consistency": {"GET", "HEAD"},
    "/openapi.json": {"GET", "HEAD"},
}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    def serve(store: str) -> Iterator[ServerProcess]:
        policy = str(ROOT / "ledger" / "examples" / "sla-a.toml")
        result = CliRunner().invoke(cli, ["--store", store, "contract", "register", policy])
        assert result.exit_code == 0, result.output
        proc = ServerProcess(store, "--request-timeout", "1")
        yield proc
        code, err = proc.stop()
        assert code == 0, err
        assert "Traceback" not in err, err  # a client gone mid-body is no error of the server's

    if request.param == "sqlite":
        yield from serve(f"sqlite:///{tmp_path_factory.mktemp('proto') / 'ledger.db'}")
    else:
        with scratch_database(request.getfixturevalue("pg_admin_url")) as url:
            yield from serve(url)


def exchange(server: ServerProcess, data: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is, read until the server closes: status, headers, body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def request(method: str, path: str, headers: str = "", body: bytes = b"", token: str = WRITE_TOKEN) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return (f"{method} {path} HTTP/1.1\r\nHost: ledger\r\n{auth}{headers}{length}Connection: close\r\n\r\n"
            .encode() + body)


def events(server: ServerProcess) -> list[dict[str, object]]:
    status, body, _ = server.request("GET", "/v1/events?after=0", token=READ_TOKEN)
    assert status == 200
    return [json.loads(line) for line in body.splitlines()]


def test_the_routes_are_the_document_s(server: ServerProcess) -> None:
    """Every route the app has is in the OpenAPI document with its methods, and nothing else is."""
    from starlette.routing import Route

    from cli.server import ServerConfig, create_app
    from ledger.feeds import DEFAULT_MAP

    app = create_app(lambda: None, ServerConfig(None, None, DEFAULT_MAP, 1))  # type: ignore[arg-type, return-value]
    served = {r.path: set(r.methods or ()) for r in app.routes if isinstance(r, Route)}
    paths = document()["paths"]
    assert served == {path: {m.upper() for m in ops} | ({"HEAD"} if "get" in ops else set())
                      for path, ops in paths.items()}
    assert {p.replace("{contract}", "sla-a-2026").replace("{month}", "2026-10") for p in paths} == set(ROUTES)
    for path, operations in paths.items():
        concrete = path.replace("{contract}", "sla-a-2026").replace("{month}", "2026-10")
        methods = {m.upper() for m in operations} | ({"HEAD"} if "get" in operations else set())
        assert methods == ROUTES[concrete]


@pytest.mark.parametrize("path", sorted(ROUTES))
def test_a_method_the_route_does_not_take_is_405_with_allow(server: ServerProcess, path: str) -> None:
    for method in sorted({"PUT", "DELETE", "PATCH", "OPTIONS", "POST", "GET"} - ROUTES[path]):
        status, headers, body = exchange(server, request(method, path))
        assert status == 405, (method, path)
        assert json.loads(body) == {"error": "Method Not Allowed"}
        assert {m.strip() for m in headers["allow"].split(",")} == ROUTES[path], (method, path)
    if "HEAD" in ROUTES[path]:  # HEAD: the GET's status and headers, no body
        query = {"/v1/proofs/inclusion": "?position=1", "/v1/proofs/consistency": "?from=1&to=1"}
        status, headers, body = exchange(server, request("HEAD", path + query.get(path, "")))
        assert (status, body) == (200, b""), path


@pytest.mark.parametrize("order", [(READ_TOKEN, "wrong"), ("wrong", READ_TOKEN), (READ_TOKEN, READ_TOKEN)])
def test_authorization_given_twice_is_401(server: ServerProcess, order: tuple[str, str]) -> None:
    twice = "".join(f"Authorization: Bearer {t}\r\n" for t in order)
    status, headers, body = exchange(server, request("GET", "/v1/contracts", twice, token=""))
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    assert json.loads(body) == {"error": "Authorization given more than once"}


LINE = (b'{"type":"probe_failed","service":"workspace","probe":"paris","at":"2026-10-04T09:15:00Z",'
        b'"id":"%s"}\n')


def test_a_body_that_stops_half_way_times_out(server: ServerProcess) -> None:
    before = events(server)
    whole = LINE % b"half-1" + LINE % b"half-2"
    head = request("POST", "/v1/events", f"Content-Type: {NDJSON}\r\n", whole)
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
        slow.sendall(head[:-40])  # the headers and most of the body, then nothing
        # Meanwhile another write goes through: the stalled one holds no lock.
        status, answer, _ = server.request("POST", "/v1/events", LINE % b"half-other", content_type=NDJSON)
        assert (status, json.loads(answer)["imported"]) == (200, 1)
        answer = b""
        while chunk := slow.recv(65536):  # the server closes the connection after its answer
            answer += chunk
    assert time.monotonic() - start < 8
    head_, _, body = answer.partition(b"\r\n\r\n")
    assert head_.startswith(b"HTTP/1.1 408 ")
    assert json.loads(body) == {"error": "body not received within 1 s: nothing kept"}
    assert [e["id"] for e in events(server)[len(before):]] == ["half-other"]


def test_a_client_gone_mid_body_keeps_nothing(server: ServerProcess) -> None:
    before = events(server)
    whole = LINE % b"gone-1" + LINE % b"gone-2"
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(request("POST", "/v1/events", f"Content-Type: {NDJSON}\r\n", whole)[:-40])
        time.sleep(0.2)
    time.sleep(0.3)
    assert events(server) == before  # and no traceback on stderr (the fixture's teardown)


def test_many_writers_good_and_bad_bodies_while_reading(server: ServerProcess) -> None:
    """Overlapping ids, bad lines, webhooks and reads at once: each body all or nothing, no gap."""
    before = len(events(server))
    answers: list[tuple[list[str], bool, int, dict[str, object]]] = []
    errors: list[str] = []

    def write(n: int) -> None:
        for k in range(12):
            ids = [f"mw{(n * 7 + k * 3 + j) % 40}" for j in range(1 + k % 4)]
            bad = k % 5 == 4
            lines = [LINE % i.encode() for i in ids] + ([b'{"type":"probe_failed"\n'] if bad else [])
            status, body, _ = server.request("POST", "/v1/events", b"".join(lines), content_type=NDJSON)
            answers.append((ids, bad, status, json.loads(body)))

    def read() -> None:
        for _ in range(8):
            positions = [e["position"] for e in events(server)]
            if positions != list(range(1, len(positions) + 1)):
                errors.append(f"a gap: {positions}")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    recorded = events(server)
    assert [e["position"] for e in recorded] == list(range(1, len(recorded) + 1))
    new = [str(e["id"]) for e in recorded[before:]]
    assert len(new) == len(set(new))
    for ids, bad, status, body in answers:
        if bad:
            assert status == 400, body
            assert "line" in str(body["error"])
        else:
            assert status == 200, body
            assert set(ids) <= set(new)
    assert sum(int(str(b["imported"])) for _, bad, _, b in answers if not bad) == len(new)
    assert set(new) == {i for ids, bad, _, _ in answers if not bad for i in ids}


@pytest.mark.parametrize("sent", [b"", b"GET /v1/contracts HTTP/1.1\r\nHost: ledger\r\n"])
def test_headers_that_never_end_time_out(server: ServerProcess, sent: bytes) -> None:
    """A connection left silent, or a head that stops half-way, is answered 408 and closed."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        conn.sendall(sent)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert time.monotonic() - start < 8
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"connection: close" in head
    assert json.loads(body) == {"error": "request headers not received within 1 s"}


@pytest.mark.parametrize("extra", [
    "X-Big: " + "a" * 70_000 + "\r\n",  # one header too long
    "".join(f"X-{i}: v\r\n" for i in range(10_000)),  # too many
])
def test_a_head_too_large_is_431(server: ServerProcess, extra: str) -> None:
    status, headers, body = exchange(server, request("GET", "/v1/contracts", extra, token=READ_TOKEN))
    assert status == 431
    assert headers["connection"] == "close"
    assert json.loads(body) == {"error": "request line and headers over 65536 bytes"}
    ok = exchange(server, request("GET", "/v1/contracts", "X-Fine: " + "a" * 8000 + "\r\n", token=READ_TOKEN))
    assert ok[0] == 200


@pytest.mark.parametrize("data", [
    b"BREW /v1/contracts HTTP/1.1\r\nHost: ledger\r\n\r\n",  # no such method in HTTP
    b"POST /v1/events HTTP/1.1\r\nHost: ledger\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    b"POST /v1/events HTTP/1.1\r\nHost: ledger\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
])
def test_what_the_parser_refuses_is_a_json_400(server: ServerProcess, data: bytes) -> None:
    status, headers, body = exchange(server, data)
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "Invalid HTTP request received."}


def test_stopped_as_soon_as_it_says_it_serves(tmp_path: Path) -> None:
    """SIGTERM or SIGINT the moment the server has said where it listens: a clean stop, not a kill."""
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        proc = ServerProcess(store)
        proc.proc.send_signal(sig)
        _, err = proc.proc.communicate(timeout=30)
        assert (proc.proc.returncode, err.decode()) == (0, "ledger serve: stopped\n")
