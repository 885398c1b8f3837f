"""Measure the reporting view's follower (``ledger projections run``) and print one line per figure.

``python -m benchmarks.follower [--stores sqlite,postgres] [--contracts 1000,20000]
[--events 40000] [--per 100] [--rss-sizes 50000,500000] [--lags 15]``

For each store and contract count: a fresh store gets every contract in one append and
a follower writes their rows (timed apart: ``register``). Then a backlog of ``--events``
generated events is imported (the import alone: the first baseline), and while a second
process imports as many again, a follower in a process of its own (``ReportingProjection.catch_up``,
the pages ``projections run`` takes, started afresh on the view: it loads the groups the
backlog touches) catches up the backlog: the figure is backlog events applied per second while
that import lands. The second baseline, on the same store in the same run, is a raw read
and decode of the same rows (``read_records``): the follower can be no faster. The data
has ``--per`` events per service-month (the generator's default is 500), the same at 1,000
and at 20,000 contracts: the larger run has the same pages in a larger world. Then the
lag after a single append (median of ``--lags``). RSS: on a store of each size, rebuilt
to its head, then 1,000 more events imported, a follower process starts, applies them
and prints its peak RSS; the ratio of the two sizes is the growth.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from benchmarks import generate

PG_ADMIN: Final = os.environ.get("LEDGER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
IMPORT_BATCH: Final = 5_000
TARGET_EPS: Final = 20_000.0
TARGET_LAG_MS: Final = 200.0
TARGET_RSS: Final = 1.25


@contextmanager
def store(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh, empty store's URL (a PostgreSQL database dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / (uuid.uuid4().hex + '.db')}"
        return
    import psycopg

    name = "bench_follow_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def register(url: str, contracts: int) -> None:
    """Every contract of the generated data, in one append."""
    from ledger.bootstrap import open_ledger
    from ledger.events import ContractRegistered
    from ledger.policy import load_policy

    ledger = open_ledger(url)
    try:
        ledger.append_facts(
            ContractRegistered(policy=load_policy(generate.contract_toml(i).encode()))
            for i in range(contracts)
        )
    finally:
        ledger.close()


def lines(events: int, contracts: int, per: int) -> list[bytes]:
    # Live data: from the month before the clock's, as a follower meets it (a backfill of years
    # would make every contract's months up to today new rows, which is a rebuild's work).
    now = datetime.now(UTC)
    start = f"{now.year - (now.month == 1):04d}-{(now.month - 2) % 12 + 1:02d}"
    return [line.encode() for line in generate.generate_lines(events, contracts, 7, start=start,
                                                              per_service_month=per)]


IMPORT_CHILD: Final = """
import sys, time
from ledger.bootstrap import open_ledger
ledger = open_ledger(sys.argv[1])
print("importing", flush=True)
t0 = time.perf_counter()
with open(sys.argv[2], "rb") as f:
    ledger.import_file(f)
print(time.perf_counter() - t0)
ledger.close()
"""


def import_alone(url: str, data: list[bytes]) -> float:
    """Events/s of importing ``data`` in batches, nothing else running."""
    from ledger.bootstrap import open_ledger

    ledger = open_ledger(url)
    t0 = time.perf_counter()
    for i in range(0, len(data), IMPORT_BATCH):
        ledger.import_file(io.BytesIO(b"".join(data[i : i + IMPORT_BATCH])))
    rate = len(data) / (time.perf_counter() - t0)
    ledger.close()
    return rate


# The follower in a process of its own, as ``projections run`` is: catch up to the head it was
# given while the import lands; prints wall seconds, its CPU seconds, events applied, groups loaded.
FOLLOW_CHILD: Final = """
import sys, time
from ledger.bootstrap import open_ledger
from projections.tracked.projection import ReportingProjection
def position(projection):  # ``known.position`` in the follower before issue 17's groups
    known = getattr(projection, "known", None)
    return known.position if known is not None else projection.position
ledger = open_ledger(sys.argv[1])
head = int(sys.argv[2])
projection = ReportingProjection(ledger.recorder.open_view())
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.readline()
started, cpu = time.perf_counter(), time.process_time()
base = int(projection.view.max_tracking_id("ledger") or 0)
while position(projection) < head:
    projection.catch_up()  # pages up to the head as it moves: the import lands meanwhile
elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
state = getattr(projection, "state", None)  # (the follower before issue 17's groups has none)
print(elapsed, cpu, position(projection) - base, state.groups.loads if state is not None else -1)
ledger.close()
"""


def follow_while_importing(url: str, more: list[bytes], work: Path) -> tuple[float, float, float, float, int]:
    """Events/s a fresh follower process applies of the backlog while ``more`` lands from another process.

    Also the concurrent import's own events/s, the raw read+decode of the backlog, the
    follower's events per CPU second of its own process (what a core of its own would give;
    on PostgreSQL the server's work is not in it), and how many service groups it loaded.
    """
    from ledger.bootstrap import open_ledger
    from projections.tracked import run

    ledger = open_ledger(url)
    view = ledger.recorder.open_view()
    base = int(view.max_tracking_id("ledger") or 0)
    head = ledger.recorder.last_position()
    path = work / (uuid.uuid4().hex + ".ndjson")
    path.write_bytes(b"".join(more))
    follower = subprocess.Popen([sys.executable, "-c", FOLLOW_CHILD, url, str(head)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
    assert follower.stdin is not None
    assert follower.stdout is not None
    assert follower.stdout.readline().strip() == "ready"  # started and opened: not part of the figure
    child = subprocess.Popen([sys.executable, "-c", IMPORT_CHILD, url, str(path)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "importing"  # the import is under way: now follow
    follower.stdin.write("go\n")
    follower.stdin.flush()
    elapsed, cpu, applied, loads = follower.communicate()[0].split()[-4:]
    landed = float(child.communicate()[0].split()[-1])
    path.unlink()
    run(ledger, url, once=True)  # what landed meanwhile, before the lag is measured
    t0 = time.perf_counter()
    n = sum(1 for _ in ledger.recorder.read_records(base + 1, head))
    raw = n / (time.perf_counter() - t0)
    ledger.close()
    return ((head - base) / float(elapsed), len(more) / landed, raw, int(applied) / float(cpu), int(loads))


def lag(url: str, count: int, contracts: int) -> float:
    """Median seconds from a single append to the view's tracking reaching it."""
    from datetime import timedelta

    from ledger.bootstrap import open_ledger
    from ledger.events import ProbeFailed, ProbeRecovered
    from projections.tracked import run

    appender = open_ledger(url)
    follower = open_ledger(url)
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(follower, url), kwargs={"interval": 0.05, "stop": stop})
    thread.start()
    view = appender.recorder.open_view()
    at = datetime.now(UTC) - timedelta(hours=1)
    times = []
    try:
        while int(view.max_tracking_id("ledger") or 0) < appender.recorder.last_position():
            time.sleep(0.01)
        for i in range(count):
            svc = generate.service_name(i % contracts)
            cls = ProbeFailed if i % 2 == 0 else ProbeRecovered
            fact = cls(id=f"lag-{uuid.uuid4().hex}", service=svc, probe="lag",
                       at=at + timedelta(seconds=i))
            t0 = time.perf_counter()
            pos = appender.append(fact).last_position or 0
            while int(view.max_tracking_id("ledger") or 0) < pos:
                time.sleep(0.002)
            times.append(time.perf_counter() - t0)
    finally:
        stop.set()
        thread.join()
        appender.close()
        follower.close()
    return statistics.median(times)


# A follower started on a view a rebuild left just behind the head: what it holds to go on from there.
RSS_CHILD: Final = """
import resource, sys
from ledger.bootstrap import open_ledger
from projections.tracked import run
ledger = open_ledger(sys.argv[1])
run(ledger, sys.argv[1], once=True)
try:  # this process's own peak: ru_maxrss keeps the forking parent's across exec on Linux
    with open("/proc/self/status") as f:
        print(next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")))
except OSError:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""
RSS_NEW: Final = 1_000  # events imported after the rebuild, for the resumed follower to apply


def rss(url: str, later: list[bytes]) -> int:
    """Peak RSS (KiB) of a fresh follower process resuming on ``url`` (rebuilt, then ``later`` imported)."""
    from ledger.bootstrap import open_ledger
    from projections.tracked import rebuild

    ledger = open_ledger(url)
    try:
        rebuild(ledger)
        ledger.import_file(io.BytesIO(b"".join(later)))
    finally:
        ledger.close()
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, url], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--contracts", default="1000,20000")
    p.add_argument("--events", type=int, default=40_000)
    p.add_argument("--per", type=int, default=100, help="events per service-month")
    p.add_argument("--rss-sizes", default="50000,500000")
    p.add_argument("--rss-contracts", type=int, default=1000)
    p.add_argument("--lags", type=int, default=15)
    a = p.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    with tempfile.TemporaryDirectory(prefix="follower-bench-") as tmp:
        work = Path(tmp)
        for kind in a.stores.split(","):
            for contracts in (int(c) for c in a.contracts.split(",")):
                data = lines(2 * a.events, contracts, a.per)
                backlog, more = data[: a.events], data[a.events :]
                with store(kind, work) as url:
                    t0 = time.perf_counter()
                    register(url, contracts)
                    from ledger.bootstrap import open_ledger
                    from projections.tracked import run

                    ledger = open_ledger(url)
                    run(ledger, url, once=True)  # the contracts' rows: not part of the figure
                    ledger.close()
                    reg = time.perf_counter() - t0
                    alone = import_alone(url, backlog)
                    eps, landed, raw, per_cpu, loads = follow_while_importing(url, more, work)
                    print(f"follower {kind} contracts={contracts} events={len(backlog)} per={a.per}: "
                          f"{eps:,.0f} events/s applied while an import lands ({landed:,.0f}/s meanwhile; "
                          f"alone {alone:,.0f}/s); {per_cpu:,.0f} per CPU second of the follower; "
                          f"raw read+decode {raw:,.0f}/s, ratio {eps / raw:.3f}; "
                          f"{loads} groups loaded; target >= {TARGET_EPS:,.0f}/s "
                          f"{'PASS' if eps >= TARGET_EPS else 'FAIL'} (register + first run {reg:.2f} s; "
                          f"load {os.getloadavg()[0]:.1f})", flush=True)
                    median = lag(url, a.lags, contracts)
                    ms = median * 1000
                    print(f"follower {kind} contracts={contracts}: lag after one append median {ms:.0f} ms "
                          f"over {a.lags}; target < {TARGET_LAG_MS:.0f} ms "
                          f"{'PASS' if ms < TARGET_LAG_MS else 'FAIL'}", flush=True)
            sizes = [int(s) for s in a.rss_sizes.split(",")]
            peaks = []
            for size in sizes:
                with store(kind, work) as url:
                    register(url, a.rss_contracts)
                    from ledger.bootstrap import open_ledger

                    ledger = open_ledger(url)
                    data = lines(size + RSS_NEW, a.rss_contracts, generate.PER_SERVICE_MONTH)
                    for i in range(0, size, 50_000):
                        ledger.import_file(io.BytesIO(b"".join(data[i : min(i + 50_000, size)])))
                    ledger.close()
                    peaks.append(rss(url, data[size:]))
            ratio = peaks[-1] / peaks[0]
            print(f"follower {kind} RSS resuming {RSS_NEW:,} events behind the head: {sizes[0]:,} events "
                  f"{peaks[0] / 1024:.0f} MiB, {sizes[-1]:,} events {peaks[-1] / 1024:.0f} MiB; ratio "
                  f"{ratio:.2f} for {sizes[-1] / sizes[0]:.0f}x the events; target <= {TARGET_RSS} "
                  f"{'PASS' if ratio <= TARGET_RSS else 'FAIL'} (load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
