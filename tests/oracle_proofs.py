"""An outside auditor's tools for INTERFACE.md section 7, written from RFC 9162 and the spec alone.

Nothing of the ledger is imported (not ``ledger.merkle``, not ``ledger.checkpoint``, not the
other verifier in ``tests/rfc9162.py``). The proofs are *generated* here by the RFC's own
definitions (2.1.1 MTH, 2.1.3.1 PATH, 2.1.4.1 PROOF/SUBPROOF) and compared with what the
ledger prints, element for element, and the ledger's proofs are also *checked* by the RFC's
verification algorithms (2.1.3.2, 2.1.4.2). A checkpoint is parsed by its printed form (keys
sorted, no spaces). The store is tampered with as its superuser would: raw SQL with the
append-only triggers dropped, the chain and the tree recomputed from their published
definitions (docs/reliability.md, section 7).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

HEX = re.compile(r"sha256:[0-9a-f]{64}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")


def sha(*parts: bytes) -> bytes:
    return hashlib.sha256(b"".join(parts)).digest()


def leaf(line: bytes) -> bytes:
    return sha(b"\x00", line)


def node(left: bytes, right: bytes) -> bytes:
    return sha(b"\x01", left, right)


def text(h: bytes) -> str:
    return "sha256:" + h.hex()


def raw(h: str) -> bytes:
    assert HEX.fullmatch(h), h
    return bytes.fromhex(h[7:])


def split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


class Tree:
    """The RFC's definitions over the leaf data ``lines`` (memoised by range, so every size is cheap)."""

    def __init__(self, lines: Sequence[bytes]) -> None:
        self.leaves = [leaf(line) for line in lines]
        self.mth = lru_cache(maxsize=None)(self._mth)

    def _mth(self, lo: int, hi: int) -> bytes:  # MTH(D[lo:hi])
        if hi - lo == 1:
            return self.leaves[lo]
        k = split(hi - lo)
        return node(self.mth(lo, lo + k), self.mth(lo + k, hi))

    def root(self, n: int) -> bytes:
        return hashlib.sha256(b"").digest() if n == 0 else self.mth(0, n)

    def path(self, m: int, lo: int, hi: int) -> list[bytes]:
        """PATH(m, D[lo:hi]) of 2.1.3.1 (m relative to lo)."""
        n = hi - lo
        if n == 1:
            return []
        k = split(n)
        if m < k:
            return [*self.path(m, lo, lo + k), self.mth(lo + k, hi)]
        return [*self.path(m - k, lo + k, hi), self.mth(lo, lo + k)]

    def subproof(self, m: int, lo: int, hi: int, b: bool) -> list[bytes]:
        """SUBPROOF(m, D[lo:hi], b) of 2.1.4.1."""
        n = hi - lo
        if m == n:
            return [] if b else [self.mth(lo, hi)]
        k = split(n)
        if m <= k:
            return [*self.subproof(m, lo, lo + k, b), self.mth(lo + k, hi)]
        return [*self.subproof(m - k, lo + k, hi, False), self.mth(lo, lo + k)]

    def consistency(self, m: int, n: int) -> list[bytes]:
        return [] if m == n else self.subproof(m, 0, n, True)


def verify_inclusion(index: int, size: int, leaf_hash: bytes, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn //= 2
                sn //= 2
        else:
            r = node(r, p)
        fn //= 2
        sn //= 2
    return sn == 0 and r == root


def verify_consistency(m: int, n: int, first: bytes, second: bytes, path: Sequence[bytes]) -> bool:
    """RFC 9162 2.1.4.2, step by step (equal sizes: an empty proof and equal roots, as the vectors)."""
    if m == n:
        return not path and first == second
    if not 0 < m < n or not path:
        return False
    proof = [first, *path] if m & (m - 1) == 0 else list(path)
    fn, sn = m - 1, n - 1
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            while fn % 2 == 0 and fn != 0:
                fn //= 2
                sn //= 2
        else:
            sr = node(sr, c)
        fn //= 2
        sn //= 2
    return fr == first and sr == second and sn == 0


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_checkpoint(out: bytes) -> dict[str, Any]:
    """A printed checkpoint, checked for the exact form of section 7 (one line, canonical JSON)."""
    assert out.endswith(b"\n"), out
    assert out.count(b"\n") == 1, out
    body = json.loads(out)
    signed = "signature" in body
    names = ["recorded_at", "root", "size", *(["key_id", "signature"] if signed else [])]
    assert list(body) == names, body
    assert out[:-1] == canonical({k: body[k] for k in names[:3]})[:-1] + (
        b',"key_id":%s,"signature":%s}' % (json.dumps(body["key_id"]).encode(),
                                          json.dumps(body["signature"]).encode()) if signed else b"}")
    assert type(body["size"]) is int
    assert body["size"] >= 1
    assert HEX.fullmatch(body["root"]), body
    assert TIMESTAMP.fullmatch(body["recorded_at"]), body
    return body


def check_signature(body: dict[str, Any], public_pem: bytes) -> None:
    """Section 7's signature: Ed25519 over the canonical JSON of the three fields; key_id of the raw key."""
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    key: Any = load_pem_public_key(public_pem)
    raw_key = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert body["key_id"] == "sha256:" + hashlib.sha256(raw_key).hexdigest()
    signature = base64.b64decode(body["signature"], validate=True)
    assert len(signature) == 64
    key.verify(signature, canonical({k: body[k] for k in ("recorded_at", "root", "size")}))


def check_inclusion(out: bytes, tree: Tree, lines: Sequence[bytes], position: int, size: int) -> None:
    """``ledger proof inclusion`` output: form, the RFC's own PATH, and the RFC's verifier."""
    assert out.endswith(b"\n"), out
    assert out.count(b"\n") == 1, out
    body = json.loads(out)
    assert list(body) == ["position", "size", "leaf_hash", "path", "root"], body
    assert out[:-1] == json.dumps(body, separators=(",", ":")).encode()
    assert (body["position"], body["size"]) == (position, size)
    leaf_hash, path, root = raw(body["leaf_hash"]), [raw(h) for h in body["path"]], raw(body["root"])
    assert leaf_hash == leaf(lines[position - 1])
    assert root == tree.root(size)
    assert path == tree.path(position - 1, 0, size), (position, size)
    assert verify_inclusion(position - 1, size, leaf_hash, path, root)
    if path:  # and a verifier refuses it once altered
        assert not verify_inclusion(position - 1, size, leaf_hash, path[:-1], root)
        assert not verify_inclusion(position - 1, size, leaf_hash, [*path, path[0]], root)


def check_consistency(out: bytes, tree: Tree, m: int, n: int) -> None:
    assert out.endswith(b"\n"), out
    assert out.count(b"\n") == 1, out
    body = json.loads(out)
    assert list(body) == ["from", "to", "from_root", "to_root", "path"], body
    assert out[:-1] == json.dumps(body, separators=(",", ":")).encode()
    assert (body["from"], body["to"]) == (m, n)
    first, second, path = raw(body["from_root"]), raw(body["to_root"]), [raw(h) for h in body["path"]]
    assert (first, second) == (tree.root(m), tree.root(n))
    assert path == tree.consistency(m, n), (m, n)
    assert verify_consistency(m, n, first, second, path)
    if m < n:
        assert not verify_consistency(m, n, first, second, path[:-1])
        assert not verify_consistency(m, n, node(first, first), second, path)


# --- the store as its superuser sees it ----------------------------------------------------------


def state_parts(state: bytes) -> tuple[bytes, bytes, dict[str, Any], str]:
    """A stored state ``[id, recorded_at, content, link]`` (JSON), as the tables hold it."""
    id_json, at_json, content, link = json.loads(state)
    return (json.dumps(id_json, ensure_ascii=False).encode(), json.dumps(at_json).encode(), content, link)


def content_json(content: dict[str, Any]) -> bytes:
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def relinked(states: Sequence[bytes], edit: Callable[[int, dict[str, Any]], None]) -> list[bytes]:
    """Every state again with ``edit(position, content)`` applied and the chain recomputed from the start.

    A link is SHA-256 of ``prev \\n position \\n recorded_at \\n id \\n content`` (hex), from 64 zeros:
    what an attacker with the tables and docs/reliability.md recomputes after an edit.
    """
    prev, out = b"0" * 64, []
    for position, state in enumerate(states, 1):
        id_json, at_json, content, _ = state_parts(state)
        edit(position, content)
        canon = content_json(content)
        data = b"%s\n%d\n%s\n%s\n%s" % (prev, position, at_json, id_json, canon)
        prev = hashlib.sha256(data).hexdigest().encode()
        out.append(b'[%s,%s,%s,"%s"]' % (id_json, at_json, canon, prev))
    return out


def event_line(position: int, state: bytes) -> bytes:
    """The ``ledger events`` line of a stored state: its content with id, position and recorded_at, sorted."""
    id_json, at_json, content, _ = state_parts(state)
    body = {**content, "id": json.loads(id_json), "position": position, "recorded_at": json.loads(at_json)}
    return content_json(body)


def tile_nodes(lines: Sequence[bytes], lowest: int = 6) -> list[tuple[int, int, bytes]]:
    """Every complete perfect subtree of 2**lowest leaves and up: (level, index, hash)."""
    tree, rows = Tree(lines), []
    level = lowest
    while (1 << level) <= len(lines):
        width = 1 << level
        rows += [(level, i, tree.mth(i * width, (i + 1) * width)) for i in range(len(lines) // width)]
        level += 1
    return rows
