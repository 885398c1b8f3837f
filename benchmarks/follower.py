"""Measure the reporting view's follower (``ledger projections run``) and print one line per figure.

``python -m benchmarks.follower [--stores sqlite,postgres] [--contracts 1000,20000]
[--events 40000] [--per 100] [--rss-sizes 50000,500000] [--rss-tail 1000] [--rss-keep DIR] [--lags 15]``

For each store and contract count: a fresh store gets every contract in one append and
a follower writes their rows (timed apart: ``register``). Then a backlog of ``--events``
generated events is imported (the import alone: the first baseline), and while a second
process imports as many again, a follower in a process of its own (started as ``projections
run`` starts it: every contract's versions loaded, not part of the figure, its time printed;
then ``ReportingProjection.catch_up`` up to the backlog's head, the pages ``projections run``
takes: it loads the groups the backlog touches) catches up the backlog: the figure is backlog
events applied per second while that import lands. A ``#`` line says how long the follower
spent in the view's writes (on SQLite, waiting for the import's transaction too). The second
baseline, on the same store in the same run, is a raw read and decode of the same rows
(``read_records``): the follower can be no faster. The data has ``--per`` events per
service-month (the generator's default is 500), the same at 1,000 and at 20,000 contracts:
the larger run has the same pages in a larger world. Then the lag after a single append
(median of ``--lags``).

RSS (``--rss-sizes``, empty for none): the generator's data from its ``START`` (500 events per
service-month), one file for the largest size and its tail, each smaller store a prefix of
it. A store of each size, with ``--rss-contracts`` contracts, is rebuilt to its head (kept in
``--rss-keep`` and reused if given: importing and rebuilding 10M events takes minutes); on a
copy of it the next ``--rss-tail`` events are imported and a fresh follower process follows
them and prints its peak RSS (``VmHWM``); the ratio of the largest size's to the smallest's is
the growth. A tail of 100,000 events touches 200 services, each with all its history.
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
    from ledger.policy_check import load_policy

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
start = time.perf_counter()
try:  # started as ``projections run`` starts it: every contract's versions (not part of the figure)
    from projections.tracked.runner import started
    started(projection, True)
except ImportError:  # the follower before ``started``: its first page loads them
    projection._load()
start = time.perf_counter() - start
writing = [0.0]  # wall seconds in the view's writes (on SQLite, waiting for the import's transaction too)
replace = projection.view.replace
def timed_replace(*args):
    t0 = time.perf_counter()
    try:
        return replace(*args)
    finally:
        writing[0] += time.perf_counter() - t0
projection.view.replace = timed_replace
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.readline()
t0, cpu = time.perf_counter(), time.process_time()
base = int(projection.view.max_tracking_id("ledger") or 0)
while position(projection) < head:  # the backlog's pages, while the import lands: not the import's own
    try:
        projection.catch_up(upto=head)
    except TypeError:  # the follower before ``catch_up(upto=)``: its pages, cut at the head
        at = position(projection)
        projection.apply(list(projection.reader.read_records(at + 1, min(at + 5000, head))))
elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu
state = getattr(projection, "state", None)  # (the follower before issue 17's groups has none)
print(start, writing[0], elapsed, cpu, position(projection) - base,
      state.groups.loads if state is not None else -1)
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
    start, writing, elapsed, cpu, applied, loads = follower.communicate()[0].split()[-6:]
    print(f"# follower: started in {float(start):.2f} s (not counted), then {float(elapsed):.2f} s, "
          f"{float(cpu):.2f} s CPU, {float(writing):.2f} s in the view's writes, {applied} events applied",
          flush=True)
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


# A follower started on a view a rebuild left behind the head: what it holds to go on from there.
RSS_CHILD: Final = """
import sys, time
from ledger.bootstrap import open_ledger
from projections.tracked.projection import ReportingProjection
def kib(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
ledger = open_ledger(sys.argv[1])
projection = ReportingProjection(ledger.recorder.open_view())
before, base, cpu = kib("VmRSS"), projection.tracked, time.process_time()
projection.catch_up()
cpu = time.process_time() - cpu
# This process's own peak (ru_maxrss keeps the forking parent's across exec on Linux).
print(before, kib("VmHWM"), projection.tracked - base, cpu, projection.state.groups.loads)
ledger.close()
"""
RSS_NEW: Final = 1_000  # events imported after the rebuild, for the resumed follower to apply (default)
RSS_SEED: Final = 1


def rss_data(path: Path, events: int, contracts: int) -> Path:
    """The RSS runs' events (``generate``'s months from its ``START``): ``path``, written unless there
    (or a longer file of the same seed and services: the first lines of it are the same)."""
    longer = sorted((int(f.stem.rsplit("-n", 1)[1]), f) for f in path.parent.glob(
        path.name.rsplit("-n", 1)[0] + "-n*.ndjson") if int(f.stem.rsplit("-n", 1)[1]) >= events)
    if longer:
        return longer[0][1]
    if not path.exists():
        partial = path.with_suffix(".partial")
        with open(partial, "w", encoding="ascii") as f:
            generate.write_events(f, events, contracts, RSS_SEED)
        partial.rename(path)
    return path


def _lines_to(source: Path, start: int, stop: int, out: Path) -> Path:
    """Lines ``start``..``stop`` (0-based, end excluded) of ``source`` copied to ``out``."""
    import itertools

    with open(source, "rb") as f, open(out, "wb") as o:
        for chunk in iter(lambda: list(itertools.islice(f, 100_000)), []):
            if start >= len(chunk):
                start, stop = start - len(chunk), stop - len(chunk)
                continue
            o.writelines(chunk[start : min(stop, len(chunk))])
            start, stop = 0, stop - len(chunk)
            if stop <= 0:
                break
    return out


def _import(url: str, path: Path) -> None:
    from ledger.bootstrap import open_ledger

    ledger = open_ledger(url)
    try:
        with open(path, "rb") as f:
            ledger.import_file(f)
    finally:
        ledger.close()


def rss_base(kind: str, size: int, contracts: int, data: Path, keep: Path) -> str:
    """A store of ``size`` events of ``data`` (and the contracts), rebuilt to its head, kept under
    ``keep`` (SQLite) or as a database named after it (PostgreSQL) and reused if there."""
    from ledger.bootstrap import open_ledger
    from projections.tracked import rebuild

    tag = f"rss_{size}_{contracts}_{data.stat().st_size}"
    if kind == "sqlite":
        path = keep / f"{tag}.db"
        url = f"sqlite:///{path}"
        if path.exists():
            return url
        building = keep / f"{tag}.building.db"
        for old in keep.glob(f"{tag}.building.db*"):
            old.unlink()
        build_url = f"sqlite:///{building}"
    else:
        import psycopg

        name = f"bench_follow_{tag}"
        url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return url
            conn.execute(f"DROP DATABASE IF EXISTS {name}_building WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {name}_building")
        build_url = f"{url}_building"
    register(build_url, contracts)
    _import(build_url, _lines_to(data, 0, size, keep / f"{tag}.ndjson"))
    (keep / f"{tag}.ndjson").unlink()
    ledger = open_ledger(build_url)
    try:
        rebuild(ledger)
    finally:
        ledger.close()
    if kind == "sqlite":
        building.rename(path)
    else:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {name}_building RENAME TO {name}")
    return url


@contextmanager
def copy_of(kind: str, url: str, workdir: Path) -> Iterator[str]:
    """A throwaway copy of the store at ``url`` (a file copy; a database made from it as a template)."""
    if kind == "sqlite":
        import shutil

        source = Path(url.removeprefix("sqlite:///"))
        copy = workdir / (uuid.uuid4().hex + ".db")
        shutil.copyfile(source, copy)
        try:
            yield f"sqlite:///{copy}"
        finally:
            for f in workdir.glob(copy.name + "*"):
                f.unlink()
        return
    import psycopg

    name = "bench_follow_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name} TEMPLATE {url.rsplit('/', 1)[1]}")
    try:
        yield f"{url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def rss(kind: str, base: str, data: Path, size: int, tail: int,
        workdir: Path) -> tuple[int, int, int, float, int]:
    """A fresh follower process resuming on a copy of ``base`` with ``data``'s next ``tail`` events
    imported: its RSS after opening and its peak (KiB), events applied, CPU seconds, groups loaded."""
    with copy_of(kind, base, workdir) as url:
        later = _lines_to(data, size, size + tail, workdir / (uuid.uuid4().hex + ".ndjson"))
        _import(url, later)
        later.unlink()
        out = subprocess.run([sys.executable, "-c", RSS_CHILD, url], check=True, capture_output=True,
                             text=True)
    before, peak, applied, cpu, loads = out.stdout.split()[-5:]
    return int(before), int(peak), int(applied), float(cpu), int(loads)


def rss_runs(kind: str, sizes: list[int], contracts: int, tail: int, keep: Path, work: Path) -> None:
    """Print the follower's peak RSS after following ``tail`` events on stores of each size, and the ratio."""
    data = rss_data(keep / f"events-s{RSS_SEED}-svc{contracts}-n{max(sizes) + tail}.ndjson",
                    max(sizes) + tail, contracts)
    peaks = []
    for size in sizes:
        base = rss_base(kind, size, contracts, data, keep)
        before, peak, applied, cpu, loads = rss(kind, base, data, size, tail, work)
        peaks.append(peak)
        print(f"follower {kind} RSS after following {applied:,} events on a {size:,}-event store: peak "
              f"{peak / 1024:.0f} MiB ({before / 1024:.0f} MiB opened), {cpu:.2f} s CPU, "
              f"{loads} groups loaded "
              f"(load {os.getloadavg()[0]:.1f})", flush=True)
    ratio = peaks[-1] / peaks[0]
    print(f"follower {kind} RSS {sizes[-1]:,} vs {sizes[0]:,} events: {peaks[-1] / 1024:.0f} / "
          f"{peaks[0] / 1024:.0f} MiB, ratio {ratio:.2f} for {sizes[-1] / sizes[0]:.0f}x the events; "
          f"target <= "
          f"{TARGET_RSS} {'PASS' if ratio <= TARGET_RSS else 'FAIL'}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--contracts", default="1000,20000")
    p.add_argument("--events", type=int, default=40_000)
    p.add_argument("--per", type=int, default=100, help="events per service-month")
    p.add_argument("--rss-sizes", default="50000,500000")
    p.add_argument("--rss-contracts", type=int, default=1000)
    p.add_argument("--rss-tail", type=int, default=RSS_NEW,
                   help="events the follower applies on each RSS store")
    p.add_argument("--rss-keep", type=Path,
                   help="keep the RSS runs' data and rebuilt stores here, and reuse them")
    p.add_argument("--lags", type=int, default=15)
    a = p.parse_args(argv)
    print(f"load average {os.getloadavg()[0]:.1f} at the start", flush=True)
    with tempfile.TemporaryDirectory(prefix="follower-bench-") as tmp:
        work = Path(tmp)
        for kind in a.stores.split(","):
            for contracts in (int(c) for c in a.contracts.split(",") if c):
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
            if a.rss_sizes:
                keep = a.rss_keep or work
                keep.mkdir(parents=True, exist_ok=True)
                rss_runs(kind, [int(n) for n in a.rss_sizes.split(",")], a.rss_contracts, a.rss_tail, keep,
                         work)

if __name__ == "__main__":
    main()
