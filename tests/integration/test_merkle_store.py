"""The Merkle tree kept by every append route, on both stores, against the tests' own RFC 9162 code."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest

from ledger import merkle
from ledger.application import Ledger
from ledger.errors import LedgerError, StoreError
from ledger.events import decode_state, export_line
from ledger.persistence import merkle_read, merkle_store
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
    view = merkle_read.TreeView(led.recorder)
    size = view.size()
    assert size == led.recorder.last_position()
    assert view.root(size) == expected_root(led)
    assert merkle_store.check(led.recorder) == []


def test_every_append_route_keeps_the_tree(ledger: Ledger, tmp_path: Path) -> None:
    assert merkle_read.TreeView(ledger.recorder).size() == 0
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
    view = merkle_read.TreeView(ledger.recorder)
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
    import_lines(ledger, lines(0, 60))
    with pytest.raises(LedgerError):  # would complete the first tile
        import_lines(ledger, [*lines(60, 10), b'{"type":"nonsense"}'])
    assert_tree(ledger)
    with ledger.recorder.merkle_tree() as tree:
        assert tree.covered() == 0
    import_lines(ledger, lines(60, 10))
    with ledger.recorder.merkle_tree() as tree:
        assert tree.covered() == merkle_read.TILE


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
    import_lines(ledger, lines(20, 115))  # appends go on; the tree waits for the build
    with pytest.raises(StoreError, match="not built yet"):
        merkle_read.TreeView(ledger.recorder).size()
    assert merkle_store.check(ledger.recorder) == [merkle_read.NOT_BUILT]
    assert merkle_store.to_build(ledger.recorder) == 128
    seen: list[int] = []
    assert merkle_store.build(ledger.recorder, seen.append) == 128  # two tiles; 7 facts beyond
    assert sum(seen) == 128
    assert merkle_store.build(ledger.recorder) == 0  # idempotent
    assert merkle_store.to_build(ledger.recorder) is None
    assert_tree(ledger)
    import_lines(ledger, lines(135, 90))  # and appends keep it from here
    assert_tree(ledger)


def test_a_small_store_without_a_tree_gets_its_table(ledger: Ledger) -> None:
    """Under a tile nothing is stored, but the table is what says the tree is kept."""
    import_lines(ledger, lines(0, 20))
    _drop_tree(ledger)
    assert merkle_store.to_build(ledger.recorder) == 0
    with pytest.raises(StoreError, match="not built yet"):
        merkle_read.TreeView(ledger.recorder).size()
    assert merkle_store.build(ledger.recorder) == 0
    assert merkle_store.to_build(ledger.recorder) is None
    assert_tree(ledger)


def test_a_partly_built_tree_resumes(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    import_lines(ledger, lines(0, 500))
    _drop_tree(ledger)
    monkeypatch.setattr(merkle_store, "BUILD_BATCH", 64)
    calls = 0

    def stop_after_two(n: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        merkle_store.build(ledger.recorder, stop_after_two)
    with ledger.recorder.merkle_tree() as tree:
        assert tree.covered() == 128
    import_lines(ledger, lines(500, 20))  # the tree is behind: left for the build
    with ledger.recorder.merkle_tree() as tree:
        assert tree.covered() == 128
    assert merkle_store.build(ledger.recorder) == 512 - 128
    assert_tree(ledger)


def test_log_root_is_computed_from_the_log(ledger: Ledger) -> None:
    import_lines(ledger, lines(0, 23))
    for size in (0, 1, 8, 23):
        assert merkle_store.log_root(ledger.recorder, size) == expected_root(ledger, size)
    with pytest.raises(StoreError, match="fewer than 24"):
        merkle_store.log_root(ledger.recorder, 24)
    assert merkle.hex_hash(expected_root(ledger)).startswith("sha256:")


def test_nodes_are_append_only(ledger: Ledger) -> None:
    import_lines(ledger, lines(0, 70))  # a tile: one stored node
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
        assert merkle_read.leaf_line(position, state) == export_line(rec)


def test_link_leaves_are_the_exported_lines(ledger: Ledger) -> None:
    """The leaves hashed at link (spliced into the canonical content, or merged for nested
    contents) are the hashes of ``ledger events``' lines, for every kind of fact the demo has."""
    from cli.demo.run import run_demo
    from ledger.ingest.lines import prepare_facts
    from ledger.persistence.chain import ChainStart, packing_chain

    run_demo(ledger, "2026-10")
    import_lines(ledger, lines(0, 30))
    records = list(ledger.records())
    kinds = {type(r.fact) for r in records}
    assert len(kinds) >= 8, kinds
    assert any(b"[" in export_line(r) or b"{" in export_line(r)[1:] for r in records)  # the merged path too
    facts = [r.fact for r in records]
    start = ChainStart(1, "0" * 64, None, '"2026-11-01T00:00:00Z"')
    rows = [row for batch in prepare_facts(facts) for row in batch]
    linked = packing_chain(start).link(rows)
    assert len(linked.leaves) == len(rows)
    for i, (_, _, _, state) in enumerate(linked.events):
        line = export_line(decode_state(i + 1, state))
        assert linked.leaves[i] == rfc9162.leaf(line), line


def test_tricky_flat_contents_splice_exactly(ledger: Ledger) -> None:
    """Values holding quotes, commas and key-like text: the splice finds only the real members."""
    tricky = [
        b'{"type":"probe_failed","service":"s","probe":"p\\",\\"position\\":","at":"2026-10-04T09:00:00Z",'
        b'"detail":"x,\\"service\\":1,","id":"a"}',
        b'{"type":"probe_failed","service":"svc,","probe":"\\"id\\":","at":"2026-10-04T09:00:00Z","id":"b,"}',
        b'{"type":"maintenance_announced","service":"s","maintenance":"m","announced_at":'
        b'"2026-10-01T00:00:00Z","starts_at":"2026-10-05T00:00:00Z","ends_at":"2026-10-05T02:00:00Z",'
        b'"title":"{ \\"recorded_at\\": ["}',
    ]
    import_lines(ledger, tricky)
    assert_tree(ledger)
    view = merkle_read.TreeView(ledger.recorder)
    for position in (1, 2, 3):
        leaf, path, root = view.inclusion(position - 1, 3)
        assert leaf == rfc9162.leaf(export_line(next(ledger.recorder.read_records(position, position))))
        assert rfc9162.verify_inclusion(position - 1, 3, leaf, path, root)


def test_proofs_read_at_most_two_tiles(ledger: Ledger) -> None:
    """Nodes below level 6 are recomputed from the log: a root reads at most one tile, a proof two."""
    import_lines(ledger, lines(0, 300))
    import_lines(ledger, lines(300, 37))
    n = ledger.recorder.last_position()
    with ledger.recorder.merkle_tree() as tree:
        for size in (1, 63, 64, 65, 200, 256, n):
            read = merkle_read._Reader(tree)
            assert merkle.root(size, read) == expected_root(ledger, size)
            assert read.tiles_read <= 1
        for index, size in ((0, n), (5, n), (64, n), (130, n), (n - 1, n), (70, 200), (199, 256)):
            read = merkle_read._Reader(tree)
            path = merkle.inclusion_path(index, size, read)
            assert read.tiles_read <= 2
            line = export_line(next(ledger.recorder.read_records(index + 1, index + 1)))
            root = expected_root(ledger, size)
            assert rfc9162.verify_inclusion(index, size, rfc9162.leaf(line), path, root)
        for old, new in ((1, n), (63, n), (64, n), (65, 200), (100, 300), (129, 256), (200, n)):
            read = merkle_read._Reader(tree)
            proof = merkle.consistency_path(old, new, read)
            assert read.tiles_read <= 2
            roots = expected_root(ledger, old), expected_root(ledger, new)
            assert rfc9162.verify_consistency(old, new, *roots, proof)


def test_a_command_reads_each_tile_and_node_once(ledger: Ledger) -> None:
    """A command's roots and proof share one reader: its tiles and nodes are read once, not per computation.

    A consistency command computes both roots and the proof; an inclusion command the path and
    the root. Each of them asks for the same tiles of the log again (on a store of millions of
    facts each of those reads lands on pages no cache holds).
    """
    import_lines(ledger, lines(0, 300))
    import_lines(ledger, lines(300, 37))
    n = ledger.recorder.last_position()
    with ledger.recorder.merkle_tree() as tree:
        for old, new in ((1, n), (63, n), (65, 200), (100, 300), (129, 256), (200, n), (n - 1, n)):
            read = merkle_read._Reader(tree)
            roots = merkle.root(old, read), merkle.root(new, read)
            proof = merkle.consistency_path(old, new, read)
            assert roots == (expected_root(ledger, old), expected_root(ledger, new))
            assert rfc9162.verify_consistency(old, new, *roots, proof)
            assert read.tiles_read <= 2
            assert read.queries <= 3
        for index, size in ((0, n), (64, n), (130, n), (n - 1, n), (70, 200)):
            read = merkle_read._Reader(tree)
            path = merkle.inclusion_path(index, size, read)
            root = merkle.root(size, read)
            assert root == expected_root(ledger, size)
            line = export_line(next(ledger.recorder.read_records(index + 1, index + 1)))
            assert rfc9162.verify_inclusion(index, size, rfc9162.leaf(line), path, root)
            assert read.tiles_read <= 2
            assert read.queries <= 2


def test_a_store_of_the_earlier_layout(ledger: Ledger) -> None:
    """A store whose tree was written with every level (the layout before tiles): it proves and
    verifies as it is, appends go on in the new layout, and verify still compares its lower rows."""
    import_lines(ledger, lines(0, 150))
    url = ledger.url or ""
    leaves = [rfc9162.leaf(export_line(rec)) for rec in ledger.records()]
    old_rows = [r for r in merkle.extend(0, leaves, lambda keys: {}) if r[0] < merkle_read.STORED_FROM]
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as pg, pg.cursor() as cur:
            cur.executemany("INSERT INTO ledger_merkle (level, idx, hash) VALUES (%s, %s, %s)", old_rows)
    else:
        lite = sqlite3.connect(url.removeprefix("sqlite:///"))
        lite.executemany("INSERT INTO ledger_merkle (level, idx, hash) VALUES (?, ?, ?)", old_rows)
        lite.commit()
        lite.close()
    with ledger.recorder.merkle_tree() as tree:
        assert tree.lower() == 150
    assert_tree(ledger)
    assert merkle_store.to_build(ledger.recorder) is None  # nothing for init to do
    import_lines(ledger, lines(150, 100))
    assert_tree(ledger)
    with ledger.recorder.merkle_tree() as tree:
        assert tree.lower() == 150  # the new appends add no lower rows
    bad = merkle.leaf_hash(b"forged")
    if url.startswith("postgresql"):
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute("ALTER TABLE ledger_merkle DISABLE TRIGGER USER")
            pg.execute("UPDATE ledger_merkle SET hash = %s WHERE level = 0 AND idx = 140", (bad,))
    else:
        lite = sqlite3.connect(url.removeprefix("sqlite:///"))
        names = [r[0] for r in lite.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'ledger_merkle'")]
        for name in names:
            lite.execute(f'DROP TRIGGER "{name}"')
        lite.execute("UPDATE ledger_merkle SET hash = ? WHERE level = 0 AND idx = 140", (bad,))
        lite.commit()
        lite.close()
    assert merkle_store.check(ledger.recorder) == ["the Merkle tree differs from the log at position 141"]


def _packed_import(led: Ledger, body: bytes, batch_size: int, seen: list[object]) -> int:
    """An import through the packing child in batches of ``batch_size``; the leaves each batch brought."""
    import io
    from collections.abc import Generator
    from datetime import UTC, datetime

    from ledger.ingest.strategy import packed_batches
    from ledger.persistence.append import PackedBatch, append_packed
    from ledger.persistence.chain import ChainStart

    def batches(start: ChainStart) -> Generator[PackedBatch, None, None]:
        for batch in packed_batches(io.BytesIO(body), start, led.recorder.packing, batch_size=batch_size):
            seen.append(batch.packed.leaves)
            yield batch

    now = datetime(2026, 11, 1, tzinfo=UTC)
    return append_packed(led.recorder, batches, lambda: now).appended


def test_the_import_child_hashes_and_the_writer_folds(ledger: Ledger) -> None:
    """The packing child hashes the leaves; the writer folds them from the right edge it read
    (a partial first tile here), across batches that end anywhere in a tile, and inserts the nodes."""
    import_lines(ledger, lines(0, 40))
    seen: list[object] = []
    # Long lines (failures with a detail of 3,000 bytes): the child's reads from its pipe
    # (64 KiB at most) end mid-tile, and each batch is sent once it has 150 rows.
    padded = [line.replace(b"probe_recovered", b"probe_failed")[:-1] + b',"detail":"%s"}' % (b"d" * 3000)
              for line in lines(40, 700)]
    assert _packed_import(ledger, b"\n".join(padded) + b"\n", 150, seen) == 700
    batches = [s for s in seen if s]
    assert len(batches) >= 3
    # Leaf hashes from the child, 32 bytes a fact: those of the lines the log now holds.
    assert all(isinstance(s, bytes) for s in seen)
    leaves = b"".join(batches)  # type: ignore[arg-type]
    assert leaves == b"".join(rfc9162.leaf(export_line(rec)) for rec in ledger.recorder.read_records(41, 740))
    assert_tree(ledger)
    import_lines(ledger, lines(740, 30))  # the other routes go on from the writer's nodes
    assert_tree(ledger)


def test_the_writer_folds_only_leaf_hashes() -> None:
    """``Folder.nodes`` takes the packed leaf hashes, and refuses node rows (packed elsewhere)."""
    leaves = [bytes([i]) * 32 for i in range(100)]
    folder = merkle_store.Folder(0, {})
    rows = folder.nodes(b"".join(leaves))
    assert rows == [r for r in merkle.extend(0, leaves, lambda keys: {}) if r[0] >= merkle_read.STORED_FROM]
    with pytest.raises(StoreError, match="not leaf hashes"):
        folder.nodes([(6, 1, leaves[0])])


def test_the_import_child_leaves_a_tree_to_build_alone(ledger: Ledger) -> None:
    """A store whose tree is not built: the child hashes nothing, the writer writes no node."""
    import_lines(ledger, lines(0, 20))
    _drop_tree(ledger)
    seen: list[object] = []
    assert _packed_import(ledger, b"\n".join(lines(20, 300)) + b"\n", 100, seen) == 300
    assert seen
    assert all(s == b"" for s in seen)
    assert merkle_store.to_build(ledger.recorder) == 320
    merkle_store.build(ledger.recorder)
    assert_tree(ledger)


def test_nodes_packed_for_another_batch_are_refused() -> None:
    """The writer checks that folded rows are exactly the tiles its batch completes."""

    class _Tree:
        def __init__(self) -> None:
            self.written: list[object] = []

        def covered(self) -> int:
            return 64

        def write(self, rows: object) -> None:
            self.written.append(rows)

    tree = _Tree()
    node = b"\x01" * 32
    merkle_store.append_leaves(tree, 101, 60, [(6, 1, node)])  # type: ignore[arg-type]
    merkle_store.append_leaves(tree, 101, 20, [])  # type: ignore[arg-type]
    for wrong in ([], [(6, 2, node)], [(6, 1, node), (6, 2, node)]):
        with pytest.raises(StoreError, match="not that batch's"):
            merkle_store.append_leaves(tree, 101, 60, wrong)  # type: ignore[arg-type]
    assert tree.written == [[(6, 1, node)]]
