"""Stress: 8 concurrent writer processes, 100,000 events, on both stores; then verify and count.

Run with: .venv/bin/pytest -m stress tests/stress -q -s
(excluded from the default run by the `stress` marker).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ledger.bootstrap import open_ledger
from ledger.verify import verify

REPO = Path(__file__).resolve().parents[2]
WRITERS = 8
ROUNDS = 5
PER_FILE = 2500  # 8 writers x 5 files x 2,500 = 100,000 distinct events
OVERLAP = 250  # events each file shares with the next writer's file (recorded once)
SINGLE_APPENDS = 3  # per writer, `ledger append` between imports
LINE = b'{"type":"probe_failed","service":"s%d","probe":"p%d","at":"2026-10-04T09:15:00Z","id":"%s"}\n'


def write_file(path: Path, writer: int, rnd: int) -> list[str]:
    ids = [f"w{writer}-r{rnd}-{i}" for i in range(PER_FILE)]
    # The first OVERLAP ids of the next writer's file, same round: imported twice, concurrently.
    shared = [f"w{(writer + 1) % WRITERS}-r{rnd}-{i}" for i in range(OVERLAP)]
    with path.open("wb") as f:
        for i, id_ in enumerate(ids + shared):
            f.write(LINE % (writer, i, id_.encode()))
    return ids


@pytest.mark.stress
def test_eight_writers_hundred_thousand_events(store_url: str, tmp_path: Path) -> None:
    files = {(w, r): tmp_path / f"w{w}-r{r}.ndjson" for w in range(WRITERS) for r in range(ROUNDS)}
    expected: set[str] = set()
    for (w, r), path in files.items():
        expected.update(write_file(path, w, r))
    faults: list[str] = []
    errors: list[str] = []

    def cmd(*args: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", "--store", store_url, *args]

    def writer(w: int) -> None:
        for r in range(ROUNDS):
            path = str(files[(w, r)])
            if w == 0 and r == 2:
                # Fault: an import killed with SIGKILL part way, then run again.
                with subprocess.Popen(cmd("import", "-q", path), cwd=REPO) as proc:
                    time.sleep(0.4)
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                faults.append(f"SIGKILL import w0-r2 (rc={proc.returncode})")
            p = subprocess.run(cmd("import", "-q", path), cwd=REPO, capture_output=True, check=False)
            if p.returncode != 0:
                errors.append(f"import {path}: {p.stderr.decode()}")
            if r < SINGLE_APPENDS:
                id_ = f"single-w{w}-r{r}"
                a = subprocess.run(cmd("append", "--json", (LINE % (w, 99999, id_.encode())).decode()),
                                   cwd=REPO, capture_output=True, check=False)
                if a.returncode != 0:
                    errors.append(f"append {id_}: {a.stderr.decode()}")
                expected.add(id_)

    led = open_ledger(store_url)
    led.close()  # create the schema once, before the writers race
    start = time.monotonic()
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    assert errors == []

    led = open_ledger(store_url)
    try:
        t0 = time.monotonic()
        result = verify(led.recorder)
        verify_s = time.monotonic() - t0
        assert result.ok, result.problem
        records = list(led.records())
        ids = [r.id for r in records]
        assert len(ids) == len(set(ids)), "an event was recorded twice"
        assert set(ids) == expected, "an event was lost (or invented)"
        assert [r.position for r in records] == list(range(1, len(expected) + 1))
        assert result.position == led.recorder.last_position() == len(expected)
    finally:
        led.close()
    backend = store_url.split(":", 1)[0]
    print(f"\nSTRESS {backend}: writers={WRITERS} events={len(expected)} "
          f"(+{WRITERS * ROUNDS * OVERLAP} duplicate lines) seconds={elapsed:.1f} "
          f"events/s={len(expected) / elapsed:.0f} verify_s={verify_s:.1f} faults={faults} "
          "lost=0 duplicated=0")


POLICY = """\
[contract]
id = "live-{n}"
customer = "Live {n}"
service = "s{n}"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "100.00"

[availability]
target = "99.9"
outage_when = "any"
probes = ["p0", "p1", "p2"]

[credits]
tiers = [{{ below = "99.9", percent = "10" }}]
"""


@pytest.mark.stress
def test_live_operations_under_load(store_url: str, tmp_path: Path) -> None:
    """Eight importers, a follower, a rebuild in the middle, verify and a report loop, all at once.

    At the end nothing is lost or doubled, positions are gap-free, verify passes, the view
    equals `ledger report` for every row it holds, and no process of the run is left.
    """
    from click.testing import CliRunner

    from tests.integration.test_projection_safety import tracked
    from tests.integration.test_reporting import assert_tables_match_reports

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    files = {(w, r): tmp_path / f"w{w}-r{r}.ndjson" for w in range(WRITERS) for r in range(ROUNDS)}
    expected: set[str] = set()
    for (w, r), path in files.items():
        expected.update(write_file(path, w, r))

    def cmd(*args: str) -> list[str]:
        return [sys.executable, "-m", "cli.main", "--store", store_url, *args]

    def run(*args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(cmd(*args), cwd=REPO, env=env, capture_output=True, check=False)

    assert run("init").returncode == 0
    for n in range(WRITERS):
        policy = tmp_path / f"live-{n}.toml"
        policy.write_text(POLICY.format(n=n))
        p = run("contract", "register", str(policy))
        assert p.returncode == 0, p.stderr
    errors: list[str] = []
    done = threading.Event()
    counts = {"verify": 0, "report": 0, "rebuild": 0}

    def loop(name: str, *args: str) -> None:
        while not done.is_set():
            p = run(*args)
            if p.returncode != 0:
                errors.append(f"{name}: rc={p.returncode} {p.stderr.decode()[-500:]}")
            counts[name] += 1

    def writer(w: int) -> None:
        for r in range(ROUNDS):
            p = run("import", "-q", str(files[(w, r)]))
            if p.returncode != 0:
                errors.append(f"import w{w}-r{r}: {p.stderr.decode()}")
            if w == 0 and r == ROUNDS // 2:
                b = run("projections", "rebuild")  # in the middle, while the others import
                if b.returncode != 0:
                    errors.append(f"rebuild: {b.stderr.decode()}")
                counts["rebuild"] += 1

    follower = subprocess.Popen(cmd("projections", "run", "--interval", "0.2"), cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    loops = [threading.Thread(target=loop, args=("verify", "verify")),
             threading.Thread(target=loop, args=("report", "report", "--contract", "live-0",
                                                  "--month", "2026-10", "--format", "json"))]
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    start = time.monotonic()
    try:
        for t in [*loops, *writers]:
            t.start()
        for t in writers:
            t.join()
        elapsed = time.monotonic() - start
        done.set()
        for t in loops:
            t.join()
        led = open_ledger(store_url, create=False)
        try:
            head = led.recorder.last_position()
            deadline = time.monotonic() + 300
            while tracked(store_url) < head and time.monotonic() < deadline:
                assert follower.poll() is None, follower.communicate()[1]
                time.sleep(0.2)
            lag_s = time.monotonic() - start - elapsed
            assert tracked(store_url) == head, "the follower did not catch up"
            follower.send_signal(signal.SIGTERM)
            _, err = follower.communicate(timeout=30)
            assert follower.returncode == 0, err
            assert errors == []
            result = verify(led.recorder)
            assert result.ok, result.problem
            records = list(led.records())
            ids = [r.id for r in records if r.id.startswith("w")]
            assert len(ids) == len(set(ids)), "an event was recorded twice"
            assert set(ids) == expected, "an event was lost (or invented)"
            assert [r.position for r in records] == list(range(1, head + 1))
        finally:
            led.close()
        rows = assert_tables_match_reports(store_url, CliRunner(), rebuilt=False)
        assert rows > 0
    finally:
        done.set()
        if follower.poll() is None:
            follower.kill()
        follower.communicate()  # reaps it and closes its pipes
    # No stray process: nothing of this run (importers, the follower, rebuild workers) is left.
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=True).stdout
    stray = [line for line in ps.splitlines() if store_url in line or str(tmp_path) in line]
    assert stray == []
    backend = store_url.split(":", 1)[0]
    print(f"\nLIVE {backend}: writers={WRITERS} events={len(expected)} seconds={elapsed:.1f} "
          f"events/s={len(expected) / elapsed:.0f} verify_rounds={counts['verify']} "
          f"report_rounds={counts['report']} rebuilds={counts['rebuild']} follower_lag_after_s={lag_s:.1f} "
          f"view_rows={rows} lost=0 duplicated=0 false_alarms=0")
