"""The log as an RFC 9162 (section 2.1) Merkle tree, computed from stored complete subtrees.

What is stored is node ``(level, index)``: the hash of the perfect subtree over
leaves ``[index * 2**level, (index + 1) * 2**level)`` (0-based leaves; level 0 holds
the leaf hashes). A node is written once, when its last leaf arrives, and never
changes: appending leaf ``m`` completes the node of each level up to the number of
trailing zero bits of ``m + 1`` (two rows per leaf on average). Any tree of any size
splits, as RFC 9162 splits it, into at most ``log2 n`` such subtrees along its right
edge, and every sibling of an audit or consistency path is one of them or a perfect
subtree: a root or a proof reads ``O(log n)`` nodes, asked for in one batch.

Everything here is pure: a ``Reader`` gives node hashes for the keys asked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from ledger.hashing import sha256

Key = tuple[int, int]  # (level, index)
# Given every key it needs at once (one query), returns their hashes; a missing node is left out.
Reader = Callable[[Sequence[Key]], Mapping[Key, bytes]]

LEAF_PREFIX: Final = b"\x00"
NODE_PREFIX: Final = b"\x01"
EMPTY_ROOT: Final = sha256(b"").digest()  # MTH({}) (RFC 9162 2.1.1)


class MissingNode(LookupError):
    """A node the tree of this size needs is not stored (a store without its tree, or damaged)."""


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf)."""
    return sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return sha256(NODE_PREFIX + left + right).digest()


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _pieces(start: int, size: int) -> list[Key]:
    """The perfect subtrees (largest first) that the RFC's tree over ``[start, start + size)`` folds.

    ``start`` is a multiple of a power of two at least as large as ``size``'s highest
    bit, which holds for the whole log and for every range the RFC's recursion meets.
    """
    keys: list[Key] = []
    level = size.bit_length()
    while level > 0:
        level -= 1
        if size >> level & 1:
            keys.append((level, start >> level))
            start += 1 << level
    return keys


# Each proof is computed twice: first with a reader that only notes the keys asked
# for (the keys never depend on the hashes), then once more from one batch read.


class _Plan:
    """A reader noting which nodes a computation needs."""

    def __init__(self) -> None:
        self.keys: dict[Key, None] = {}

    def __call__(self, keys: Sequence[Key]) -> Mapping[Key, bytes]:
        self.keys.update(dict.fromkeys(keys))
        return dict.fromkeys(keys, EMPTY_ROOT)


def _batched(compute: Callable[[Reader], object], read: Reader) -> Reader:
    plan = _Plan()
    compute(plan)
    wanted = list(plan.keys)
    got = read(wanted) if wanted else {}
    missing = [k for k in wanted if k not in got]
    if missing:
        level, index = missing[0]
        raise MissingNode(f"the tree has no node at level {level}, index {index}")

    def reader(keys: Sequence[Key]) -> Mapping[Key, bytes]:
        return got

    return reader


def _range_hash(start: int, size: int, read: Reader) -> bytes:
    """MTH of leaves ``[start, start + size)`` (size >= 1), from its perfect subtrees."""
    keys = _pieces(start, size)
    got = read(keys)
    acc = got[keys[-1]]
    for key in reversed(keys[:-1]):
        acc = node_hash(got[key], acc)
    return acc


def root(size: int, read: Reader) -> bytes:
    """The root of the tree of the first ``size`` leaves (one batch read, at most log2 n nodes)."""
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(0, size, _batched(lambda r: _range_hash(0, size, r), read))


def _path(m: int, start: int, size: int, read: Reader) -> list[bytes]:
    # RFC 9162 2.1.3.1 PATH(m, D[start:start+size]), with MTH of ranges from stored subtrees.
    if size == 1:
        return []
    k = split(size)
    if m < k:
        return [*_path(m, start, k, read), _range_hash(start + k, size - k, read)]
    return [*_path(m - k, start + k, size - k, read), _range_hash(start, k, read)]


def inclusion_path(index: int, size: int, read: Reader) -> list[bytes]:
    """The audit path of 0-based leaf ``index`` in the tree of ``size`` leaves, leaf to root."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size}")
    return _path(index, 0, size, _batched(lambda r: _path(index, 0, size, r), read))


def _subproof(m: int, start: int, size: int, whole: bool, read: Reader) -> list[bytes]:
    # RFC 9162 2.1.4.1 SUBPROOF(m, D[start:start+size], b).
    if m == size:
        return [] if whole else [_range_hash(start, size, read)]
    k = split(size)
    if m <= k:
        return [*_subproof(m, start, k, whole, read), _range_hash(start + k, size - k, read)]
    return [*_subproof(m - k, start + k, size - k, False, read), _range_hash(start, k, read)]


def consistency_path(old: int, new: int, read: Reader) -> list[bytes]:
    """The consistency proof from the tree of ``old`` leaves to that of ``new`` (0 < old <= new)."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from {old} to {new}")
    if old == new:
        return []
    return _subproof(old, 0, new, True, _batched(lambda r: _subproof(old, 0, new, True, r), read))


def frontier(size: int) -> list[Key]:
    """The stored nodes an append to a tree of ``size`` leaves builds on (its right edge)."""
    return _pieces(0, size)


def extend(size: int, leaves: Iterable[bytes], read: Reader) -> list[tuple[int, int, bytes]]:
    """The rows (level, index, hash) of every level that these leaf hashes complete on a tree of ``size``.

    Reads the frontier (at most log2 n nodes, one batch).
    """
    edge = frontier(size)
    got = read(edge) if edge else {}
    missing = [key for key in edge if key not in got]
    if missing:
        raise MissingNode(f"the tree has no node at level {missing[0][0]}, index {missing[0][1]}")
    return fold(size, {level: got[level, idx] for level, idx in edge}, list(leaves), 0)


def parents(nodes: Sequence[bytes]) -> list[bytes]:
    """The node hashes of a level's pairs, left to right (an odd last node is not paired)."""
    sha = sha256
    prefix = NODE_PREFIX
    pairs = iter(nodes)
    return [sha(prefix + left + right).digest() for left, right in zip(pairs, pairs, strict=False)]


def fold(size: int, edge: dict[int, bytes], leaves: Sequence[bytes], lowest: int,
         pair: Callable[[list[bytes]], list[bytes]] = parents, level: int = 0,
         ) -> list[tuple[int, int, bytes]]:
    """Append leaf hashes to the tree of ``size`` leaves; the completed nodes of level ``lowest`` or more.

    ``edge`` maps each one-bit ``level`` of ``size`` to the hash of its perfect subtree
    (the tree's right edge, ``frontier``); it is updated in place to the new size's.
    One node hash per leaf on average, computed a level at a time by ``pair`` (one call per
    level: the interpreter's cost per hash is about half that of a loop per leaf); the write
    path passes one with OpenSSL's SHA-256 (``persistence.merkle_store``). With ``level``,
    ``leaves`` are the nodes of that level appended after the first ``size`` of them (the
    levels below were folded by the caller, and ``edge`` holds none of them).
    """
    rows: list[tuple[int, int, bytes]] = []
    nodes = list(leaves)
    start = size
    while nodes:
        if lowest <= level:
            rows.extend(zip([level] * len(nodes), range(start, start + len(nodes)), nodes, strict=True))
        if start & 1:  # the first is a right child: its left sibling is on the edge
            nodes.insert(0, edge.pop(level))
            start -= 1
        if len(nodes) & 1:  # the last is a left child still waiting for its sibling
            edge[level] = nodes.pop()
        nodes = pair(nodes)
        start >>= 1
        level += 1
    return rows


def build(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, straight from the RFC's definition (for checks, not for the store)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = split(n)
    return node_hash(build(leaves[:k]), build(leaves[k:]))


def hex_hash(digest: bytes) -> str:
    """``sha256:<64 lower-case hex>``."""
    return "sha256:" + digest.hex()


def parse_hash(text: str) -> bytes | None:
    """The digest of ``sha256:<64 lower-case hex>``, or None if ``text`` is not one."""
    if not (len(text) == 71 and text.startswith("sha256:")):
        return None
    body = text[7:]
    if body != body.lower():
        return None
    try:
        digest = bytes.fromhex(body)
    except ValueError:
        return None
    return digest if len(digest) == 32 else None  # fromhex skips spaces: "sha256:00 00 ..." is not one
