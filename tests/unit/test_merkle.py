"""ledger.merkle against the RFC 9162 verifier of the tests and the transparency-dev test vectors."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.merkle import Key
from tests import rfc9162

VECTORS = Path(__file__).parent.parent / "data" / "rfc9162"
# transparency-dev/merkle testonly/constants.go LeafInputs().
LEAF_INPUTS = [bytes.fromhex(h) for h in
               ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                "606162636465666768696a6b6c6d6e6f")]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]


class Store:
    """Nodes in a dict, appended in batches as a store would; counts reads."""

    def __init__(self) -> None:
        self.nodes: dict[Key, bytes] = {}
        self.size = 0
        self.reads: list[int] = []

    def read(self, keys: Sequence[Key]) -> Mapping[Key, bytes]:
        self.reads.append(len(keys))
        return {k: self.nodes[k] for k in keys if k in self.nodes}

    def append(self, data: Sequence[bytes]) -> None:
        rows = merkle.extend(self.size, [merkle.leaf_hash(d) for d in data], self.read)
        for level, index, h in rows:
            assert (level, index) not in self.nodes  # append-only: a node is written once
            self.nodes[level, index] = h
        self.size += len(data)


def grown(leaves: Sequence[bytes], seed: int = 0) -> Store:
    """A store that received ``leaves`` in random batch sizes."""
    rng = random.Random(seed)
    store = Store()
    i = 0
    while i < len(leaves):
        step = rng.choice((1, 1, 2, 3, 7, 50))
        store.append(leaves[i : i + step])
        i += step
    return store


def data(n: int) -> list[bytes]:
    return [b'{"n":%d}' % i for i in range(n)]


def test_roots_of_the_official_vectors() -> None:
    store = Store()
    assert merkle.root(0, store.read) == ROOTS[0]
    for n, data_ in enumerate(LEAF_INPUTS, 1):
        store.append([data_])
        assert merkle.root(n, store.read) == ROOTS[n]
        assert all(merkle.root(m, store.read) == ROOTS[m] for m in range(n + 1))


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def _name(p: Path) -> str:
    return f"{p.parent.name}/{p.stem}"


@pytest.mark.parametrize("path", sorted(VECTORS.glob("inclusion/*/*.json")), ids=_name)
def test_inclusion_vectors(path: Path) -> None:
    v = json.loads(path.read_text())
    proof = [_b64(p) for p in v["proof"] or []]
    ok = rfc9162.verify_inclusion(v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), proof, _b64(v["root"]))
    assert ok is not v["wantErr"], v["desc"]
    if path.stem == "happy-path" and v["treeSize"] <= len(LEAF_INPUTS):
        store = grown(LEAF_INPUTS)
        assert merkle.inclusion_path(v["leafIdx"], v["treeSize"], store.read) == proof


@pytest.mark.parametrize("path", sorted(VECTORS.glob("consistency/*/*.json")), ids=_name)
def test_consistency_vectors(path: Path) -> None:
    v = json.loads(path.read_text())
    proof = [_b64(p) for p in v["proof"] or []]
    ok = rfc9162.verify_consistency(v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), proof)
    assert ok is not v["wantErr"], v["desc"]
    if path.stem == "happy-path":
        store = grown(LEAF_INPUTS)
        assert merkle.consistency_path(v["size1"], v["size2"], store.read) == proof


def test_every_size_up_to_a_few_hundred() -> None:
    n = 300
    leaves = data(n)
    store = grown(leaves, seed=1)
    for size in range(1, n + 1):
        root = merkle.root(size, store.read)
        assert root == rfc9162.mth(leaves[:size])
        for index in range(size):
            path = merkle.inclusion_path(index, size, store.read)
            assert rfc9162.verify_inclusion(index, size, rfc9162.leaf(leaves[index]), path, root)
        for old in range(1, size + 1):
            proof = merkle.consistency_path(old, size, store.read)
            assert rfc9162.verify_consistency(old, size, rfc9162.mth(leaves[:old]) if old < 64 else
                                              merkle.root(old, store.read), root, proof)


def test_random_pairs_beyond() -> None:
    n = 5000
    leaves = data(n)
    store = grown(leaves, seed=2)
    rng = random.Random(3)
    for _ in range(200):
        new = rng.randint(1, n)
        old = rng.randint(1, new)
        index = rng.randrange(new)
        root = merkle.root(new, store.read)
        path = merkle.inclusion_path(index, new, store.read)
        assert rfc9162.verify_inclusion(index, new, rfc9162.leaf(leaves[index]), path, root)
        proof = merkle.consistency_path(old, new, store.read)
        assert rfc9162.verify_consistency(old, new, merkle.root(old, store.read), root, proof)
    assert merkle.root(n, store.read) == rfc9162.mth(leaves)


def test_a_proof_reads_once_and_logarithmically() -> None:
    store = grown(data(3000), seed=4)
    for fn in (lambda: merkle.root(2999, store.read), lambda: merkle.inclusion_path(1234, 2999, store.read),
               lambda: merkle.consistency_path(1001, 2999, store.read)):
        store.reads.clear()
        fn()
        assert len(store.reads) == 1
        assert store.reads[0] <= 2 * 12


def test_tampering_changes_the_root() -> None:
    leaves = data(20)
    honest = merkle.root(20, grown(leaves).read)
    edited = [*leaves[:5], b'{"n":55}', *leaves[6:]]
    swapped = [*leaves[:5], leaves[6], leaves[5], *leaves[7:]]
    assert merkle.root(20, grown(edited).read) != honest
    assert merkle.root(20, grown(swapped).read) != honest


def test_a_missing_node_is_named() -> None:
    store = grown(data(10))
    del store.nodes[1, 4]
    with pytest.raises(merkle.MissingNode, match="level 1, index 4"):
        merkle.root(10, store.read)
    with pytest.raises(merkle.MissingNode):
        store.append([b"x"])


def test_bad_ranges() -> None:
    store = grown(data(4))
    with pytest.raises(ValueError, match="leaf 4 is not in a tree of 4"):
        merkle.inclusion_path(4, 4, store.read)
    with pytest.raises(ValueError, match="from 3 to 2"):
        merkle.consistency_path(3, 2, store.read)
    with pytest.raises(ValueError, match="from 0 to 2"):
        merkle.consistency_path(0, 2, store.read)


def test_hash_text() -> None:
    digest = bytes(range(32))
    assert merkle.parse_hash(merkle.hex_hash(digest)) == digest
    for bad in ("sha256:" + "A" * 64, "sha256:" + "0" * 63, "md5:" + "0" * 64, "sha256:" + "g" * 64,
                "sha256:" + "00" * 31 + "  ", "sha256: " + "00" * 31 + " "):  # fromhex skips spaces
        assert merkle.parse_hash(bad) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 40), min_size=1, max_size=12))
def test_batching_does_not_change_the_tree(batches: list[int]) -> None:
    """However the leaves arrive, the stored nodes are the same."""
    total = sum(batches)
    leaves = data(total)
    one = Store()
    one.append(leaves)
    split = Store()
    i = 0
    for b in batches:
        split.append(leaves[i : i + b])
        i += b
    assert split.nodes == one.nodes
    assert merkle.root(total, split.read) == merkle.build([merkle.leaf_hash(x) for x in leaves])


@settings(max_examples=80, deadline=None)
@given(st.integers(0, 300), st.lists(st.integers(0, 150), min_size=1, max_size=8), st.integers(0, 7))
def test_the_write_paths_fold_is_the_reference(size: int, batches: list[int], lowest: int) -> None:
    """``merkle_store.fold``, ``fold_packed`` (from the leaf hashes' packed bytes) and ``Folder``
    (the import's) give ``merkle.fold``'s rows and edge."""
    from ledger.persistence import merkle_read, merkle_store

    leaves = [merkle.leaf_hash(b"%d" % i) for i in range(size + sum(batches))]
    ref_edge: dict[int, bytes] = {}
    merkle.fold(0, ref_edge, leaves[:size], 0)
    edge = dict(ref_edge)
    packed_edge = dict(ref_edge)
    folder = merkle_store.Folder(size, ref_edge)
    at = size
    for count in batches:
        part = leaves[at : at + count]
        want = merkle.fold(at, ref_edge, list(part), 0)
        assert merkle_store.fold(at, edge, list(part), lowest) == [r for r in want if r[0] >= lowest]
        assert edge == ref_edge
        packed = merkle_store.fold_packed(at, packed_edge, b"".join(part), lowest)
        assert packed == [r for r in want if r[0] >= lowest]
        assert packed_edge == ref_edge
        assert folder.rows(list(part)) == [r for r in want if r[0] >= merkle_read.STORED_FROM]
        at += count


def test_every_splice_plan_gives_the_sorted_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """The four ways the envelope goes into a flat content (``merkle_store._simple``), and the
    fallback when a key a plan expects is missing, give the line with every key sorted."""
    import msgspec

    from ledger.persistence import merkle_store
    from ledger.persistence.rows import Prepared

    marks = {  # keys after id, position, recorded_at: together, two and one, one and two, apart
        "t0": ((b'"x":',), (b'"x":',), (b'"x":',)),
        "t1": ((b'"q":',), (b'"q":',), (b'"s":',)),
        "t2": ((b'"j":',), (b'"s":',), (b'"s":',)),
        "t3": ((b'"j":',), (b'"q":',), (b'"s":',)),
    }
    plans = merkle_store._simple(marks)
    assert sorted(plan[0] for plan in plans.values()) == [0, 1, 2, 3]
    monkeypatch.setattr(merkle_store, "_tables", lambda: (marks, {}, plans))
    contents = [
        ("t0", {"a": '"x":', "x": 5}), ("t0", {"a": 1, "b": '"x":'}),
        ("t1", {"a": 1, "q": '"s":', "s": "4", "t": True}), ("t1", {"a": 1, "q": 3, "z": '"s":'}),
        ("t2", {"a": '"j":', "j": "2", "s": "4"}), ("t2", {"a": 1, "j": "2", "z": 0}),
        ("t3", {"a": 1, "j": '"q":', "q": '"s":', "s": "4"}), ("t3", {"a": 1, "j": "2", "s": "4"}),
    ]
    rows, ats, expected = [], [], []
    for i, (topic, content) in enumerate(contents):
        canon = msgspec.json.encode(dict(sorted(content.items())))
        id_json, at_json = b'"id-%d"' % i, b'"2026-10-0%dT00:00:00Z"' % (i % 3 + 1)
        rows.append(Prepared(i, f"id-{i}", id_json, topic, "k", canon, None, None))
        ats.append(at_json)
        line = msgspec.json.encode(dict(sorted({**content, "id": f"id-{i}", "position": 7 + i,
                                                "recorded_at": msgspec.json.decode(at_json)}.items())))
        expected.append(rfc9162.leaf(line))
    assert merkle_store.leaf_hashes(rows, ats, 7) == expected
