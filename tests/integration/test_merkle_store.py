"""The Merkle tree kept by every append route, on both stores, against the tests' own RFC 9162 code."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from ledger import merkle
from ledger.application import Ledger
from ledger.errors import LedgerError, StoreError
from ledger.events import export_line
from ledger.persistence import merkle_store
from tests import rfc9162
from tests.lines import import_lines
from tests.unit.factories import fact


def lines(start: int, count: int) -> list[bytes]:
    """Probe facts with ids ``p<start>``..., one NDJSON line each."""
    out = []
    for i in range(start, start + count):
        kind = "probe_failed" if i % 2 == 0 else "probe_recovered"
        minute = i % 60
        out.append(
            b'{"type":"%s","service":"svc-%d","probe":"p","at":"2026-10-04T09:%02d:00Z","id":"p%d"}'
            % (kind.encode(), i % 7, minute, i)
        )
    return out


def expected_root(led: Ledger, size: int | None = None) -> bytes:
    """The RFC's MTH over the ``ledger events`` lines, computed by the tests' code."""
    return rfc9162.mth([export_line(rec) for rec in led.records(size)])


def assert_tree(led: Ledger) -> None:
    view = merkle_store.TreeView(led.recorder)
    size = view.size()
    assert size == led.recorder.last_position()
    assert view.root(size) == expected_root(led)
    assert merkle_store.check(led.recorder) == []


def test_every_append_route_keeps_the_tree(ledger: Ledger, tmp_path: Path) -> None:
    assert merkle_store.TreeView(ledger.recorder).size() == 0
    ledger.append(fact("probe_failed", service="svc", probe="x", at="2026-10-04T09:00:00Z", id="one"))
    assert_tree(ledger)
    ledger.append_facts([
        fact("probe_recovered", service="svc", probe="x", at="2026-10-04T09:05:00Z", id="two"),
        fact("probe_failed", service="svc", probe="y", at="2026-10-04T09:06:00Z", id="three"),
    ])
    assert_tree(ledger)
    import_lines(ledger, lines(0, 37))
    assert_tree(ledger)
    # The packed path: linked and packed (leaf hashes too) in a child process.
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"\n".join(lines(37, 300)) + b"\n")
    with data.open("rb") as f:
        result = ledger.import_file(f, parallel_from=1)
    assert result.appended == 300
    assert_tree(ledger)
    # A re-import overlapping what is recorded: the packed path gives up, the checking path appends.
    data.write_bytes(b"\n".join(lines(300, 100)) + b"\n")
    with data.open("rb") as f:
        result = ledger.import_file(f, parallel_from=1)
    assert (result.appended, result.skipped) == (63, 37)
    assert_tree(ledger)
    view = merkle_store.TreeView(ledger.recorder)
    n = view.size()
    for old in (1, 2, 5, 100, n - 1):
        old_root, new_root, proof = view.consistency(old, n)
        assert rfc9162.verify_consistency(old, n, expected_root(ledger, old), new_root, proof)
        assert old_root == expected_root(ledger, old)
    for position in (1, 3, 40, n):
        leaf, path, root = view.inclusion(position - 1, n)
        line = export_line(next(ledger.recorder.read_records(position, position)))
        assert leaf == rfc9162.leaf(line)
        assert rfc9162.verify_inclusion(position - 1, n, leaf, path, root)


def test_a_failed_import_leaves_no_node(ledger: Ledger) -> None:
    import_lines(ledger, lines(0, 10))
    with pytest.raises(LedgerError):
        import_lines(ledger, [*lines(10, 5), b'{"type":"nonsense"}'])
    assert_tree(ledger)
    with ledger.recorder.merkle_tree() as tree:
        assert tree.size() == 10


def _drop_tree(led: Ledger) -> None:
    """Make the store look like one made before the tree (the table gone)."""
    url = led.url or ""
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE ledger_merkle")
    else:
        path = url.removeprefix("sqlite:///")
        conn = sqlite3.connect(path)
        conn.execute("DROP TABLE ledger_merkle")
        conn.commit()
        conn.close()


def test_a_store_without_a_tree_is_built_once_by_init(ledger: Ledger) -> None:
    import_lines(ledger, lines(0, 20))
    _drop_tree(ledger)
    import_lines(ledger, lines(20, 15))  # appends go on; the tree waits for the build
    with pytest.raises(StoreError, match="not built yet"):
        merkle_store.TreeView(ledger.recorder).size()
    assert merkle_store.check(ledger.recorder) == [merkle_store.NOT_BUILT]
    seen: list[int] = []
    assert merkle_store.build(ledger.recorder, seen.append) == 35
    assert sum(seen) == 35
    assert merkle_store.build(ledger.recorder) == 0  # idempotent
    assert_tree(ledger)
    import_lines(ledger, lines(35, 9))  # and appends keep it from here
    assert_tree(ledger)


def test_a_partly_built_tree_resumes(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    import_lines(ledger, lines(0, 50))
    _drop_tree(ledger)
    monkeypatch.setattr(merkle_store, "BUILD_BATCH", 7)
    calls = 0

    def stop_after_two(n: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        merkle_store.build(ledger.recorder, stop_after_two)
    with ledger.recorder.merkle_tree() as tree:
        assert tree.size() == 14
    import_lines(ledger, lines(50, 3))  # the tree is behind: left for the build
    assert merkle_store.build(ledger.recorder) == 53 - 14
    assert_tree(ledger)


def test_log_root_is_computed_from_the_log(ledger: Ledger) -> None:
    import_lines(ledger, lines(0, 23))
    for size in (0, 1, 8, 23):
        assert merkle_store.log_root(ledger.recorder, size) == expected_root(ledger, size)
    with pytest.raises(StoreError, match="fewer than 24"):
        merkle_store.log_root(ledger.recorder, 24)
    assert merkle.hex_hash(expected_root(ledger)).startswith("sha256:")


def test_nodes_are_append_only(ledger: Ledger) -> None:
    import_lines(ledger, lines(0, 4))
    url = ledger.url or ""
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.Error, match="append-only"):
            conn.execute("UPDATE ledger_merkle SET hash = ''::bytea")
    else:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM ledger_merkle")
        conn.close()


def test_reports_and_audits_name_their_log(ledger: Ledger) -> None:
    from cli.demo.run import run_demo
    from cli.render import audit_text
    from ledger import checkpoint

    reports = run_demo(ledger, "2026-10")
    last = ledger.recorder.last_position()
    r = reports[0]
    assert r.checkpoint is not None
    assert (r.checkpoint.size, r.checkpoint.root) == (last, checkpoint.make(ledger.recorder)["root"])
    assert r.checkpoint.root == merkle.hex_hash(expected_root(ledger))
    a = ledger.audit(r.contract, "2026-10", position=last - 3)
    assert a.report.checkpoint is not None
    assert a.report.checkpoint.size == last - 3
    assert a.report.checkpoint.root == merkle.hex_hash(expected_root(ledger, last - 3))
    text = audit_text(a)
    assert f"Log checkpoint: the first {last - 3} events, Merkle root {a.report.checkpoint.root}" in text
    assert f"ledger proof consistency --from {last - 3} --to M" in text


def test_leaf_lines_are_the_exported_lines(ledger: Ledger) -> None:
    """The append path's leaf (built from the stored JSON) is ``ledger events``' line, byte for byte."""
    from cli.demo.run import run_demo

    run_demo(ledger, "2026-10")
    import_lines(ledger, lines(0, 30))
    states = list(ledger.recorder.read_raw())
    assert len(states) > 100
    for (position, _, _, state), rec in zip(states, ledger.records(), strict=True):
        assert merkle_store.leaf_line(position, state) == export_line(rec)
