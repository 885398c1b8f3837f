"""The log's Merkle tree (``ledger.merkle``) in the store: append hook, reads, build and check.

Table ``ledger_merkle (level, idx, hash)``: one row per complete perfect subtree,
written by the transaction that appends its last leaf, append-only like the log
(each backend's SQL: ``sqlite/tree.py``, ``postgres/tree.py``). The tree's size is
its number of leaves (level 0). A store made before the tree has none: its appends
leave the tree as it is (the hook writes only when the tree ends where the batch
begins) and ``build`` (``ledger init``) fills it from the log, resumably, under the
append lock; reads on a store whose tree is behind its log say so and never build it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Final, TypeVar

import msgspec

from ledger import merkle
from ledger.errors import StoreError
from ledger.events import decode_state, export_line
from ledger.merkle import Key
from ledger.persistence.port import LedgerRecorder, Tree

T = TypeVar("T")
TABLE: Final = "ledger_merkle"
HASH_SIZE: Final = 32
BUILD_BATCH: Final = 20_000  # leaves per transaction when building a tree from the log
NOT_BUILT: Final = (
    "this store's Merkle tree is not built yet (the store was made by an earlier version): "
    "run `ledger init` once, with the role that owns its tables"
)

# A stored state is ``[id, recorded_at, content, "link"]`` (``ledger.events.state_bytes``);
# the leaf is the ``ledger events`` line: the content's members with id, position and
# recorded_at merged in, keys sorted. Built from the raw JSON members: decoding each fact
# into its struct and encoding it back (``export_line``) cost an import about a quarter
# more time; the result is the same bytes (``tests/integration/test_merkle_store.py``).
_STATE: Final = msgspec.json.Decoder(tuple[msgspec.Raw, datetime, dict[str, msgspec.Raw], msgspec.Raw])
_LINE: Final = msgspec.json.Encoder(order="sorted")
_INSTANT: Final = msgspec.json.Encoder()


def leaf_line(position: int, state: bytes) -> bytes:
    """The ``ledger events`` line of the stored row at ``position``, byte for byte (``export_line``)."""
    id_json, recorded_at, body, _ = _STATE.decode(state)
    body["id"] = id_json
    body["position"] = msgspec.Raw(b"%d" % position)
    body["recorded_at"] = msgspec.Raw(_INSTANT.encode(recorded_at))
    return _LINE.encode(body)


def leaf_hashes(events: Iterable[tuple[str, int, str, bytes]], start: int) -> bytes:
    """The leaf hashes of stored rows at ``start``, ``start + 1``..., concatenated (32 bytes each)."""
    out = bytearray()
    for position, (_, _, _, state) in enumerate(events, start):
        out += merkle.leaf_hash(leaf_line(position, state))
    return bytes(out)


def _split(leaves: bytes) -> list[bytes]:
    return [leaves[i : i + HASH_SIZE] for i in range(0, len(leaves), HASH_SIZE)]


def append_leaves(tree: Tree, start: int, count: int, leaves: bytes) -> None:
    """The append hook: write the nodes that ``count`` leaves appended at position ``start`` complete.

    Called inside the transaction that inserts the rows. Only when the tree ends where
    they begin: a store whose tree is not built (or is behind) keeps it so for ``build``.
    """
    if count == 0:
        return
    if len(leaves) != count * HASH_SIZE:
        raise StoreError(f"append: {len(leaves) // HASH_SIZE} leaf hashes for {count} facts")
    size = tree.size()
    if size != start - 1:
        return
    tree.write(merkle.extend(size, _split(leaves), tree.read))


class TreeView:
    """What the proofs read: the stored tree, checked to cover the log."""

    def __init__(self, recorder: LedgerRecorder) -> None:
        self.recorder = recorder

    def size(self) -> int:
        """The tree's size; StoreError if it is not built up to the log's end."""
        size, end = self.recorder.merkle_sizes()
        if size is None or size < end:
            raise StoreError(NOT_BUILT)
        return size

    def root(self, size: int) -> bytes:
        with self.recorder.merkle_tree() as tree:
            return _named(lambda: merkle.root(size, tree.read))

    def inclusion(self, index: int, size: int) -> tuple[bytes, list[bytes], bytes]:
        """(leaf hash, audit path, root) of 0-based leaf ``index`` in the tree of ``size``."""
        with self.recorder.merkle_tree() as tree:
            leaf = tree.read([(0, index)]).get((0, index))
            if leaf is None:
                raise StoreError(NOT_BUILT)
            path = _named(lambda: merkle.inclusion_path(index, size, tree.read))
            return leaf, path, _named(lambda: merkle.root(size, tree.read))

    def consistency(self, old: int, new: int) -> tuple[bytes, bytes, list[bytes]]:
        """(old root, new root, proof)."""
        with self.recorder.merkle_tree() as tree:
            return (_named(lambda: merkle.root(old, tree.read)), _named(lambda: merkle.root(new, tree.read)),
                    _named(lambda: merkle.consistency_path(old, new, tree.read)))


def _named(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except merkle.MissingNode as exc:
        raise StoreError(f"{NOT_BUILT} ({exc})") from None


def _log_leaves(recorder: LedgerRecorder, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
    """(position, leaf hash) of the log from ``start`` to ``stop``, recomputed from the facts.

    Through ``export_line`` of the decoded fact, not ``leaf_line``: the check does not
    trust the append path's shortcut.
    """
    for rec in recorder.read_records(start, stop):
        yield rec.position, merkle.leaf_hash(export_line(rec))


def log_root(recorder: LedgerRecorder, size: int) -> bytes:
    """The root of the first ``size`` facts computed from the log itself, not from the stored tree."""
    stack: list[tuple[int, bytes]] = []  # (level, hash) of the right edge, largest first
    count = 0
    for position, leaf in _log_leaves(recorder, 1, size):
        if position != count + 1:
            raise StoreError(f"the log has no fact at position {count + 1}")
        count += 1
        level, h = 0, leaf
        while stack and stack[-1][0] == level:
            h = merkle.node_hash(stack.pop()[1], h)
            level += 1
        stack.append((level, h))
    if count != size:
        raise StoreError(f"the log holds {count} facts, fewer than {size}")
    if not stack:
        return merkle.EMPTY_ROOT
    acc = stack[-1][1]
    for _, h in reversed(stack[:-1]):
        acc = merkle.node_hash(h, acc)
    return acc


def _frontier_reader(nodes: Mapping[Key, bytes]) -> Callable[[Sequence[Key]], Mapping[Key, bytes]]:
    return lambda keys: {k: nodes[k] for k in keys if k in nodes}


def build(recorder: LedgerRecorder, progress: Callable[[int], None] | None = None) -> int:
    """Build the tree of a store made before it, from the log (resumable, idempotent); leaves added.

    Each batch is one transaction under the append lock: an interrupted build keeps
    what it committed and the next one goes on from there; an append meanwhile waits.
    """
    recorder.create_merkle()
    added = 0
    while True:
        with recorder.write_session() as session:
            tree = session.tree()
            size = tree.size()
            if size is None:
                raise StoreError(NOT_BUILT)
            end = session.head().position
            if size >= end:
                return added
            stop = min(end, size + BUILD_BATCH)
            leaves = [merkle.leaf_hash(export_line(decode_state(p, s)))
                      for p, s in session.states(size + 1, stop)]
            tree.write(merkle.extend(size, leaves, tree.read))
        added += len(leaves)
        if progress is not None:
            progress(len(leaves))


def check(recorder: LedgerRecorder, progress: Callable[[int], None] | None = None) -> list[str]:
    """Recompute the tree from the log and compare it with the stored one; the problems found (few)."""
    size, end = recorder.merkle_sizes()
    if size is None or (size == 0 and end > 0):
        return [NOT_BUILT]
    problems: list[str] = []
    if size != end:
        problems.append(f"the Merkle tree holds {size} leaves, the log {end} facts")
    upto = min(size, end)
    frontier: dict[Key, bytes] = {}
    done = 0
    for start in range(1, upto + 1, BUILD_BATCH):
        stop = min(upto, start + BUILD_BATCH - 1)
        leaves = [leaf for _, leaf in _log_leaves(recorder, start, stop)]
        rows = merkle.extend(done, leaves, _frontier_reader(frontier))
        with recorder.merkle_tree() as tree:
            stored = tree.read([(lv, ix) for lv, ix, _ in rows])
        for level, idx, h in rows:
            if stored.get((level, idx)) != h:
                what = f"position {idx + 1}" if level == 0 else f"the node at level {level}, index {idx}"
                problems.append(f"the Merkle tree differs from the log at {what}")
                if len(problems) >= 5:
                    return problems
        done += len(leaves)
        known = {**frontier, **{(lv, ix): h for lv, ix, h in rows}}
        frontier = {k: known[k] for k in merkle.frontier(done)}
        if progress is not None:
            progress(len(leaves))
    return problems


def tree_size(recorder: LedgerRecorder) -> int:
    """The tree's number of leaves (0 where there is no tree table)."""
    with recorder.merkle_tree() as tree:
        return tree.size() or 0
