"""Projections that cannot be raced or poisoned (issue 15), with real processes on both stores.

A rebuild and a follower fenced against each other; a killed rebuild's workers gone with
it; a month the fold fails on recorded, not fatal; a follower surviving a PostgreSQL
restart and stopping promptly in the middle of a long catch-up.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import psycopg
import pytest
from click.testing import CliRunner

from benchmarks import generate
from cli.demo.run import run_demo
from ledger import workers
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.events import ProbeFailed
from ledger.policy_check import load_policy
from projections import tracked as reporting
from projections.tracked import rebuilding
from tests.conftest import StepClock
from tests.integration import projection_hooks as hooks
from tests.integration.test_reporting import (
    assert_tables_match_reports,
    held_pairs,
    ledger_cli,
    query,
    register,
)
from tests.lines import import_lines
from tests.pgserver import scratch_database, throwaway_cluster

ROOT = Path(__file__).resolve().parents[2]
SERVICES = 6
PER_SERVICE_MONTH = 2000  # generated lines per service and month: a few months of history


# --- helpers ---------------------------------------------------------------------------


def register_generated(ledger: Ledger) -> None:
    """The generator's contracts, and the view's (empty) tables."""
    for i in range(SERVICES):
        toml = generate.contract_toml(i).encode()
        ledger.register_contract(load_policy(toml, source=f"{generate.contract_id(i)}.toml"))
    reporting.open_view(ledger.recorder)


def generated(events: int) -> list[str]:
    return list(generate.generate_lines(events, SERVICES, 1, per_service_month=PER_SERVICE_MONTH))


def ledger_process(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "--store", url, *args],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def tracked(url: str) -> int:
    """The view's tracking position, read as a reporting job would."""
    table = "tracking" if url.startswith("sqlite") else "reporting_tracking"
    found = query(url, f"SELECT notification_id FROM {table} WHERE application_name = 'ledger'")  # noqa: S608
    return int(found[0]["notification_id"]) if found else 0


def status_position(runner: CliRunner, url: str) -> int:
    out = ledger_cli(runner, url, "projections", "status").stdout
    found = re.match(r"reporting\tposition=(\d+)\t", out)
    assert found, out
    return int(found[1])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60,
             proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the process ended (rc={proc.returncode}) before {what}: {proc.communicate()[1]}")
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting until {what}")


def stopped(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM, then what it printed; it must have exited cleanly."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out, err


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that never comes is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def backends(url: str) -> set[int]:
    """Server processes serving this database, other than the one asking."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                            "AND pid <> pg_backend_pid()").fetchall()
    return {r[0] for r in rows}


def listening(url: str) -> bool:
    """A session of this database waits for notifications (a follower past its catch-up)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND query LIKE 'LISTEN %'").fetchone()
    return row is not None and row[0] > 0


def rows_held(url: str) -> set[tuple[str, str]]:
    found = query(url, "SELECT contract, month FROM report_monthly_availability")
    return {(r["contract"], r["month"]) for r in found}


# --- 1. rebuild and follower fenced ------------------------------------------------------


BASE = 30_000  # events before the follower starts: a rebuild of them takes a second or two
TRICKLE = 3  # events per import while the rebuild runs: few enough for the follower to keep up


def slow_rebuild(url: str, marker: Path) -> subprocess.Popen[str]:
    """`ledger projections rebuild`, its read of the contracts (just after the head) 2 s slower.

    As on a store with many contracts, and observable: ``marker`` appears when the
    rebuild has read its head. Imports landing then are after the rebuild's head.
    """
    code = (
        "import sys, time; from pathlib import Path; from ledger.application import Ledger; "
        "real = Ledger.contracts; "
        f"Ledger.contracts = lambda self, upto=None: (Path({str(marker)!r}).touch(), time.sleep(2), "
        "real(self, upto))[2]; "
        "from cli.main import main; main()"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, "--store", url, "projections", "rebuild"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_rebuild_while_a_follower_runs_loses_nothing_and_never_goes_back(
    ledger: Ledger, store_url: str, runner: CliRunner, tmp_path: Path
) -> None:
    register_generated(ledger)
    lines = generated(BASE + 2 * PER_SERVICE_MONTH)
    import_lines(ledger, lines[:BASE])
    reporting.rebuild(ledger)  # the follower starts from the view, not from nothing
    # BASE starts a (service, month) chunk of the generated lines: the next chunk is another service.
    one, other = lines[BASE : BASE + 4 * TRICKLE], lines[BASE + PER_SERVICE_MONTH :]
    assert {msgspec.json.decode(x)["service"] for x in one}.isdisjoint(
        msgspec.json.decode(x)["service"] for x in other[: 3 * TRICKLE])
    follower = ledger_process(store_url, "projections", "run", "--interval", "0.1")
    seen: list[int] = []

    def caught_up() -> bool:
        seen.append(status_position(runner, store_url))
        return seen[-1] == ledger.recorder.last_position()

    def trickle(batch: list[str]) -> None:
        import_lines(ledger, batch)
        seen.append(status_position(runner, store_url))
        time.sleep(0.1)

    try:
        for i in range(3):
            trickle(one[i * TRICKLE : (i + 1) * TRICKLE])
        wait_for(caught_up, "the follower caught up", proc=follower)
        marker = tmp_path / "head-read"
        head = ledger.recorder.last_position()
        rebuild = slow_rebuild(store_url, marker)
        wait_for(marker.exists, "the rebuild read its head", proc=rebuild)
        # Facts after the rebuild's head. An unfenced follower writes them at once, and the
        # rebuild then writes its older head over the follower's position and rows; fenced,
        # the follower waits for the rebuild and writes them after it.
        import_lines(ledger, one[3 * TRICKLE :])
        deadline = time.monotonic() + 1.5  # the rebuild sleeps 2 s after reading its head
        while not caught_up() and time.monotonic() < deadline:
            time.sleep(0.05)
        out, err = rebuild.communicate(timeout=120)
        assert rebuild.returncode == 0, err
        found = re.search(r"from (\d+) events", out)
        assert found, out
        assert int(found[1]) == head < ledger.recorder.last_position()
        # Then facts of another service only: nothing recomputes the first one's month again.
        for i in range(3):
            trickle(other[i * TRICKLE : (i + 1) * TRICKLE])
        wait_for(caught_up, "the follower caught up after the rebuild", proc=follower)
    finally:
        stopped(follower)
    assert seen == sorted(seen), "tracking went backwards"
    assert tracked(store_url) == ledger.recorder.last_position()
    assert assert_tables_match_reports(store_url, runner, rebuilt=False) == len(held_pairs(ledger))


def test_a_rebuild_refuses_to_move_tracking_back(ledger: Ledger, store_url: str) -> None:
    run_demo(ledger)
    view = reporting.open_view(ledger.recorder)
    head = ledger.recorder.last_position()
    reporting.rebuild(ledger)
    with pytest.raises(reporting.ProjectionError, match=f"at position {head}: refusing to move it back"):
        view.reset([], reporting.Tracking(reporting.APP_NAME, head - 1))
    with pytest.raises(reporting.ProjectionError, match="back to 0"):
        view.reset([], None)
    assert tracked(store_url) == head
    assert len(rows_held(store_url)) == 15


# --- 2. a killed rebuild's workers -------------------------------------------------------


def test_a_killed_rebuild_leaves_no_worker_and_no_connection(
    ledger: Ledger, store_url: str, tmp_path: Path
) -> None:
    run_demo(ledger)
    markers = tmp_path / "markers"
    markers.mkdir()
    # Workers forced on a small ledger (one task per service group), each hanging in its task.
    script = (
        "import sys; from projections import tracked as reporting; "
        "from projections.tracked import rebuilding; from ledger.bootstrap import open_ledger; "
        "from tests.integration import projection_hooks as hooks; rebuilding.GROUPS_PER_TASK = 1; "
        "rebuilding._evaluate_groups = hooks.stalled_evaluate_groups; "
        "reporting.rebuild(open_ledger(sys.argv[1], create=False), workers=2)"
    )
    pg = not store_url.startswith("sqlite")
    before = backends(store_url) if pg else set()
    proc = subprocess.Popen([sys.executable, "-c", script, store_url], cwd=ROOT, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), hooks.MARKERS: str(markers)},
                            stderr=subprocess.PIPE)
    pids: list[int] = []
    try:
        wait_for(lambda: len(list(markers.iterdir())) == 2, "both workers were running", proc=proc)
        pids = [int(p.name) for p in markers.iterdir()]
        assert all(alive(p) for p in pids)
        if pg:
            assert len(backends(store_url) - before) >= 3  # the parent's and each worker's
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        wait_for(lambda: not any(alive(p) for p in pids), "the workers ended", timeout=5)
        if pg:
            wait_for(lambda: not backends(store_url) - before, "their server connections ended", timeout=5)
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    # The dead rebuild's fence went with it: another rebuild runs.
    assert reporting.rebuild(ledger, workers=1).pairs == 15


def test_a_rebuild_forks_its_workers_from_a_server_it_stops(ledger: Ledger, store_url: str) -> None:
    # The workers come from a fork server that imported what they run (``_worker_context``); the
    # rebuild ends it and waits for it, so no process is left and the workers' CPU is this
    # process's children's. The rows are the one-process rebuild's.
    import multiprocessing.forkserver

    run_demo(ledger)
    reporting.rebuild(ledger, workers=1)
    one = rows_held(store_url)
    rebuilding_groups = rebuilding.GROUPS_PER_TASK
    rebuilding.GROUPS_PER_TASK = 1  # several tasks: the pool's path
    try:
        assert reporting.rebuild(ledger, workers=2).pairs == 15
    finally:
        rebuilding.GROUPS_PER_TASK = rebuilding_groups
    assert rows_held(store_url) == one
    server = getattr(multiprocessing.forkserver, "_forkserver")  # noqa: B009
    assert server._forkserver_pid is None
    assert not multiprocessing.active_children()
    # The CLI's early start names the recorder's module from the URL: the one the rebuild preloads.
    assert workers.recorder_module(store_url) == type(ledger.recorder).__module__


def test_a_command_that_used_worker_processes_ends_with_their_clean_up() -> None:
    # ``cli.main._leave``: no interpreter teardown once the rebuild's workers and their fork server are
    # gone, but the exit handlers (multiprocessing's removes its temporary directory); another command
    # that loaded multiprocessing returns to the usual exit.
    script = ("import sys; from multiprocessing import util; from cli.main import _leave; "
              "from ledger import workers; print(util.get_temp_dir(), flush=True); _leave(SystemExit(3)); "
              "print('returned without a stopped server', flush=True); workers.start_fork_server([]); "
              "workers.stop_fork_server(); _leave(SystemExit(3)); print('returned')")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 3
    temp = proc.stdout.split()[0]
    assert proc.stdout.splitlines()[1:] == ["returned without a stopped server"]  # an import's, say
    assert not Path(temp).exists()


def test_an_orphaned_worker_ends_by_its_watchdog_alone() -> None:
    # As where prctl is missing: the worker's thread sees its parent's pid change and ends it.
    child = ("import os, sys, time; from projections.tracked import rebuilding; sys.platform = 'other'; "
             "rebuilding._die_with_parent(os.getppid()); print('ready', flush=True); time.sleep(60)")
    parent = ("import os, subprocess, sys; "
              f"c = subprocess.Popen([sys.executable, '-c', {child!r}], stdout=subprocess.PIPE, text=True); "
              "ready = c.stdout.readline(); print(c.pid if ready else -1, flush=True); os._exit(0)")
    proc = subprocess.Popen([sys.executable, "-c", parent], cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    out, _ = proc.communicate(timeout=60)
    pid = int(out)
    assert pid > 0, "the worker did not start"
    try:
        wait_for(lambda: not alive(pid), "the orphaned worker ended", timeout=3)
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# --- 3. a month the fold fails on ------------------------------------------------------


def _a_pair(ledger: Ledger) -> tuple[str, str]:
    return sorted(held_pairs(ledger))[3]


def _status_json(runner: CliRunner, url: str) -> dict[str, object]:
    out = ledger_cli(runner, url, "projections", "status", "--format", "json").stdout
    found = msgspec.json.decode(out)
    assert isinstance(found, list)
    assert len(found) == 1
    assert isinstance(found[0], dict)
    return found[0]


def test_a_month_the_fold_fails_on_is_recorded_and_the_follower_goes_on(
    ledger: Ledger, store_url: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_demo(ledger)
    contract, month = pair = _a_pair(ledger)
    head = ledger.recorder.last_position()
    with monkeypatch.context() as m:
        hooks.install_fault(m, contract, month)
        out = ledger_cli(runner, store_url, "projections", "run", "--once")
        assert out.stdout == f"reporting at position {head}\n"
        status = ledger_cli(runner, store_url, "projections", "status").stdout
        assert status == (
            f"reporting\tposition={head}\thead={head}\tlag=0\tfailed=1\n"
            f"reporting\tfailed\t{contract}\t{month}\tposition={head}\tArithmeticError: injected\\nfault\n"
        )
        assert _status_json(runner, store_url) == {
            "projection": "reporting", "position": head, "head": head, "lag": 0, "failed": 1,
            "failures": [{"contract": contract, "month": month, "position": head,
                          "error": "ArithmeticError: injected\\nfault"}],
        }
        # Every other month is there and right; the failed one has no rows rather than stale ones.
        assert rows_held(store_url) == held_pairs(ledger) - {pair}
        assert assert_tables_match_reports(store_url, runner, rebuilt=False) == 14
        # Still failing at the next fact about it: recorded again, at the new position.
        probe = ProbeFailed(service=_service(ledger, contract), probe="eu-west",
                            at=_in_month(month), id="after-the-fault")
        ledger.append(probe)
        ledger_cli(runner, store_url, "projections", "run", "--once")
        again = _status_json(runner, store_url)
        assert again["failed"] == 1
        assert again["failures"] == [{"contract": contract, "month": month, "position": head + 1,
                                      "error": "ArithmeticError: injected\\nfault"}]
    # The fault fixed: the next evaluation of the month clears it.
    ledger.append(ProbeFailed(service=_service(ledger, contract), probe="eu-west", at=_in_month(month, 2),
                              id="fault-fixed"))
    ledger_cli(runner, store_url, "projections", "run", "--once")
    assert _status_json(runner, store_url)["failed"] == 0
    assert ledger_cli(runner, store_url, "projections", "status").stdout.endswith("lag=0\n")
    assert assert_tables_match_reports(store_url, runner, rebuilt=False) == len(held_pairs(ledger)) == 15


def _service(ledger: Ledger, contract: str) -> str:
    return ledger.contracts()[contract][-1].policy.contract.service


def _in_month(month: str, day: int = 1) -> datetime:
    year, mon = (int(x) for x in month.split("-"))
    return datetime(year, mon, 10 + day, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "workers"])
def test_a_rebuild_records_a_failing_month_and_writes_the_rest(
    ledger: Ledger, store_url: str, runner: CliRunner, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    run_demo(ledger)
    contract, month = pair = _a_pair(ledger)
    head = ledger.recorder.last_position()
    monkeypatch.setattr(rebuilding, "GROUPS_PER_TASK", 1)  # with workers: really shared out
    with monkeypatch.context() as m:
        if workers == 1:
            hooks.install_fault(m, contract, month)
        else:
            # The fault is in the workers only: this process evaluates nothing.
            m.setenv(hooks.FAIL_MONTH, f"{contract}/{month}")
            m.setattr(rebuilding, "_evaluate_groups", hooks.failing_evaluate_groups)
        result = reporting.rebuild(ledger, workers=workers)
    assert (result.pairs, result.failed) == (14, 1)
    assert _status_json(runner, store_url)["failures"] == [
        {"contract": contract, "month": month, "position": head, "error": "ArithmeticError: injected\\nfault"}
    ]
    assert rows_held(store_url) == held_pairs(ledger) - {pair}
    assert assert_tables_match_reports(store_url, runner, rebuilt=True) == 14
    out = ledger_cli(runner, store_url, "projections", "rebuild").stdout
    assert "failed" not in out
    assert _status_json(runner, store_url)["failed"] == 0
    assert assert_tables_match_reports(store_url, runner, rebuilt=True) == 15


def test_status_reads_a_view_made_before_failed_months_were_recorded(
        ledger: Ledger, store_url: str, runner: CliRunner) -> None:
    # A view an earlier version made has no report_failed_months: status reads it all the same.
    run_demo(ledger)
    ledger_cli(runner, store_url, "projections", "run", "--once")
    head = ledger.recorder.last_position()
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url[len("sqlite:///"):])
        with conn:
            conn.execute("DROP TABLE report_failed_months")
        conn.close()
    else:
        with psycopg.connect(store_url) as pg:  # a view, over two copies
            pg.execute("DROP VIEW report_failed_months")
            pg.execute("DROP TABLE report_failed_months__a, report_failed_months__b")
    out = ledger_cli(runner, store_url, "projections", "status").stdout
    assert out == f"reporting\tposition={head}\thead={head}\tlag=0\n"
    assert _status_json(runner, store_url)["failed"] == 0


def test_rebuild_names_its_failures(ledger: Ledger, store_url: str, runner: CliRunner,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    run_demo(ledger)
    hooks.install_fault(monkeypatch, *_a_pair(ledger))
    out = ledger_cli(runner, store_url, "projections", "rebuild").stdout
    assert out.startswith("rebuilt reporting: 14 contract-months from ")
    assert out.endswith("; 1 failed (see `ledger projections status`)\n")


# --- 4. restarts and stops -------------------------------------------------------------


def test_a_follower_reconnects_after_a_postgres_restart(runner: CliRunner, clock: StepClock) -> None:
    from cli.demo import demo_facts

    facts = demo_facts("2026-10")
    half = len(facts) // 2
    with throwaway_cluster() as cluster, scratch_database(cluster.url) as url:
        led = open_ledger(url, clock=clock)
        follower: subprocess.Popen[str] | None = None
        try:
            register(led)
            led.append_facts(facts[:half])
            ledger_cli(runner, url, "projections", "run", "--once")  # creates the view's tables
            follower = ledger_process(url, "projections", "run", "--interval", "0.2")
            wait_for(lambda: tracked(url) == led.recorder.last_position(), "the follower caught up",
                     proc=follower)
            wait_for(lambda: listening(url), "the follower listened for new facts", proc=follower)
            led.close()
            cluster.stop()  # fast shutdown: every session is ended, as in a restart
            time.sleep(2)  # the follower tries meanwhile
            assert follower.poll() is None, follower.communicate()[1]
            cluster.start()
            led = open_ledger(url, clock=clock)
            led.append_facts(facts[half:])
            head = led.recorder.last_position()
            wait_for(lambda: tracked(url) == head, "the follower caught up after the restart", proc=follower)
            out, err = stopped(follower)
        finally:
            if follower is not None and follower.poll() is None:
                follower.kill()
                follower.communicate()
            led.close()
        assert out == f"reporting at position {head}\n"
        attempts = err.splitlines()
        assert attempts, f"one line per reconnection attempt: {out!r} {err!r}"
        for n, line in enumerate(attempts, 1):
            assert re.fullmatch(r"projections run: connection lost \(.*\); reconnecting in [\d.]+ s "
                                rf"\(attempt {n}\)", line), line
        led = open_ledger(url, clock=clock)
        try:
            assert assert_tables_match_reports(url, runner, rebuilt=False) == len(held_pairs(led))
        finally:
            led.close()


def test_sigterm_stops_a_long_catch_up_at_a_page_boundary(
    ledger: Ledger, store_url: str, runner: CliRunner
) -> None:
    register_generated(ledger)
    import_lines(ledger, generated(40_000))
    head = ledger.recorder.last_position()
    follower = ledger_process(store_url, "projections", "run", "--interval", "5")
    try:
        wait_for(lambda: tracked(store_url) >= reporting.PAGE, "the first page was written", proc=follower)
        sent = time.monotonic()
        follower.send_signal(signal.SIGTERM)
        out, err = follower.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, err
    position = tracked(store_url)
    assert out == f"reporting at position {position}\n"
    assert position % reporting.PAGE == 0
    assert position < head
    assert took < 3.0, f"took {took:.1f} s to stop"
    # Rows and tracking together: a follower goes on from there to the same view as a rebuild's.
    ledger_cli(runner, store_url, "projections", "run", "--once")
    assert assert_tables_match_reports(store_url, runner, rebuilt=False) == len(held_pairs(ledger))
