"""Reading the log's Merkle tree (``merkle_store``'s layout): a root, a proof, the leaf lines.

What a read needs, apart from ``merkle_store`` (the append hook, the leaves at link, the
build and the check, which name these from here): a report names its log by ``root_of``,
and importing the write path's code cost it about 0.7M instructions, most of it the
unmarshalling of code it never runs (issue 17). The layout is ``merkle_store``'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Final, TypeVar

import msgspec

from ledger import merkle
from ledger.errors import StoreError
from ledger.merkle import Key
from ledger.persistence.port import LedgerRecorder

if TYPE_CHECKING:
    from ledger.persistence.port import Tree

T = TypeVar("T")
TABLE: Final = "ledger_merkle"
HASH_SIZE: Final = 32
Row = tuple[int, int, bytes]  # a stored node: level, index, hash
STORED_FROM: Final = 6  # the lowest level stored: a node covers 64 leaves
TILE: Final = 1 << STORED_FROM
NOT_BUILT: Final = (
    "this store's Merkle tree is not built yet (the store was made by an earlier version): "
    "run `ledger init` once, with the role that owns its tables"
)
BEHIND: Final = "this store's Merkle tree is built only for the first "


def behind(covered: int, end: int) -> str:
    """A build by ``ledger init`` stopped part-way: its committed nodes cover the log's first leaves."""
    return (f"{BEHIND}{covered} of the log's {end} facts in complete tiles (a `ledger init` was "
            "interrupted): run `ledger init` again, with the role that owns its tables")


def tiles(size: int) -> int:
    """The leaves of ``size`` that complete tiles hold (``size`` rounded down to 64)."""
    return size >> STORED_FROM << STORED_FROM


# --- leaves ------------------------------------------------------------------------------
#
# The leaf is the ``ledger events`` line: the content's members with id, position and
# recorded_at merged in, keys sorted. ``export_line`` decodes the fact into its struct and
# encodes it back; at append the three members are spliced into the canonical content
# instead (``leaf_hashes``), and on reads the stored state's raw JSON members are merged
# (``leaf_line``). Both give the same bytes (``tests/integration/test_merkle_store.py``);
# ``ledger verify``, ``checkpoint verify`` and ``build`` use ``export_line`` itself.

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


# --- reading the tree: stored nodes, and the levels below them from the log --------------


class _Reader:
    """``merkle.Reader`` over a transaction: stored nodes, and nodes below ``STORED_FROM`` from the log.

    A lower node lies in one tile; each tile a read needs is one range read of the log, the
    whole tile, whose leaves are hashed as nodes need them (``tiles_read`` counts the tiles,
    ``queries`` the reads of stored nodes). What it has read or computed it keeps for the
    transaction's life: a command's root and proof (or two roots and a consistency proof) ask
    for many of the same nodes and tiles, and nothing is read twice (on a store of millions of
    facts each read lands on pages no cache holds: proofs at 10M facts took 2.5 times as long
    as at 100k, issue 19).
    """

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.tiles_read = 0
        self.queries = 0
        self._known: dict[Key, bytes] = {}
        self._leaves: dict[int, bytes] = {}  # 0-based leaf hashes computed from the log
        self._rows: dict[int, bytes] = {}  # the stored states of the tiles read, by 0-based leaf
        self._tiles: set[int] = set()

    def __call__(self, keys: Sequence[Key]) -> Mapping[Key, bytes]:
        known = self._known
        missing = [k for k in keys if k not in known]
        stored = [k for k in missing if k[0] >= STORED_FROM]
        if stored:
            self.queries += 1
            known.update(self.tree.read(stored))
        low = [k for k in missing if k[0] < STORED_FROM]
        if low:
            known.update(self._lower(low))
        return {k: known[k] for k in keys if k in known}

    def _lower(self, keys: list[Key]) -> dict[Key, bytes]:
        leaves, rows = self._leaves, self._rows
        for level, idx in keys:
            first, end = idx << level, (idx + 1) << level
            tile = first >> STORED_FROM
            if tile not in self._tiles:  # the whole tile at once: a later key may need its other leaves
                self._tiles.add(tile)
                self.tiles_read += 1
                start = tile << STORED_FROM
                for position, state in self.tree.states(start + 1, start + TILE):
                    rows[position - 1] = state
            for i in range(first, end):
                if i not in leaves:
                    stored = rows.get(i)
                    if stored is None:
                        return {}  # the log is shorter than the tree asked for: the node is missing
                    leaves[i] = merkle.leaf_hash(leaf_line(i + 1, stored))
        return {(level, idx): merkle.build([leaves[i] for i in range(idx << level, (idx + 1) << level)])
                for level, idx in keys}


class TreeView:
    """What the proofs read: the stored tree, checked to cover the log."""

    def __init__(self, recorder: LedgerRecorder) -> None:
        self.recorder = recorder

    def size(self) -> int:
        """The log's size; StoreError if the tree does not cover it."""
        covered, end = self.recorder.merkle_sizes()
        if covered is None or covered < tiles(end):
            raise StoreError(NOT_BUILT)
        return end

    def root(self, size: int) -> bytes:
        with self.recorder.merkle_tree() as tree:
            return _named(lambda: merkle.root(size, _Reader(tree)))

    def inclusion(self, index: int, size: int) -> tuple[bytes, list[bytes], bytes]:
        """(leaf hash, audit path, root) of 0-based leaf ``index`` in the tree of ``size``."""
        with self.recorder.merkle_tree() as tree:
            states = tree.states(index + 1, index + 1)
            if not states:
                raise StoreError(f"the log has no fact at position {index + 1}")
            leaf = merkle.leaf_hash(leaf_line(*states[0]))
            read = _Reader(tree)
            path = _named(lambda: merkle.inclusion_path(index, size, read))
            return leaf, path, _named(lambda: merkle.root(size, read))

    def consistency(self, old: int, new: int) -> tuple[bytes, bytes, list[bytes]]:
        """(old root, new root, proof)."""
        with self.recorder.merkle_tree() as tree:
            read = _Reader(tree)
            return (_named(lambda: merkle.root(old, read)), _named(lambda: merkle.root(new, read)),
                    _named(lambda: merkle.consistency_path(old, new, read)))


def root_of(recorder: LedgerRecorder, size: int) -> str | None:
    """The root of the first ``size`` facts as ``sha256:<hex>``, or None where the tree is not built.

    What a report names its log by (``Ledger.log_checkpoint``): here, not in ``ledger.checkpoint``,
    whose signatures and proofs a report does not import (issue 17).
    """
    view = TreeView(recorder)
    try:
        view.size()
        return merkle.hex_hash(view.root(size))
    except StoreError:
        return None


def _named(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except merkle.MissingNode as exc:
        raise StoreError(f"{NOT_BUILT} ({exc})") from None
