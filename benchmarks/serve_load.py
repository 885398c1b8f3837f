"""Load on ``ledger serve``: concurrent clients posting Alertmanager webhooks while a reader polls reports.

``python -m benchmarks.serve_load [--store URL] [--clients 50] [--alerts 20000] [--per-hook 1]``

Starts the server on a free loopback port (a subprocess, as in production), registers
contract sla-a (service ``workspace``), and has ``--clients`` threads post
``--alerts`` firing alerts in total (each webhook sent twice: the second must record
nothing) while one reader fetches the month's report in a loop. Then it checks:
every alert recorded once (counted from GET /v1/events), positions 1..N without a
gap, and ``ledger verify`` on the stopped store; and prints the write latencies.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WRITE_TOKEN, READ_TOKEN = "load-write-token", "load-read-token"


class ServerProcess:
    """``ledger serve`` on a free loopback port, in a subprocess."""

    def __init__(self, store: str, *args: str, env: dict[str, str] | None = None,
                 tokens: bool = True) -> None:
        environ = {**os.environ, **(env or {})}
        if tokens:
            environ |= {"LEDGER_WRITE_TOKEN": WRITE_TOKEN, "LEDGER_READ_TOKEN": READ_TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--store", store, "serve", "--listen", "127.0.0.1:0", *args],
            cwd=ROOT, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline().decode()
        if " on http://" not in line:
            rest = self.proc.stderr.read().decode()
            self.proc.wait()
            raise RuntimeError(f"ledger serve did not start: {line}{rest}")
        self.port = int(line.rsplit(":", 1)[1])

    def connection(self, timeout: float = 60) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None, token: str | None = WRITE_TOKEN,
                content_type: str = "application/json", accept: str | None = None
                ) -> tuple[int, bytes, dict[str, str]]:
        """One request on a fresh connection: status, body, headers."""
        conn = self.connection()
        try:
            headers = {"Content-Type": content_type}
            if accept is not None:
                headers["Accept"] = accept
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            conn.request(method, path, body, headers)
            resp = conn.getresponse()
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()

    def cpu_seconds(self) -> float | None:
        """CPU time the server has used so far (Linux), a figure the machine's other load does not change."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)

    def stop(self, timeout: float = 60) -> tuple[int, str]:
        """SIGTERM, then its exit code and the rest of its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode()


def webhook(alerts: Sequence[tuple[str, datetime, str]]) -> bytes:
    """An Alertmanager webhook of firing alerts: (fingerprint, startsAt, probe) each."""
    return json.dumps({"version": "4", "status": "firing", "receiver": "ledger", "alerts": [
        {"status": "firing", "labels": {"service": "workspace", "probe": probe, "alertname": "ProbeDown"},
         "annotations": {}, "startsAt": start.isoformat(), "endsAt": "0001-01-01T00:00:00Z",
         "fingerprint": fp} for fp, start, probe in alerts]}).encode()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


def run(store: str, clients: int, alerts: int, per_hook: int) -> dict[str, Any]:
    """The load; raises AssertionError if anything was lost, duplicated or out of order."""
    setup = subprocess.run([sys.executable, "-m", "cli.main", "--store", store, "contract", "register",
                            str(ROOT / "ledger" / "examples" / "sla-a.toml")], cwd=ROOT, capture_output=True)
    assert setup.returncode == 0, setup.stderr.decode()
    server = ServerProcess(store)
    latencies: list[float] = []
    failures: list[str] = []
    recorded = [0]
    lock = threading.Lock()
    done = threading.Event()
    start = datetime(2026, 10, 1, tzinfo=UTC)
    probes = ("paris", "frankfurt", "london")

    def client(n: int) -> None:
        conn = server.connection()
        mine = range(n, alerts, clients)
        hooks = [list(mine[i:i + per_hook]) for i in range(0, len(mine), per_hook)]
        for hook in hooks:
            body = webhook([(f"load{k:08d}", start + timedelta(seconds=k), probes[k % 3]) for k in hook])
            for attempt in range(2):  # the second send must record nothing
                t0 = time.perf_counter()
                conn.request("POST", "/v1/hooks/alertmanager", body,
                             {"Content-Type": "application/json", "Authorization": f"Bearer {WRITE_TOKEN}"})
                resp = conn.getresponse()
                answer = resp.read()
                elapsed = time.perf_counter() - t0
                with lock:
                    latencies.append(elapsed)
                    if resp.status != 200:
                        failures.append(f"{resp.status} {answer[:200]!r}")
                        continue
                    got = json.loads(answer)
                    if attempt == 0:
                        recorded[0] += got["imported"]
                    elif got["imported"] != 0 or got["already_recorded"] != len(hook):
                        failures.append(f"re-sent webhook recorded something: {got}")
        conn.close()

    reads = [0]

    def reader() -> None:
        conn = server.connection()
        while not done.is_set():
            conn.request("GET", "/v1/contracts/sla-a-2026/months/2026-10",
                         headers={"Authorization": f"Bearer {READ_TOKEN}"})
            resp = conn.getresponse()
            resp.read()
            if resp.status != 200:
                failures.append(f"report: {resp.status}")
            reads[0] += 1
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    poller = threading.Thread(target=reader)
    poller.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    done.set()
    poller.join()
    status, body, _ = server.request("GET", "/v1/events?after=0", token=READ_TOKEN)
    cpu = server.cpu_seconds()
    code, err = server.stop()
    assert status == 200, status
    assert code == 0, (code, err)
    events = [json.loads(line) for line in body.splitlines()]
    positions = [e["position"] for e in events]
    fingerprints = [e["id"].split(":")[1] for e in events if e["type"] == "probe_failed"]
    verify = subprocess.run([sys.executable, "-m", "cli.main", "--store", store, "verify"], cwd=ROOT,
                            capture_output=True)
    assert not failures, failures[:5]
    assert positions == list(range(1, len(events) + 1)), "positions are not 1..N"
    assert len(fingerprints) == alerts == len(set(fingerprints)) == recorded[0], (
        len(fingerprints), len(set(fingerprints)), recorded[0])
    assert verify.returncode == 0, verify.stdout.decode() + verify.stderr.decode()
    ms = [x * 1000 for x in latencies]
    return {"clients": clients, "alerts": alerts, "per_hook": per_hook, "writes": len(ms),
            "reports_read": reads[0], "wall_s": round(wall, 2),
            "p50_ms": round(percentile(ms, 0.50), 2), "p99_ms": round(percentile(ms, 0.99), 2),
            "max_ms": round(max(ms), 2), "server_cpu_s": cpu,
            "load_avg_1m": round(os.getloadavg()[0], 1)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", help="store URL (default: a fresh SQLite file)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--per-hook", type=int, default=1, help="alerts per webhook")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or f"sqlite:///{tmp}/load.db"
        result = run(store, args.clients, args.alerts, args.per_hook)
    print(" ".join(f"{k}={v}" for k, v in result.items()))
    print(f"serve_load: write latency p99 {result['p99_ms']} ms (target < 50 ms): "
          + ("PASS" if result["p99_ms"] < 50 else "FAIL"))


if __name__ == "__main__":
    main()
