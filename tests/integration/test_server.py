"""`ledger serve` over real HTTP on a loopback port, on both stores (INTERFACE.md section 9)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from benchmarks.serve_load import READ_TOKEN, ROOT, WRITE_TOKEN, ServerProcess
from benchmarks.serve_load import run as run_load
from cli import server_proofs
from cli.main import cli
from cli.openapi import document
from cli.server_params import wants_html
from tests.pgserver import scratch_database
from tests.unit.test_feeds import alert, incident, kuma, page, webhook

NDJSON = "application/x-ndjson"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def module_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('serve') / 'ledger.db'}"
    else:
        with scratch_database(request.getfixturevalue("pg_admin_url")) as url:
            yield url


@pytest.fixture(scope="module")
def server(module_store: str) -> Iterator[ServerProcess]:
    examples = ROOT / "ledger" / "examples"
    args = ["--store", module_store, "contract", "register", str(examples / "sla-a.toml")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    # Tokens padded with blanks, as an env file may hold them: every request of this module
    # authenticates only if the server reads them as a client sends them (without).
    proc = ServerProcess(module_store, env=PADDED_TOKENS, tokens=False)
    yield proc
    code, err = proc.stop()
    assert code == 0, err


PADDED_TOKENS = {"LEDGER_WRITE_TOKEN": f" {WRITE_TOKEN}\t", "LEDGER_READ_TOKEN": f"{READ_TOKEN} "}


def check(body: bytes, name: str, many: bool = False) -> Any:
    """The JSON body, validated against the OpenAPI document's schema ``name`` (a list of them)."""
    ref = {"$ref": f"#/components/schemas/{name}"}
    root = {"type": "array", "items": ref} if many else ref
    value = json.loads(body)
    jsonschema.validate(value, {**root, "components": document()["components"]})
    return value


def ledger_cli(store: str, *args: str) -> bytes:
    result = CliRunner().invoke(cli, ["--store", store, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def test_events_in_and_out(server: ServerProcess, module_store: str) -> None:
    probe = b'"service":"workspace","probe":"paris"'
    lines = (b'{"type":"probe_failed",%s,"at":"2026-10-04T09:15:00Z","id":"e1"}\n'
             b'{"type":"probe_recovered",%s,"at":"2026-10-04T09:45:00Z"}\n') % (probe, probe)
    status, body, headers = server.request("POST", "/v1/events", lines, content_type=NDJSON)
    assert status == 200, body
    first = check(body, "Summary")
    assert first["imported"] == 2
    assert first["last_position"] == first["first_position"] + 1
    status, body, _ = server.request("POST", "/v1/events", lines, content_type=NDJSON)
    assert check(body, "Summary") == {"imported": 0, "already_recorded": 2, "first_position": None,
                                      "last_position": None, "conflicts": []}
    status, body, headers = server.request("GET", "/v1/events?after=0", token=READ_TOKEN)
    assert status == 200
    assert headers["content-type"].startswith("application/x-ndjson")
    assert body == ledger_cli(module_store, "events")  # the bytes `ledger events` prints
    after = first["first_position"]
    status, tail, _ = server.request("GET", f"/v1/events?after={after}", token=READ_TOKEN)
    assert [json.loads(x)["position"] for x in tail.splitlines()] == list(
        range(after + 1, json.loads(body.splitlines()[-1])["position"] + 1))


def test_report_is_the_cli_bytes(server: ServerProcess, module_store: str) -> None:
    server.request("POST", "/v1/hooks/alertmanager",
                   webhook({**alert("rep1", "resolved", end="2026-10-05T10:00:00Z"),
                            "labels": {"service": "workspace", "probe": "london"}}))
    status, body, _ = server.request("GET", "/v1/contracts/sla-a-2026/months/2026-10", token=READ_TOKEN)
    assert status == 200, body
    assert body == ledger_cli(module_store, "report", "--contract", "sla-a-2026", "--month", "2026-10",
                              "--format", "json")
    check(body, "Report")
    path = "/v1/contracts/sla-a-2026/months/2026-10?position=1"
    status, body, _ = server.request("GET", path, token=READ_TOKEN)
    audit = json.loads(ledger_cli(module_store, "audit", "--contract", "sla-a-2026", "--month", "2026-10",
                                  "--position", "1", "--format", "json"))
    assert json.loads(body) == audit["report"]
    assert json.loads(body)["as_of_position"] == 1


def test_contract_list_is_the_cli_bytes(store_url: str, tmp_path: Path) -> None:
    """GET /v1/contracts answers what `ledger contract list --format json` prints, as the store changes."""
    examples = ROOT / "ledger" / "examples"
    server = ServerProcess(store_url)
    try:
        def listed() -> bytes:
            status, body, headers = server.request("GET", "/v1/contracts", token=READ_TOKEN)
            assert status == 200, body
            assert headers["content-type"] == "application/json"
            cli_bytes = ledger_cli(store_url, "contract", "list", "--format", "json")
            assert body == cli_bytes
            check(body, "Contract", many=True)
            return body

        assert listed() == b"[]\n"
        for name in ("sla-d.toml", "sla-a.toml", "sla-b.toml"):  # recorded out of id order
            ledger_cli(store_url, "contract", "register", str(examples / name))
        amended = (examples / "sla-a.toml").read_text().replace(
            'timezone = "Europe/Paris"', 'timezone = "Europe/Paris"\neffective_from = "2026-11"').replace(
            'target = "99.97"', 'target = "99.9"')
        (tmp_path / "sla-a-v2.toml").write_text(amended)
        ledger_cli(store_url, "contract", "amend", str(tmp_path / "sla-a-v2.toml"))
        contracts = json.loads(listed())
        assert [c["contract"] for c in contracts] == ["sla-a-2026", "sla-b-2026", "sla-d-2026"]
        assert contracts[0] == {"contract": "sla-a-2026", "customer": "Atelier Durand SARL",
                                "service": "workspace", "versions": 2, "timezone": "Europe/Paris",
                                "effective_from": "2026-11", "position": 4}
        assert "Bénévoles" in contracts[2]["customer"]
    finally:
        assert server.stop()[0] == 0


def eventually(check: Callable[[], bool], seconds: float = 10) -> bool:
    """Whether ``check()`` holds within ``seconds`` (a worker process applies its settings as it starts)."""
    import time

    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_workers(pid: int) -> list[int]:
    """The server's read worker processes (``cli.server_reads``): its children spawned by multiprocessing."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in children.read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return sorted(found)


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _status(pid: int, field: str) -> str:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith(field + ":"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_read_workers(store_url: str) -> None:
    """Reads run in worker processes at idle priority; a worker killed is replaced, no read fails."""
    import os
    import signal
    import time

    ledger_cli(store_url, "contract", "register", str(ROOT / "ledger" / "examples" / "sla-a.toml"))
    month = "/v1/contracts/sla-a-2026/months/2026-10"
    want = ledger_cli(store_url, "report", "--contract", "sla-a-2026", "--month", "2026-10",
                      "--format", "json")
    server = ServerProcess(store_url)
    try:
        assert server.request("GET", month, token=READ_TOKEN)[:2] == (200, want)  # after startup
        workers = read_workers(server.proc.pid)
        assert len(workers) == 2
        deadline = time.monotonic() + 10
        while not all(int(_status(p, "SigIgn"), 16) & (1 << (signal.SIGINT - 1)) for p in workers):
            assert time.monotonic() < deadline, "the workers do not ignore SIGINT"
            time.sleep(0.05)
        for pid in workers:  # a fold takes only the CPU writes leave (set as the worker starts)
            assert eventually(lambda pid=pid: os.sched_getscheduler(pid) == os.SCHED_IDLE)
            os.kill(pid, signal.SIGINT)  # a Ctrl-C reaches them too: the server stops them
        assert server.request("GET", month, token=READ_TOKEN)[:2] == (200, want)
        assert read_workers(server.proc.pid) == workers
        os.kill(workers[0], signal.SIGKILL)
        for _ in range(3):  # the broken pool is replaced; no read fails
            assert server.request("GET", month, token=READ_TOKEN)[:2] == (200, want)
        now = read_workers(server.proc.pid)
        assert now
        assert not set(now) & set(workers)
    finally:
        code, err = server.stop()
        assert code == 0, err
    assert all(gone(pid) for pid in workers + now)  # stopped with the server


@pytest.mark.parametrize(("priority", "nice"), [("low", 5), ("normal", 0)])
def test_read_priority(tmp_path: Path, priority: str, nice: int) -> None:
    """``--read-priority`` low or normal: the workers are scheduled as others, at nice 5 or the server's."""
    import os

    from cli.serve import READ_PRIORITIES
    from cli.server_reads import PRIORITIES

    assert READ_PRIORITIES == PRIORITIES  # the command's choices (serve.py does not import the workers')

    server = ServerProcess(f"sqlite:///{tmp_path / 'l.db'}", "--read-priority", priority)
    try:
        assert server.request("GET", "/v1/contracts", token=READ_TOKEN)[:2] == (200, b"[]\n")
        workers = read_workers(server.proc.pid)
        assert len(workers) == 2
        own = os.getpriority(os.PRIO_PROCESS, server.proc.pid)
        for pid in workers:  # set as the worker starts
            assert eventually(lambda pid=pid: os.getpriority(os.PRIO_PROCESS, pid) == own + nice)
            assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    finally:
        code, err = server.stop()
        assert code == 0, err


@pytest.mark.parametrize(("path", "query", "status", "message"), [
    ("/v1/contracts/nope/months/2026-10", "", 404, "contract `nope` is not registered"),
    # An id echoed from the path is escaped as the CLI's error line escapes it (the JSON is the message).
    ("/v1/contracts/%E2%80%AEx%1B%5B2J/months/2026-10", "", 404, "contract `\\u202ex\\x1b[2J` is not"),
    ("/v1/contracts/sla-a-2026/months/2026-13", "", 400, "month"),
    # A long id is echoed shortened, as on the CLI's error line.
    ("/v1/contracts/" + "x" * 10_000 + "/months/2026-10", "", 404,
     "xxx...[9,129 of 10,029 characters left out]...xxx"),
    ("/v1/contracts/sla-a-2026/months/2026-10", "?position=x", 400, "position 'x'"),
    ("/v1/contracts/sla-a-2026/months/2026-10", "?as_of=2026-10-01T00:00:00", 400, "no offset"),
    ("/v1/contracts/sla-a-2026/months/2026-10", "?as_of=2026-10-01T00:00:00Z&position=1", 400, "not both"),
    ("/v1/contracts/sla-a-2026/months/2026-10", "?color=red", 400, "unknown query parameter `color`"),
    ("/v1/events", "?after=-1", 400, "position '-1'"),
    ("/v1/nothing", "", 404, "Not Found"),
])
def test_read_errors(server: ServerProcess, path: str, query: str, status: int, message: str) -> None:
    got, body, _ = server.request("GET", path + query, token=READ_TOKEN)
    assert got == status
    assert message in check(body, "Error")["error"]


def test_tokens(server: ServerProcess) -> None:
    hook = webhook(alert("tok1", probe="paris", service="workspace"))
    for token in (None, "wrong", READ_TOKEN):  # the read token does not write
        status, body, headers = server.request("POST", "/v1/hooks/alertmanager", hook, token=token)
        assert status == 401
        assert headers["www-authenticate"].startswith("Bearer")
        check(body, "Error")
    for token in (None, "wrong"):
        assert server.request("GET", "/v1/contracts", token=token)[0] == 401
    assert server.request("GET", "/v1/contracts", token=WRITE_TOKEN)[0] == 200  # the write token reads


def test_bad_writes_keep_nothing(server: ServerProcess) -> None:
    before = server.request("GET", "/v1/events?after=0", token=READ_TOKEN)[1]
    cases = [
        ("/v1/events", b'{"type":"probe_failed"}', "text/plain", 400,
         "Content-Type: expected application/x-ndjson"),
        ("/v1/hooks/alertmanager", webhook(alert("ct")), NDJSON, 400,
         "Content-Type: expected application/json"),
        ("/v1/events",
         b'{"type":"probe_failed","service":"s","probe":"p","at":"2026-10-04T09:15:00Z"}\n{"type":',
         NDJSON, 400, "line 2"),
        ("/v1/hooks/alertmanager", b'{"alerts": [', "application/json", 400, "not valid JSON"),
        # A body that starts with a byte order mark is refused as `ledger import` refuses such a file.
        ("/v1/events",
         b'\xef\xbb\xbf{"type":"probe_failed","service":"s","probe":"p","at":"2026-10-04T09:15:00Z"}',
         NDJSON, 400, "line 1: a UTF-8 byte order mark (U+FEFF) at the start, which is not JSON"),
        ("/v1/hooks/alertmanager", b"\xef\xbb\xbf" + webhook(alert("bom")), "application/json", 400,
         "alertmanager: a UTF-8 byte order mark (U+FEFF) at the start"),
        ("/v1/hooks/alertmanager", webhook(alert("ok1"), {**alert("ok2"), "labels": {"instance": "x"}}),
         "application/json", 400, "alerts[1].labels.service"),
        ("/v1/hooks/uptime-kuma", kuma(0, name="no-slash"), "application/json", 400, "monitor.name"),
        ("/v1/imports/statuspage", page(incidents=[incident(impact="huge")]), "application/json", 400,
         "incidents[0].impact"),
        ("/v1/events", b"x" * (10 * 1024 * 1024), NDJSON, 413, "body too large"),
    ]
    for path, body, ctype, status, message in cases:
        got, answer, _ = server.request("POST", path, body, content_type=ctype)
        assert got == status, (path, answer)
        error = check(answer, "Error")["error"]
        assert message in error
        assert "\n" not in error
        assert "Traceback" not in error
    assert server.request("GET", "/v1/events?after=0", token=READ_TOKEN)[1] == before


def test_webhooks_sent_twice_change_nothing(server: ServerProcess) -> None:
    posts = [
        ("/v1/hooks/alertmanager", webhook({**alert("twice", "resolved", end="2026-10-06T10:00:00Z"),
                                            "labels": {"service": "workspace", "probe": "paris"}})),
        ("/v1/hooks/uptime-kuma", kuma(0, name="workspace/frankfurt")),
        ("/v1/imports/statuspage?service=workspace", page(incidents=[incident("twice", components=())])),
    ]
    for path, body in posts:
        status, first, _ = server.request("POST", path, body)
        assert status == 200, first
        status, again, _ = server.request("POST", path, body)
        assert check(first, "Summary")["imported"] == check(again, "Summary")["already_recorded"] > 0
        assert json.loads(again)["imported"] == 0
    # Uptime Kuma's "Test" button: accepted, nothing recorded.
    test_button = b'{"heartbeat":null,"monitor":null,"msg":"t"}'
    status, body, _ = server.request("POST", "/v1/hooks/uptime-kuma", test_button)
    assert (status, json.loads(body)["imported"]) == (200, 0)


def test_openapi_document(server: ServerProcess) -> None:
    status, body, _ = server.request("GET", "/openapi.json", token=None)
    doc = json.loads(body)
    assert status == 200
    assert doc == json.loads(json.dumps(document()))
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {"/v1/events", "/v1/hooks/alertmanager", "/v1/hooks/uptime-kuma",
                                 "/v1/imports/statuspage", "/v1/contracts",
                                 "/v1/contracts/{contract}/months/{month}",
                                 "/v1/contracts/{contract}/months/{month}/support", "/openapi.json",
                                 *server_proofs.ENDPOINTS}
    jsonschema.Draft202012Validator.check_schema(doc["components"]["schemas"]["Report"])


def _serve(store: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")} | (env or {})
    return subprocess.run([sys.executable, "-m", "cli.main", "--store", store, "serve", *args], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("args", "env", "message"), [
    ((), {}, "LEDGER_WRITE_TOKEN and LEDGER_READ_TOKEN must be set"),
    (("--insecure-local", "--listen", "0.0.0.0:0"), {}, "--insecure-local: only on a loopback address"),
    (("--map", "region=eu"), {"LEDGER_WRITE_TOKEN": "w", "LEDGER_READ_TOKEN": "r"},
     "--map: unknown key `region`"),
    (("--listen", "nowhere"), {"LEDGER_WRITE_TOKEN": "w", "LEDGER_READ_TOKEN": "r"}, "--listen 'nowhere'"),
    # The flag asks for an open server: refused off loopback even when both tokens are set.
    (("--insecure-local", "--listen", "0.0.0.0:0"), {"LEDGER_WRITE_TOKEN": "w", "LEDGER_READ_TOKEN": "r"},
     "--insecure-local: only on a loopback address, not 0.0.0.0"),
    # A token of blanks is no token: no request could carry it.
    ((), {"LEDGER_WRITE_TOKEN": " ", "LEDGER_READ_TOKEN": "r"},
     "LEDGER_WRITE_TOKEN and LEDGER_READ_TOKEN must be set"),
])
def test_refuses_to_start(tmp_path: Path, args: tuple[str, ...], env: dict[str, str], message: str) -> None:
    result = _serve(f"sqlite:///{tmp_path / 'l.db'}", *args, env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message in result.stderr


def test_insecure_local_and_label_map(tmp_path: Path) -> None:
    server = ServerProcess(f"sqlite:///{tmp_path / 'l.db'}", "--insecure-local", "--map",
                           "service=instance,probe=job", tokens=False)
    try:
        hook = webhook({**alert("m1"), "labels": {"instance": "api", "job": "blackbox"}})
        status, body, _ = server.request("POST", "/v1/hooks/alertmanager", hook, token=None)
        assert (status, json.loads(body)["imported"]) == (200, 1)
        status, body, _ = server.request("POST", "/v1/hooks/alertmanager", webhook(alert("m2")), token=None)
        assert status == 400
        assert "field `alerts[0].labels.instance`: missing" in json.loads(body)["error"]
    finally:
        assert server.stop()[0] == 0


def test_sigterm_during_writes_keeps_every_acknowledged_write(store_url: str) -> None:
    server = ServerProcess(store_url)
    acknowledged: list[str] = []
    refused: list[str] = []

    def post(n: int) -> None:
        for k in range(400):
            fp = f"sig{n}-{k}"
            try:
                status, _, _ = server.request("POST", "/v1/hooks/alertmanager", webhook(alert(fp)))
            except OSError:
                refused.append(fp)
                return  # the server has stopped listening
            (acknowledged if status == 200 else refused).append(fp)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    while len(acknowledged) < 40:
        threading.Event().wait(0.02)
    code, err = server.stop()
    for t in threads:
        t.join()
    assert code == 0, err
    recorded = [json.loads(x) for x in ledger_cli(store_url, "events").splitlines()]
    ids = {e["id"].split(":")[1] for e in recorded}
    assert set(acknowledged) <= ids
    assert [e["position"] for e in recorded] == list(range(1, len(recorded) + 1))
    assert len(ids) == len(recorded)  # nothing twice, nothing half there
    assert ledger_cli(store_url, "verify").startswith(b"ok:")


def test_load_small(store_url: str) -> None:
    result = run_load(store_url, clients=8, alerts=160, per_hook=2)
    assert result["writes"] == 160  # 80 webhooks, each sent twice


def test_documented_samples(server: ServerProcess) -> None:
    """The payloads in docs/monitoring.md post as they are, and again change nothing."""
    text = (ROOT / "docs" / "monitoring.md").read_text()
    paths = {"alertmanager": "/v1/hooks/alertmanager", "uptime-kuma": "/v1/hooks/uptime-kuma",
             "statuspage": "/v1/imports/statuspage"}
    samples = re.findall(r"```json (\S+)\n(.*?)```", text, re.S)
    assert sorted(kind for kind, _ in samples) == sorted(paths)
    for kind, body in samples:
        status, first, _ = server.request("POST", paths[kind], body.encode())
        assert status == 200, first
        assert json.loads(first)["imported"] > 0
        assert json.loads(server.request("POST", paths[kind], body.encode())[1])["imported"] == 0


SUPPORT_POLICY = """
[contract]
id = "sup-d"
customer = "Better Impact customer"
service = "bi"
timezone = "America/Toronto"
currency = "CAD"
monthly_fee = "500.00"

[availability]
target = "99.95"
probes = ["http"]

[support]
hours = ["Mon 05:00 - Fri 16:00"]
targets = [
  { severity = "level1", mean_first_response = "15m" },
  { severity = "level2", first_response = "1 business day" },
]
engagement = { level = "level2", within = "10m" }
"""


def test_html_and_support_are_the_cli_bytes(server: ServerProcess, module_store: str, tmp_path: Path) -> None:
    month = "/v1/contracts/sla-a-2026/months/2026-10"
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    status, body, headers = server.request("GET", month, token=READ_TOKEN, accept=browser)
    assert status == 200, body
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert body == ledger_cli(module_store, "report", "--contract", "sla-a-2026", "--month", "2026-10",
                              "--format", "html")
    status, body, _ = server.request("GET", month + "?position=1", token=READ_TOKEN, accept="text/html")
    assert body == ledger_cli(module_store, "audit", "--contract", "sla-a-2026", "--month", "2026-10",
                              "--position", "1", "--format", "html")
    for accept in ("*/*", "application/json", "text/html;q=0.5, application/json"):
        status, body, headers = server.request("GET", month, token=READ_TOKEN, accept=accept)
        assert headers["content-type"] == "application/json"
        check(body, "Report")

    (tmp_path / "sup.toml").write_text(SUPPORT_POLICY)
    ledger_cli(module_store, "contract", "register", str(tmp_path / "sup.toml"))
    facts = [
        {"type": "ticket_opened", "contract": "sup-d", "ticket": "T-1", "at": "2026-10-05T10:00:00-04:00",
         "severity": "level1"},
        {"type": "ticket_responded", "ticket": "T-1", "at": "2026-10-05T10:12:00-04:00"},
        {"type": "ticket_opened", "contract": "sup-d", "ticket": "T-2", "at": "2026-10-06T10:00:00-04:00",
         "severity": "level2"},
    ]
    lines = b"".join(json.dumps(f).encode() + b"\n" for f in facts)
    status, body, _ = server.request("POST", "/v1/events", lines, content_type=NDJSON)
    registered = check(body, "Summary")["first_position"] - 1  # the contract came just before
    support = "/v1/contracts/sup-d/months/2026-10/support"
    status, body, _ = server.request("GET", support, token=READ_TOKEN)
    assert status == 200, body
    assert body == ledger_cli(module_store, "support", "--contract", "sup-d", "--month", "2026-10",
                              "--format", "json")
    report = check(body, "SupportReport")
    assert [t["kind"] for t in report["targets"]] == ["mean", "per_ticket"]
    assert [t["ticket"] for t in report["tickets"]] == ["T-1", "T-2"]
    for query, point in (("", ()), (f"?position={registered + 1}", ("--position", str(registered + 1)))):
        status, body, headers = server.request("GET", support + query, token=READ_TOKEN, accept=browser)
        assert headers["content-type"] == "text/html; charset=utf-8"
        # The page of `ledger support --format html`, at the replay point if one.
        assert body == ledger_cli(module_store, "support", "--contract", "sup-d", "--month", "2026-10",
                                  *point, "--format", "html")
        assert b'data-ticket="T-1"' in body
    status, body, _ = server.request("GET", support + f"?position={registered}", token=READ_TOKEN)
    assert check(body, "SupportReport")["tickets"] == []  # as it stood before the tickets
    for path, code, message in [(support.replace("sup-d", "nope"), 404, "nope"),
                                (support + "?as_of=yesterday", 400, "as_of"),
                                (support + "?color=red", 400, "color")]:
        status, body, _ = server.request("GET", path, token=READ_TOKEN)
        assert status == code
        assert message in check(body, "Error")["error"]
    assert server.request("GET", support)[0] == 200  # the write token reads
    assert server.request("GET", support, token=None)[0] == 401


@pytest.mark.parametrize(("accept", "html"), [
    ("text/html", True), ("text/html,application/xhtml+xml,*/*;q=0.8", True), ("", False), ("*/*", False),
    ("application/json", False), ("text/*", False), ("text/html;q=0", False),
    ("text/html;q=0.5,application/json", False), ("application/json;q=0.5,text/html", True),
    ("text/html;q=x", False), ("TEXT/HTML", True),
])
def test_wants_html(accept: str, html: bool) -> None:
    assert wants_html(accept) is html


def test_checkpoint_and_proofs_are_the_cli_bytes(server: ServerProcess, module_store: str) -> None:
    """Section 7 over HTTP: the bytes `ledger checkpoint` and `ledger proof` print (builds with issue 19)."""
    hook = webhook(alert("cp1", probe="paris", service="workspace"))
    assert server.request("POST", "/v1/hooks/alertmanager", hook)[0] == 200
    last = json.loads(ledger_cli(module_store, "events").splitlines()[-1])["position"]
    cases = [
        ("/v1/checkpoint", ("checkpoint",), "Checkpoint"),
        ("/v1/checkpoint?size=1", ("checkpoint", "--size", "1"), "Checkpoint"),
        ("/v1/proofs/inclusion?position=1", ("proof", "inclusion", "--position", "1"), "Inclusion"),
        (f"/v1/proofs/inclusion?position=2&size={last}",
         ("proof", "inclusion", "--position", "2", "--size", str(last)), "Inclusion"),
        (f"/v1/proofs/consistency?from=1&to={last}",
         ("proof", "consistency", "--from", "1", "--to", str(last)), "Consistency"),
    ]
    for path, args, schema in cases:
        status, body, _ = server.request("GET", path, token=READ_TOKEN)
        assert status == 200, (path, body)
        assert body == ledger_cli(module_store, *args), path
        check(body, schema)
    assert check(server.request("GET", "/v1/checkpoint", token=READ_TOKEN)[1], "Checkpoint")["size"] == last
    for path, message in [
        ("/v1/proofs/inclusion", "`position`: missing"),
        (f"/v1/proofs/inclusion?position={last + 1}", "outside the log"),
        ("/v1/proofs/consistency?from=2&to=1", "after"),
        (f"/v1/checkpoint?size={last + 1}", "beyond the log"),
        ("/v1/checkpoint?size=%C2%B2", "size '²'"),  # a digit to isdigit(), not to int()
        ("/v1/proofs/consistency?from=1&to=2&at=3", "unknown query parameter `at`"),
    ]:
        status, body, _ = server.request("GET", path, token=READ_TOKEN)
        assert status == 400, (path, body)
        assert message in check(body, "Error")["error"], path
    assert server.request("GET", "/v1/checkpoint", token=None)[0] == 401


def test_serving_runtime() -> None:
    """Once serving: start-up's objects frozen, a young generation of GC_YOUNG, the lock asked for sooner."""
    code = ("import gc, sys\n"
            "from cli.serve import GC_YOUNG, SWITCH_INTERVAL, serving_runtime\n"
            "kept = [[n] for n in range(5000)]\n"
            "before = gc.get_freeze_count()\n"
            "serving_runtime()\n"
            "print(gc.get_freeze_count() - before >= len(kept), gc.get_threshold()[0] == GC_YOUNG > 700,\n"
            "      sys.getswitchinterval() == SWITCH_INTERVAL < 0.005)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, check=True)
    assert out.stdout.split() == [b"True", b"True", b"True"], out


MONTH = "/v1/contracts/sla-a-2026/months/2026-10"


@pytest.mark.parametrize("path", [
    MONTH + "?position=1&position=2",
    MONTH + "?as_of=2026-10-05T00:00:00Z&as_of=2026-10-06T00:00:00Z",
    MONTH + "/support?position=1&position=1",
    "/v1/events?after=0&after=1",
    "/v1/checkpoint?size=1&size=2",
    "/v1/proofs/inclusion?position=1&position=2",
])
def test_a_parameter_given_twice_is_bad_input(server: ServerProcess, path: str) -> None:
    """Not the last one silently: a replay point or a range must be the one the caller meant."""
    status, body, _ = server.request("GET", path, token=READ_TOKEN)
    assert status == 400, body
    name = path.rsplit("&", 1)[1].split("=")[0]
    assert check(body, "Error")["error"] == f"query parameter `{name}`: given more than once"


def test_an_offset_with_a_raw_plus_says_how_to_send_it(server: ServerProcess) -> None:
    status, body, _ = server.request("GET", MONTH + "?as_of=2026-10-04T11:15:00+02:00", token=READ_TOKEN)
    assert status == 400
    assert "%2B" in check(body, "Error")["error"]
    status, body, _ = server.request("GET", MONTH + "?as_of=2026-10-04T11:15:00%2B02:00", token=READ_TOKEN)
    assert "%2B" not in body.decode()


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/contracts/"), ("GET", MONTH + "/"), ("GET", "/openapi.json/"), ("POST", "/v1/events/"),
    ("GET", "/v1/events/"),
])
def test_a_trailing_slash_is_an_unknown_path(server: ServerProcess, method: str, path: str) -> None:
    """A JSON 404 as for any path the interface does not name (was an empty 307 redirect)."""
    status, body, headers = server.request(method, path, b"" if method == "POST" else None, token=None)
    assert status == 404, (status, body)
    assert headers["content-type"] == "application/json"
    assert check(body, "Error") == {"error": "Not Found"}
