"""Measure the reporting view's follower (``ledger projections run``) and print one line per figure.

``python -m benchmarks.follower [--stores sqlite,postgres] [--contracts 1000,20000]
[--events 40000] [--rss-sizes 20000,80000] [--lags 15]``

For each store and contract count: a fresh store gets every contract in one append,
a follower (``projections.tracked.run`` in a thread, as ``projections run`` runs it)
starts, and the generated events land in import batches while it follows; the figure
is events applied per second from the first batch to the follower's catching up. The
baseline, measured in the same run on the same store, is a raw read and decode of the
same rows (``read_records``): the follower can be no faster than that. Then the lag
after a single append (median of ``--lags``). RSS: on a store of each size, rebuilt to its head,
a follower process starts, resumes from the view's tracking and prints its peak RSS;
the ratio of the two is the growth. The import alone's events/s is printed too: the
follower cannot apply faster than facts land.
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
from itertools import islice
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


def lines(events: int, contracts: int) -> list[bytes]:
    # Few events per service-month so that every contract gets some in a short run.
    per = max(2, min(generate.PER_SERVICE_MONTH, events // contracts // 2))
    # Live data: from the month before the clock's, as a follower meets it (a backfill of years
    # would make every contract's months up to today new rows, which is a rebuild's work).
    now = datetime.now(UTC)
    start = f"{now.year - (now.month == 1):04d}-{(now.month - 2) % 12 + 1:02d}"
    return [line.encode() for line in generate.generate_lines(events, contracts, 7, start=start,
                                                              per_service_month=per)]


def follow_while_importing(url: str, data: list[bytes]) -> tuple[float, float, float]:
    """Events/s the follower applies while ``data`` lands in batches, the import's, and the raw read's."""
    from ledger.bootstrap import open_ledger
    from projections.tracked import run

    importer = open_ledger(url)
    follower = open_ledger(url)
    stop = threading.Event()
    base = importer.recorder.last_position()
    run(follower, url, once=True)  # the contracts' rows: not part of the figure
    seen = [base]
    thread = threading.Thread(target=run, args=(follower, url),
                              kwargs={"interval": 0.05, "stop": stop, "progress": seen.append})
    started = time.perf_counter()
    thread.start()
    it = iter(data)
    while batch := list(islice(it, IMPORT_BATCH)):
        importer.import_file(io.BytesIO(b"".join(batch)))  # a batch: the in-process route
    landed = time.perf_counter() - started
    head = importer.recorder.last_position()
    view = importer.recorder.open_view()
    while int(view.max_tracking_id("ledger") or 0) < head:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    stop.set()
    thread.join()
    t0 = time.perf_counter()
    n = sum(1 for _ in importer.recorder.read_records(base + 1, head))
    raw = n / (time.perf_counter() - t0)
    importer.close()
    follower.close()
    return (head - base) / elapsed, (head - base) / landed, raw


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


# A follower started on a view a rebuild left at the head: what it holds to go on from there.
RSS_CHILD: Final = """
import resource, sys
from ledger.bootstrap import open_ledger
from projections.tracked import run
ledger = open_ledger(sys.argv[1])
run(ledger, sys.argv[1], once=True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def rss(url: str) -> int:
    """Peak RSS (KiB) of a fresh follower process resuming on ``url`` (rebuilt to its head)."""
    from ledger.bootstrap import open_ledger
    from projections.tracked import rebuild

    ledger = open_ledger(url)
    try:
        rebuild(ledger)
    finally:
        ledger.close()
    out = subprocess.run([sys.executable, "-c", RSS_CHILD, url], check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--contracts", default="1000,20000")
    p.add_argument("--events", type=int, default=40_000)
    p.add_argument("--rss-sizes", default="20000,80000")
    p.add_argument("--rss-contracts", type=int, default=200)
    p.add_argument("--lags", type=int, default=15)
    a = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="follower-bench-") as tmp:
        work = Path(tmp)
        for kind in a.stores.split(","):
            for contracts in (int(c) for c in a.contracts.split(",")):
                data = lines(a.events, contracts)
                with store(kind, work) as url:
                    t0 = time.perf_counter()
                    register(url, contracts)
                    reg = time.perf_counter() - t0
                    eps, imported, raw = follow_while_importing(url, data)
                    print(f"follower {kind} contracts={contracts} events={len(data)}: {eps:,.0f} events/s "
                          f"applied while importing (the import alone landed {imported:,.0f}/s); "
                          f"raw read+decode {raw:,.0f}/s; ratio {eps / raw:.3f}; "
                          f"target >= {TARGET_EPS:,.0f}/s {'PASS' if eps >= TARGET_EPS else 'FAIL'} "
                          f"(register {reg:.2f} s)", flush=True)
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
                    data = lines(size, a.rss_contracts)
                    for i in range(0, len(data), 50_000):
                        ledger.import_file(io.BytesIO(b"".join(data[i : i + 50_000])))
                    ledger.close()
                    peaks.append(rss(url))
            ratio = peaks[-1] / peaks[0]
            print(f"follower {kind} RSS resuming at the head: {sizes[0]:,} events {peaks[0] / 1024:.0f} MiB, "
                  f"{sizes[-1]:,} events {peaks[-1] / 1024:.0f} MiB; ratio {ratio:.2f} for "
                  f"{sizes[-1] / sizes[0]:.0f}x the events; target <= {TARGET_RSS} "
                  f"{'PASS' if ratio <= TARGET_RSS else 'FAIL'}", flush=True)


if __name__ == "__main__":
    main()
