"""An RFC 9162 verifier written from the RFC's pseudo-code, independent of ``ledger.merkle``.

Section 2.1.3.2 (verifying an inclusion proof) and 2.1.4.2 (verifying consistency
between two tree heads), step by step; nothing of the ledger is imported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def leaf(data: bytes) -> bytes:
    """The RFC's leaf hash, HASH(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) over leaf data, 2.1.1, by the definition."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaf(leaves[0])
    k = 1
    while k * 2 < n:
        k *= 2
    return _node(mth(leaves[:k]), mth(leaves[k:]))


def verify_inclusion(leaf_index: int, tree_size: int, leaf_hash: bytes, path: Sequence[bytes],
                     root: bytes) -> bool:
    """2.1.3.2: whether ``path`` proves ``leaf_hash`` at ``leaf_index`` under ``root``."""
    if leaf_index >= tree_size or leaf_index < 0 or len(leaf_hash) != 32:
        return False
    fn, sn = leaf_index, tree_size - 1
    r = leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(p, r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, first_hash: bytes, second_hash: bytes,
                       path: Sequence[bytes]) -> bool:
    """2.1.4.2: whether ``path`` proves the tree of ``second`` extends that of ``first``."""
    if first <= 0 or first > second:
        return False
    if first == second:  # the RFC's proof is empty here; the heads must be the same
        return not path and first_hash == second_hash
    if not path:
        return False
    path = list(path)
    if first & (first - 1) == 0:  # an exact power of 2
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _node(c, fr)
            sr = _node(c, sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _node(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0
