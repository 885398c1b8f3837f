"""Load on ``ledger serve``: concurrent clients posting Alertmanager webhooks while a reader polls reports.

``python -m benchmarks.serve_load [--store sqlite|postgres|URL] [--clients 50] [--alerts 20000]
[--per-hook 1] [--against REV --rounds 3]``

Starts the server on a free loopback port (a subprocess, as in production), registers
contract sla-a (service ``workspace``), and has ``--clients`` threads post
``--alerts`` firing alerts in total (each webhook sent twice: the second must record
nothing) while one reader fetches the month's report in a loop (back to back unless
``--poll-every``). Then it checks:
every alert recorded once (counted from GET /v1/events), positions 1..N without a
gap, and ``ledger verify`` on the stopped store; and prints the write latencies and
the CPU seconds of the server's process, of its read workers and (PostgreSQL) of the
database's backends serving each (``pg_server_cpu_s``, ``pg_workers_cpu_s``: sampled
from ``pg_stat_activity`` and ``/proc`` every half second, so readable only where the
benchmark may read the backends' ``/proc``, as root or as the database's user), and
the same per write, and the CPU of this benchmark's own client threads (``clients``):
figures that the machine's other load changes far less than the latencies. The clients
share the machine with the server: on 2 cores their CPU is part of what a write waits for.

``--store sqlite`` (the default) and ``--store postgres`` give every run a fresh store
(a SQLite file, a scratch database on ``--pg-admin``); a URL is used as it is (one run).
``--against REV`` is the baseline: the server of git revision REV (``git archive``)
runs the same load on a fresh store of the same kind, alternating with this tree's,
``--rounds`` times each; the medians and their ratio are printed. Wall-clock figures
depend on the machine's other load (printed with each run): compare within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.measure import compile_project, measured_env

ROOT = Path(__file__).resolve().parent.parent
WRITE_TOKEN, READ_TOKEN = "load-write-token", "load-read-token"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class ServerProcess:
    """``ledger serve`` on a free loopback port, in a subprocess."""

    def __init__(self, store: str, *args: str, env: dict[str, str] | None = None,
                 tokens: bool = True, root: Path = ROOT, measured: bool = False) -> None:
        environ = {**(measured_env() if measured else os.environ), **(env or {})}
        if tokens:
            environ |= {"LEDGER_WRITE_TOKEN": WRITE_TOKEN, "LEDGER_READ_TOKEN": READ_TOKEN}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "--store", store, "serve", "--listen", "127.0.0.1:0", *args],
            cwd=root, env=environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
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

    def cpu_seconds(self) -> tuple[float, float] | None:
        """CPU seconds used so far by the server's process and by its child processes (the read workers).

        Linux only (None elsewhere); figures the machine's other load changes far less than wall time.
        """
        def cpu(pid: int) -> float:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        try:
            main = cpu(self.proc.pid)
            tasks = Path(f"/proc/{self.proc.pid}/task").glob("*/children")
            workers = sum(cpu(int(child)) for task in tasks for child in task.read_text().split())
        except OSError:
            return None
        return round(main, 2), round(workers, 2)

    def pids(self) -> set[int]:
        """The server's process and its children (the read workers)."""
        found = {self.proc.pid}
        try:
            for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
                found |= {int(child) for child in task.read_text().split()}
        except OSError:
            pass
        return found

    def stop(self, timeout: float = 60) -> tuple[int, str]:
        """SIGTERM, then its exit code and the rest of its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err.decode()


def _cpu_of(pid: int) -> float | None:
    """CPU seconds (user + system) of process ``pid`` so far; None if it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


_LEDGER_PID = re.compile(r"ledger\[([0-9]+)\]")
BACKENDS = ("SELECT pid, application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")


class BackendCpu:
    """CPU seconds of the PostgreSQL backends of a store, sampled while a load runs.

    Every ``every`` seconds: the backends connected to the store's database (from
    ``pg_stat_activity``, this sampler's own left out), and their CPU so far from
    ``/proc``; each backend's last figure counts. Each is the server's or a worker's by
    the process id in its application name (``ledger[PID]``, what the ledger sets). A
    backend that ends between two samples loses at most half a second of its CPU; the
    server's and the workers' connections are pooled and last the whole run.
    """

    def __init__(self, url: str, every: float = 0.5) -> None:
        self.url = url
        self.every = every
        self.seen: dict[int, tuple[int | None, float]] = {}  # backend pid: (ledger pid, CPU)
        self.readable = True
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> BackendCpu:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    def _run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while True:
                rows = conn.execute(BACKENDS).fetchall()
                for pid, name in rows:
                    cpu = _cpu_of(pid)
                    if cpu is None:
                        self.readable = False
                        continue
                    owner = _LEDGER_PID.match(name or "")
                    self.seen[pid] = (int(owner[1]) if owner else None, cpu)
                if self.done.wait(self.every):
                    return

    def split(self, server: int) -> tuple[float, float] | tuple[None, None]:
        """CPU seconds of the backends of the server's own connections, and of all the others."""
        if not self.readable:
            return None, None
        mine = sum(cpu for owner, cpu in self.seen.values() if owner == server)
        return round(mine, 2), round(sum(cpu for _, cpu in self.seen.values()) - mine, 2)


def webhook(alerts: Sequence[tuple[str, datetime, str]]) -> bytes:
    """An Alertmanager webhook of firing alerts: (fingerprint, startsAt, probe) each."""
    return json.dumps({"version": "4", "status": "firing", "receiver": "ledger", "alerts": [
        {"status": "firing", "labels": {"service": "workspace", "probe": probe, "alertname": "ProbeDown"},
         "annotations": {}, "startsAt": start.isoformat(), "endsAt": "0001-01-01T00:00:00Z",
         "fingerprint": fp} for fp, start, probe in alerts]}).encode()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


def run(store: str, clients: int, alerts: int, per_hook: int, root: Path = ROOT, measured: bool = False,
        python_path: str | None = None, poll_every: float = 0.0) -> dict[str, Any]:
    """The load on the tree ``root``'s server; AssertionError if anything was lost, doubled or misplaced."""
    env = measured_env() if measured else None
    server_env = {"PYTHONPATH": python_path} if python_path else None
    setup = subprocess.run([sys.executable, "-m", "cli.main", "--store", store, "contract", "register",
                            str(root / "ledger" / "examples" / "sla-a.toml")], cwd=root, capture_output=True,
                           env=env)
    assert setup.returncode == 0, setup.stderr.decode()
    server = ServerProcess(store, root=root, measured=measured, env=server_env)
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
            done.wait(poll_every)
        conn.close()

    load_before = os.getloadavg()[0]
    backends = BackendCpu(store) if store.startswith(("postgresql:", "postgres:")) else None
    with backends or contextlib.nullcontext():
        own = resource.getrusage(resource.RUSAGE_SELF)
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
        load_after = os.getloadavg()[0]
        used = resource.getrusage(resource.RUSAGE_SELF)
    client_cpu = round(used.ru_utime + used.ru_stime - own.ru_utime - own.ru_stime, 2)
    cpu = server.cpu_seconds()  # the load's, before the events are read back
    try:
        status, body, _ = server.request("GET", "/v1/events?after=0", token=READ_TOKEN)
    except OSError as exc:  # the server is gone: say how it ended
        code, err = server.stop()
        raise RuntimeError(f"ledger serve ended (exit {code}) during the load: {exc}\n{err}") from None
    code, err = server.stop()
    assert status == 200, status
    assert code == 0, (code, err)
    events = [json.loads(line) for line in body.splitlines()]
    positions = [e["position"] for e in events]
    fingerprints = [e["id"].split(":")[1] for e in events if e["type"] == "probe_failed"]
    verify = subprocess.run([sys.executable, "-m", "cli.main", "--store", store, "verify"], cwd=root,
                            capture_output=True, env=env)
    assert not failures, failures[:5]
    assert positions == list(range(1, len(events) + 1)), "positions are not 1..N"
    assert len(fingerprints) == alerts == len(set(fingerprints)) == recorded[0], (
        len(fingerprints), len(set(fingerprints)), recorded[0])
    assert verify.returncode == 0, verify.stdout.decode() + verify.stderr.decode()
    ms = [x * 1000 for x in latencies]
    main_cpu, workers_cpu = cpu if cpu is not None else (None, None)
    pg_server, pg_workers = backends.split(server.proc.pid) if backends is not None else (None, None)
    cpus = {"server": main_cpu, "workers": workers_cpu, "pg_server": pg_server, "pg_workers": pg_workers,
            "clients": client_cpu}
    return {"clients": clients, "alerts": alerts, "per_hook": per_hook, "writes": len(ms),
            "reports_read": reads[0], "wall_s": round(wall, 2),
            "p50_ms": round(percentile(ms, 0.50), 2), "p90_ms": round(percentile(ms, 0.90), 2),
            "p99_ms": round(percentile(ms, 0.99), 2), "max_ms": round(max(ms), 2),
            **{f"{k}_cpu_s": v for k, v in cpus.items()},
            **{f"{k}_cpu_ms_per_write": round(1000 * v / len(ms), 3) for k, v in cpus.items() if v},
            "groups": len({e["recorded_at"] for e in events if e["type"] == "probe_failed"}),
            "load_avg_1m": f"{load_before:.1f}-{load_after:.1f}"}


@contextmanager
def fresh_store(kind: str, tmp: Path, n: int, pg_admin: str) -> Iterator[str]:
    """A new empty store for run ``n``: a SQLite file, a scratch PostgreSQL database, or the URL given."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp}/load{n}.db"
    elif kind == "postgres":
        import psycopg

        name = f"serve_load_{os.getpid()}_{n}"
        with psycopg.connect(pg_admin, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield pg_admin.rsplit("/", 1)[0] + "/" + name
        finally:
            with psycopg.connect(pg_admin, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    else:
        yield kind


def _median(results: list[dict[str, Any]], key: str) -> float:
    return round(float(statistics.median(r[key] for r in results)), 2)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", default="sqlite", help="sqlite, postgres (fresh for every run) or a URL")
    parser.add_argument("--pg-admin", default=PG_ADMIN, help="where --store postgres creates its databases")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--alerts", type=int, default=20_000)
    parser.add_argument("--per-hook", type=int, default=1, help="alerts per webhook")
    parser.add_argument("--poll-every", type=float, default=0.0, metavar="SECONDS",
                        help="the reader's pause between two reports (default: none, it polls back to back)")
    parser.add_argument("--against", metavar="REV", help="git revision of the baseline server (or its tree)")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each tree (alternating)")
    parser.add_argument("--baseline-without", default="httptools,uvloop", metavar="MODULES",
                        help="modules the baseline server cannot import (not among REV's dependencies; "
                             "uvicorn then uses h11 and asyncio's loop, as REV did)")
    args = parser.parse_args(argv)
    if args.store not in ("sqlite", "postgres") and (args.against or args.rounds > 1):
        parser.error("--against and --rounds need a fresh store per run: --store sqlite or postgres")
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"this": ROOT}
        paths: dict[str, str | None] = {"this": None, "baseline": None}
        if args.against:
            base = Path(args.against)
            if not base.is_dir():
                base = Path(tmp) / "baseline"
                base.mkdir()
                archive = subprocess.run(["git", "archive", args.against], cwd=ROOT, capture_output=True,
                                         check=True)
                subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
            trees = {"baseline": base, "this": ROOT}
            subprocess.run([sys.executable, "-m", "compileall", "-q", "ledger", "projections", "cli"],
                           cwd=base, check=True, env=measured_env())
            blocked = [m for m in args.baseline_without.split(",") if m]
            if blocked:  # a sitecustomize that makes them unimportable, for the baseline server only
                (Path(tmp) / "without").mkdir()
                (Path(tmp) / "without" / "sitecustomize.py").write_text(
                    "import sys\n" + "".join(f"sys.modules[{m!r}] = None  # type: ignore\n" for m in blocked))
                paths["baseline"] = str(Path(tmp) / "without")
        compile_project()
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        n = 0
        for _ in range(args.rounds):
            for name, root in trees.items():
                n += 1
                with fresh_store(args.store, Path(tmp), n, args.pg_admin) as store:
                    result = run(store, args.clients, args.alerts, args.per_hook, root=root, measured=True,
                                 python_path=paths[name], poll_every=args.poll_every)
                results[name].append(result)
                print(f"{name}: " + " ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    mine = results["this"]
    p99 = _median(mine, "p99_ms")
    print(f"serve_load {args.store}: medians of {len(mine)}: write p50 {_median(mine, 'p50_ms')} ms, "
          f"p99 {p99} ms; {_cpu_line(mine)}")
    if args.against:
        base_runs = results["baseline"]
        base_p99 = _median(base_runs, "p99_ms")
        base_p50 = _median(base_runs, "p50_ms")
        print(f"serve_load {args.store}: baseline {args.against}: write p50 {base_p50} ms, "
              f"p99 {base_p99} ms; {_cpu_line(base_runs)}")
        ratios = [f"{key} {a / b:.2f}" for key in CPU_KEYS
                  if (a := _cpu_median(mine, key)) and (b := _cpu_median(base_runs, key))]
        print(f"serve_load {args.store}: ratios (this / baseline): p99 {p99 / base_p99:.2f}, "
              f"CPU per write: {', '.join(ratios)}")
    print(f"serve_load {args.store}: write latency p99 {p99} ms (target < 50 ms): "
          + ("PASS" if p99 < 50 else "FAIL"))


CPU_KEYS = ("server", "workers", "pg_server", "pg_workers", "clients")


def _cpu_median(results: list[dict[str, Any]], key: str) -> float | None:
    """The median CPU milliseconds per write of ``key`` (None where it was not measured)."""
    values = [r[f"{key}_cpu_ms_per_write"] for r in results if f"{key}_cpu_ms_per_write" in r]
    return round(float(statistics.median(values)), 3) if values else None


def _cpu_line(results: list[dict[str, Any]]) -> str:
    parts = [f"{key} {value}" for key in CPU_KEYS if (value := _cpu_median(results, key)) is not None]
    total = sum(v for key in CPU_KEYS[:-1] if (v := _cpu_median(results, key)) is not None)
    return f"CPU ms per write (medians): {', '.join(parts)}; the ledger's total {round(total, 3)}"

if __name__ == "__main__":
    main()
