"""What the Merkle tree costs (issue 19): import with it against without it, and proofs at two sizes.

``python -m benchmarks.proofs [--quick] [--stores sqlite,postgres] [--sizes 100000,10000000]
[--import-size 1000000] [--rounds 3] [--no-proofs | --no-import]``

Import: ``ledger import`` of the same generated file into fresh stores, with the tree
and without it, in alternated pairs (this machine's speed wanders over minutes); the
median ratio is printed (target: at most 10 % more). "Without" runs the same command
with the tree switched off from outside (a ``sitecustomize`` on ``PYTHONPATH`` that both
runs load, replacing by no-ops the leaf hashing at link (in the import child), the right
edge read under the lock (without it the writer has no ``Folder`` and folds nothing) and
the recorders' append hook that inserts the nodes), so the two runs differ by exactly the
tree's work. The same ``sitecustomize`` writes each interpreter's ``getrusage`` at exit
(the reading child, the linking child, the writer): the per-process CPU seconds are printed
beside the totals, medians with / without, so that a change shows in the process it concerns.

Checkpoint and proofs: a store of each size is filled by ``ledger import``; then, in
one process, ``checkpoint.make`` (the whole log), ``inclusion`` of random positions and
``consistency`` between random sizes are timed (median of many calls, the stores warm
and open side by side, timed in alternating turns).
Flat: the larger store may take at most 1.5 times the smaller one's time.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from benchmarks.measure import compile_project, load, timed
from benchmarks.run import (
    ROOT,
    Config,
    contracts_dir,
    data_file,
    emit,
    fresh_store,
    ledger_cmd,
    register_contracts,
    run_child,
    settle,
    verdict,
)
from ledger.persistence.merkle_read import tiles

IMPORT_MAX: Final = 1.10  # with the tree / without it
FLAT_MAX: Final = 1.5  # larger store / smaller store
CALLS: Final = 200  # timed calls of each kind per store

# Loaded by every interpreter the timed command starts (the command and its import child).
_SITECUSTOMIZE: Final = '''
import os
import ledger.persistence.merkle_store
import ledger.persistence.append as append
import ledger.persistence.chain as chain
import ledger.persistence.sqlite.recorder as sqlite_recorder
if os.environ.get("LEDGER_BENCH_STORE", "").startswith("postgresql"):
    import ledger.persistence.postgres.recorder as postgres_recorder
if os.environ.get("LEDGER_BENCH_NO_TREE"):
    chain.leaf_hashes = lambda rows, ats, start: []
    append.start_edge = lambda tree, size: None
    sqlite_recorder.append_leaves = lambda *args: None
    if os.environ.get("LEDGER_BENCH_STORE", "").startswith("postgresql"):
        postgres_recorder.append_leaves = lambda *args: None
if os.environ.get("LEDGER_BENCH_USAGE"):
    import atexit
    import resource
    import sys

    def _usage():
        used = resource.getrusage(resource.RUSAGE_SELF)
        command = " ".join(sys.orig_argv)
        role = "reader" if "child_main" in command else "linker" if "link_main" in command else "writer"
        with open(os.environ["LEDGER_BENCH_USAGE"], "a") as out:
            out.write(f"{role} {used.ru_utime + used.ru_stime}\\n")

    atexit.register(_usage)
'''
ROLES: Final = ("reader", "linker", "writer")  # the import's processes, as the hook names them


def _import(url: str, path: Path, hook: Path, tree: bool) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU seconds (the command's and its import children's; not a server's) of one import.

    And each process's CPU seconds by its role (``ROLES``), as the hook wrote them at its exit.
    """
    usage = hook / "usage"
    usage.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)]), "LEDGER_BENCH_STORE": url,
           "LEDGER_BENCH_USAGE": str(usage)}
    if not tree:
        env["LEDGER_BENCH_NO_TREE"] = "1"
    old = os.environ.copy()
    os.environ.clear()
    os.environ.update(env)
    try:
        wall, cpu, _ = timed(ledger_cmd(url, "import", "--quiet", str(path)))
    finally:
        os.environ.clear()
        os.environ.update(old)
    per: dict[str, float] = {}
    for line in usage.read_text().splitlines():
        role, seconds = line.split()
        per[role] = per.get(role, 0.0) + float(seconds)
    return wall, cpu, per


def _tree_rows(url: str) -> int:
    from ledger.bootstrap import open_ledger
    from ledger.persistence import merkle_store

    led = open_ledger(url, create=False)
    try:
        return merkle_store.tree_size(led.recorder)
    finally:
        led.close()


def measure_import(cfg: Config, store: str, size: int, rounds: int, hook: Path) -> None:
    """Alternated pairs (with, without; then without, with; ...) into fresh stores; the median ratio.

    The verdict is on wall time, as the target says; the CPU time of the command and its
    import child (``wait4``; a PostgreSQL server's work is not in it) is printed beside it,
    since on a shared machine wall time stretches with the load.
    """
    path = data_file(cfg, size)
    contracts = contracts_dir(cfg)
    pairs: list[tuple[float, float]] = []
    cpus: list[tuple[float, float]] = []
    loads: list[str] = []
    per: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for i in range(rounds):
        times: dict[bool, tuple[float, float]] = {}
        for tree in ((True, False) if i % 2 == 0 else (False, True)):
            with fresh_store(cfg, store, f"proofs-{store}-{size}-{i}-{int(tree)}") as url:
                register_contracts(url, contracts)
                settle(url)
                loads.append(load())
                wall, cpu, roles = _import(url, path, hook, tree)
                times[tree] = wall, cpu
                per[tree].append(roles)
                rows = _tree_rows(url)
                # The leaves the stored nodes cover (tiles of 64); the contracts were registered with it.
                expected = tiles(size + len(contracts) if tree else len(contracts))
                assert rows == expected, f"tree of {rows} leaves after an import with tree={tree}"
        pairs.append((times[True][0], times[False][0]))
        cpus.append((times[True][1], times[False][1]))
    ratio = statistics.median(w / wo for w, wo in pairs)
    cpu_ratio = statistics.median(w / wo for w, wo in cpus)
    shown = ", ".join(f"{w:.2f}/{wo:.2f} s {w / wo:.3f}" for w, wo in pairs)
    cpu_shown = ", ".join(f"{w:.2f}/{wo:.2f} s {w / wo:.3f}" for w, wo in cpus)
    medians = {tree: {role: statistics.median(r.get(role, 0.0) for r in runs) for role in ROLES}
               for tree, runs in per.items()}
    per_shown = ", ".join(f"{role} {medians[True][role]:.2f}/{medians[False][role]:.2f} s" for role in ROLES)
    emit(cfg, f"merkle import {store} {size} events: with tree / without, median of {rounds} alternated "
              f"pairs {ratio:.3f} ({shown}); CPU (client processes) {cpu_ratio:.3f} ({cpu_shown}); "
              f"CPU per process, medians {per_shown}; "
              f"{loads[0]} .. {loads[-1]}; wall (target <= {IMPORT_MAX:.2f}) {verdict(ratio <= IMPORT_MAX)}",
         figure="merkle_import", store=store, events=size, ratio=ratio, pairs=pairs, cpu_ratio=cpu_ratio,
         cpu_pairs=cpus, per_process=medians, ok=ratio <= IMPORT_MAX)


ROUNDS: Final = 8  # the stores of each size are timed in turn, this many times (CALLS spread over them)


def _times_us(fn: Callable[[int], Any], args: list[int]) -> list[float]:
    times = []
    for a in args:
        t0 = time.perf_counter()
        fn(a)
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def proof_samples(led: Any, rng: random.Random, calls: int) -> dict[str, list[float]]:
    """Microseconds of ``calls`` checkpoints, inclusion and consistency proofs on an open ledger."""
    from ledger import checkpoint

    r = led.recorder
    n = r.last_position()
    positions = [rng.randint(1, n) for _ in range(calls)]
    olds = [rng.randint(1, n - 1) for _ in range(calls)]
    return {
        "checkpoint": _times_us(lambda _: checkpoint.make(r), list(range(calls))),
        "inclusion": _times_us(lambda p: checkpoint.inclusion(r, p), positions),
        "consistency": _times_us(lambda m: checkpoint.consistency(r, m, n), olds),
    }


def _fill_last_tile(led: Any) -> None:
    """Append facts until the log's last tile holds 63: every store is timed at the worst case.

    A root reads the log's last, partial tile (``merkle_store``: its leaves are hashed from
    the log on each read), whose fill depends on the size modulo 64, not on the size: 101,000
    facts leave 8 there, 1,001,000 leave 40, and callgrind counted 1.7M against 3.4M
    instructions a checkpoint on SQLite for that alone.
    """
    import io

    from ledger.persistence.merkle_read import TILE

    missing = (TILE - 1 - led.recorder.last_position() % TILE) % TILE
    line = (b'{"id":"bench-fill-%d","type":"%s","service":"svc-0000","probe":"fill",'
            b'"at":"2030-01-01T00:%02d:00Z"}')
    lines = [line % (i, b"probe_failed" if i % 2 == 0 else b"probe_recovered", i) for i in range(missing)]
    if lines:
        led.import_file(io.BytesIO(b"\n".join(lines) + b"\n"))
    assert led.recorder.last_position() % TILE == TILE - 1


def measure_proofs(cfg: Config, store: str, sizes: list[int]) -> None:
    """Fill a store of each size, then time checkpoint and proofs in them in turn; largest against smallest.

    The stores are timed alternately (``ROUNDS`` turns, the order reversed each turn), not
    one after the other: timed one after the other, the larger store was measured right
    after its own import (the server and the kernel still writing it out, autovacuum busy)
    and on a machine whose speed had moved meanwhile, which gave PostgreSQL ratios of 2 to
    3.4 that the same calls alternated in one process did not show (docs/decisions.md).
    Each store's last tile is first filled to 63 facts (``_fill_last_tile``).
    """
    from ledger import checkpoint
    from ledger.bootstrap import open_ledger

    contracts = contracts_dir(cfg)
    samples: dict[int, dict[str, list[float]]] = {size: {} for size in sizes}
    with contextlib.ExitStack() as stack:
        leds: dict[int, Any] = {}
        for size in sizes:
            path = data_file(cfg, size)
            url = stack.enter_context(fresh_store(cfg, store, f"proofs-{store}-flat-{size}"))
            register_contracts(url, contracts)
            run_child(ledger_cmd(url, "import", "--quiet", str(path)))
            if url.startswith("postgresql"):  # a store in its steady state, not one autovacuum is busy with
                import psycopg

                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE")
            leds[size] = led = open_ledger(url, create=False)
            stack.callback(led.close)
            _fill_last_tile(led)
        settle()
        rngs = {size: random.Random(cfg.seed) for size in sizes}
        for size, led in leds.items():  # warm: connections, statements, the pages of the right edge
            for _ in range(20):
                checkpoint.make(led.recorder)
                checkpoint.inclusion(led.recorder, rngs[size].randint(1, led.recorder.last_position()))
        loads = [load()]
        for turn in range(ROUNDS):
            for size in (sizes if turn % 2 == 0 else sizes[::-1]):
                for kind, values in proof_samples(leds[size], rngs[size], CALLS // ROUNDS).items():
                    samples[size].setdefault(kind, []).extend(values)
        loads.append(load())
    got = {size: {kind: statistics.median(v) for kind, v in by.items()} for size, by in samples.items()}
    for size in sizes:
        t = got[size]
        emit(cfg, f"merkle proofs {store} {size} events: checkpoint {t['checkpoint']:.0f} us, "
                  f"inclusion {t['inclusion']:.0f} us, consistency {t['consistency']:.0f} us "
                  f"(median of {CALLS}, the stores timed in {ROUNDS} alternating turns; "
                  f"{loads[0]} .. {loads[-1]})",
             figure="merkle_proofs", store=store, events=size, **t)
    small, large = got[min(sizes)], got[max(sizes)]
    for kind in ("checkpoint", "inclusion", "consistency"):
        ratio = large[kind] / small[kind]
        emit(cfg, f"merkle flat {store} {kind}: {max(sizes)} / {min(sizes)} events {ratio:.2f} "
                  f"(target < {FLAT_MAX}) {verdict(ratio < FLAT_MAX)}",
             figure="merkle_flat", store=store, kind=kind, ratio=ratio, ok=ratio < FLAT_MAX)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.proofs", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for the test suite")
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--sizes", help="two event counts for the proofs (default 100000,10000000: issue 19)")
    ap.add_argument("--import-size", type=int, help="events per timed import (default 1000000)")
    ap.add_argument("--rounds", type=int, help="alternated import pairs (default 3; quick 1)")
    ap.add_argument("--services", type=int, help="default 1000 (quick: 10)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-proofs", action="store_true", help="only the import pairs")
    ap.add_argument("--no-import", action="store_true", help="only the checkpoint and proof timings")
    ap.add_argument("--workdir", type=Path, help="data and SQLite stores (default benchmarks/data)")
    args = ap.parse_args(argv)
    quick = bool(args.quick)
    sizes = [int(s) for s in (args.sizes or ("2000,8000" if quick else "100000,10000000")).split(",")]
    workdir = args.workdir or ROOT / "benchmarks" / "data"
    if quick and args.workdir is None:
        workdir = Path(tempfile.mkdtemp(prefix="ledger-proofs-"))
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = Config(stores=[s.strip() for s in args.stores.split(",") if s.strip()], sizes=sizes,
                 services=args.services or (10 if quick else 1000), seed=args.seed, naive=0, quick=quick,
                 out=None, workdir=workdir)
    compile_project()
    hook = Path(tempfile.mkdtemp(prefix="ledger-proofs-hook-"))
    (hook / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    try:
        for store in cfg.stores:
            if not args.no_import:
                measure_import(cfg, store, args.import_size or (5000 if quick else 1_000_000),
                               args.rounds or (1 if quick else 3), hook)
            if not args.no_proofs:
                measure_proofs(cfg, store, sizes)
    finally:
        shutil.rmtree(hook, ignore_errors=True)
        if quick and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
