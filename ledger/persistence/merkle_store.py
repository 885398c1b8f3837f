"""The log's Merkle tree (``ledger.merkle``) in the store: append hook, build and check.

Size: the stored layout (tiles: nodes of 64 leaves and up), the leaf lines built at link
time, the build and the check belong together: each relies on the same layout. The reads
(a root, a proof, the leaf lines read back, ``TreeView``, ``root_of``) are in
``merkle_read``, which a report imports alone (issue 17); readers import them from there.

Table ``ledger_merkle (level, idx, hash)``: one row per complete perfect subtree of
``STORED_FROM`` levels or more (64 leaves and up), written by the transaction that
appends its last leaf, append-only like the log (each backend's SQL: ``sqlite/tree.py``,
``postgres/tree.py``). The levels below are not stored: a node of fewer than 64 leaves
is recomputed from the log's rows when a root or a proof needs one (at most two tiles
of 64 rows, one range read each). The tree covers the log when every complete tile of
the log has its node; the last, partial tile is always read from the log. A store made
before the tree has no table: its appends leave the tree alone and ``build`` (``ledger
init``) fills it from the log, resumably, under the append lock; reads on a store whose
tree is behind its log say so and never build it. A store made by the version that
stored every level keeps those rows (the table is append-only): reads ignore them and
``check`` compares them too.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
import msgspec.inspect as mi

from ledger import merkle
from ledger.errors import StoreError
from ledger.events import FACT_TAGS, decode_state, export_line
from ledger.merkle import Key
from ledger.persistence.merkle_read import (
    _LINE,
    HASH_SIZE,
    NOT_BUILT,
    STORED_FROM,
    TILE,
    Row,
    _Reader,
    behind,
    tiles,
)
from ledger.persistence.port import LedgerRecorder

if TYPE_CHECKING:
    from ledger.persistence.port import Tree
    from ledger.persistence.rows import Prepared  # the write path's rows: a report makes none

BUILD_BATCH: Final = 320 * TILE  # leaves per transaction when building a tree from the log (20,480)


# --- leaves at link (what they are: ``merkle_read``'s comment on leaves) -----------------

_MEMBERS: Final = msgspec.json.Decoder(dict[str, msgspec.Raw])


def _merged_line(canon: bytes, id_json: bytes, position: int, at_json: bytes) -> bytes:
    body = _MEMBERS.decode(canon)
    body["id"] = msgspec.Raw(id_json)
    body["position"] = msgspec.Raw(b"%d" % position)
    body["recorded_at"] = msgspec.Raw(at_json)
    return _LINE.encode(body)


_SCALARS: Final = (mi.StrType, mi.IntType, mi.FloatType, mi.BoolType, mi.DateTimeType, mi.DateType,
                   mi.TimeType, mi.DecimalType, mi.NoneType, mi.LiteralType, mi.EnumType)


def _scalar(t: mi.Type) -> bool:
    if isinstance(t, mi.UnionType):
        return all(_scalar(u) for u in t.types)
    return isinstance(t, _SCALARS)


Marks = tuple[tuple[bytes, ...], tuple[bytes, ...], tuple[bytes, ...]]


def _marks() -> tuple[dict[str, Marks], dict[str, Marks]]:
    """Per type tag, for id, position and recorded_at: the keys that may follow it, as ``"key":``.

    Each list stops at the first key every fact of the type has (one ``find`` then
    suffices). Split into the types whose members are all scalars (flat, always) and the
    others (flat only if their content holds no bracket).
    """
    envelope = ("id", "position", "recorded_at")
    flat: dict[str, Marks] = {}
    nested: dict[str, Marks] = {}
    for cls, tag in FACT_TAGS.items():
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        fields = [f for f in info.fields if f.name not in envelope]
        tag_field = info.tag_field or "type"
        required = {f.encode_name for f in fields if f.required} | {tag_field}
        keys = sorted({f.encode_name for f in fields} | {tag_field})
        after: list[tuple[bytes, ...]] = []
        for name in envelope:
            marks: list[bytes] = []
            for key in (k for k in keys if k > name):
                marks.append(b'"%s":' % key.encode())
                if key in required:
                    break
            after.append(tuple(marks))
        (flat if all(_scalar(f.type) for f in fields) else nested)[tag] = (after[0], after[1], after[2])
    return flat, nested


# Flat types whose three successors are each one key every fact of the type has. In a flat
# content every unescaped ``"key":`` is one of its own members, once: the content is cut at the
# last (so the only) ``"key":`` of each successor with ``rpartition``, from the right (the keys
# an envelope member precedes lie in the content's second half, so less is searched than from
# the left), and the line, 0x00 prefix included, is one format of the pieces. Per type, how they
# go in (0: together before one key; 1: id and position before one key, recorded_at before a
# later one; 2: id before one key, position and recorded_at before a later one; 3: each before
# its own key), the keys from the last to the first, and the format. Two C calls a leaf to cut,
# one to format and three to hash (a copied empty state, its update, its digest: cheaper than
# the constructor's two, hAB): the replacements and the copied prefixed state this replaces took
# more, and a leaf's cost is its calls (docs/decisions.md, issue 19, hT).
Plan = tuple[int, bytes, bytes, bytes, bytes]


def _simple(flat: Mapping[str, Marks]) -> dict[str, Plan]:
    out: dict[str, Plan] = {}
    for tag, (ka, kb, kc) in flat.items():
        if len(ka) == len(kb) == len(kc) == 1:
            a, b, c = ka[0], kb[0], kc[0]
            ea, eb, ec = (k.replace(b"%", b"%%") for k in (a, b, c))
            line = b'\x00%s"id":%s,'
            if a == b == c:
                out[tag] = (0, a, b"", b"", line + b'"position":%d,"recorded_at":%s,' + ea + b"%s")
            elif a == b:
                out[tag] = (1, c, a, b"", line + b'"position":%d,' + ea + b'%s"recorded_at":%s,' + ec + b"%s")
            elif b == c:
                out[tag] = (2, b, a, b"", line + ea + b'%s"position":%d,"recorded_at":%s,' + eb + b"%s")
            else:
                line += ea + b'%s"position":%d,' + eb
                out[tag] = (3, c, b, a, line + b'%s"recorded_at":%s,' + ec + b"%s")
    return out


@functools.cache
def _tables() -> tuple[dict[str, Marks], dict[str, Marks], dict[str, Plan]]:
    """The flat and nested marks and the simple forms, made on the write path's first use.

    Not at import: a report imports this module for the checkpoint root only, and reading
    every fact type's fields (``msgspec.inspect``) cost it about 23M instructions.
    """
    flat, nested = _marks()
    return flat, nested, _simple(flat)


def _at(canon: bytes, keys: tuple[bytes, ...]) -> int:
    for key in keys:
        i = canon.find(key)
        if i >= 0:
            return i
    return -1


@functools.cache
def _openssl_sha256() -> Callable[..., Any]:
    import hashlib  # here, on the write path: OpenSSL's SHA-256, faster on a leaf's line; reads need none

    return hashlib.sha256


def leaf_hashes(rows: Sequence[Prepared], at_jsons: Sequence[bytes], start: int) -> list[bytes]:
    """The leaf hashes of rows linked at ``start``, ``start + 1``... (32 bytes each).

    ``at_jsons``: each row's recorded_at as its state holds it. A content without nested
    arrays or objects is flat: every ``"key":`` in it, with its quotes unescaped, is one
    of its own members (a quote inside a string is escaped, and a string value is followed
    by a comma or the end), so the member sorting after ``id`` (and after ``position``,
    ``recorded_at``) is the ``"key":`` of the first later key the type always has, and the
    line is that content with the three members put in before those keys. Contents that
    may nest (a contract's policy, pinned dates) and hold a bracket merge their decoded
    members.
    """
    out: list[bytes] = []
    add = out.append
    # A copy of an empty state, updated: the constructor looks the digest up by name at each call
    # (``EVP_MD_fetch``), 0.03-0.05 us a leaf more (docs/decisions.md, issue 19, hAB).
    fresh = _openssl_sha256()().copy
    plans = _tables()[2].get
    position = start
    # Unpacked in the loop header: a NamedTuple's attributes cost more than its items.
    for (_, _, id_json, topic, _, canon, _, _), at_json in zip(rows, at_jsons, strict=True):
        plan = plans(topic)
        if plan is not None:  # the usual case: each member's successor is a key every fact has
            kind, last, key, earlier, line = plan
            head, found, tail = canon.rpartition(last)
            if kind == 1:
                first, found_a, middle = head.rpartition(key)
                if found and found_a:
                    h = fresh()
                    h.update(line % (first, id_json, position, middle, at_json, tail))
                    add(h.digest())
                    position += 1
                    continue
            elif kind == 2:
                first, found_a, middle = head.rpartition(key)
                if found and found_a:
                    h = fresh()
                    h.update(line % (first, id_json, middle, position, at_json, tail))
                    add(h.digest())
                    position += 1
                    continue
            elif kind == 0:
                if found:
                    h = fresh()
                    h.update(line % (head, id_json, position, at_json, tail))
                    add(h.digest())
                    position += 1
                    continue
            else:
                head, found_b, later = head.rpartition(key)
                first, found_a, middle = head.rpartition(earlier)
                if found and found_b and found_a:
                    h = fresh()
                    h.update(line % (first, id_json, middle, position, later, at_json, tail))
                    add(h.digest())
                    position += 1
                    continue
        add(_leaf_slow(topic, canon, id_json, position, at_json))
        position += 1
    return out


def _leaf_slow(topic: str, canon: bytes, id_json: bytes, position: int, at_json: bytes) -> bytes:
    """A leaf whose type is not one of the simple forms, or whose content lacks an expected key."""
    a = b = c = -1
    flat, nested, _ = _tables()
    keys = flat.get(topic)
    if keys is None:
        keys = nested.get(topic)
        if keys is not None and (canon.find(b"{", 1) >= 0 or canon.find(b"[") >= 0):
            keys = None
    if keys is not None:
        a, b, c = _at(canon, keys[0]), _at(canon, keys[1]), _at(canon, keys[2])
    if a >= 0 and b >= 0 and c >= 0:
        line = b'%s"id":%s,%s"position":%d,%s"recorded_at":%s,%s' % (
            canon[:a], id_json, canon[a:b], position, canon[b:c], at_json, canon[c:])
    else:
        line = _merged_line(canon, id_json, position, at_json)
    return bytes(_openssl_sha256()(merkle.LEAF_PREFIX + line).digest())


def _split(leaves: bytes) -> list[bytes]:
    return [leaves[i : i + HASH_SIZE] for i in range(0, len(leaves), HASH_SIZE)]


@functools.cache
def _node_state() -> Callable[[], Any]:
    import hashlib  # here, on the write path: reads need no OpenSSL

    return hashlib.sha256(merkle.NODE_PREFIX).copy


def _parents(nodes: list[bytes]) -> list[bytes]:
    """``merkle.parents`` with OpenSSL's SHA-256, continuing a state that has taken the 0x01 prefix.

    ``copy``, then two ``update`` calls: no concatenation, and OpenSSL's call costs less than
    the builtin's for these 65 bytes (0.47 against 0.69 us a leaf, measured).
    """
    fresh = _node_state()
    out: list[bytes] = []
    add = out.append
    pairs = iter(nodes)
    for left, right in zip(pairs, pairs, strict=False):
        h = fresh()
        h.update(left)
        h.update(right)
        add(h.digest())
    return out


def fold(size: int, edge: dict[int, bytes], leaves: list[bytes], lowest: int) -> list[tuple[int, int, bytes]]:
    """``merkle.fold`` for the write path: the same rows, node hashes by OpenSSL (``_parents``)."""
    return merkle.fold(size, edge, leaves, lowest, _parents)


_PAIRS: Final = struct.Struct(f"{2 * HASH_SIZE}s").iter_unpack  # a run of leaf pairs, 64 bytes each


def fold_packed(size: int, edge: dict[int, bytes], packed: bytes, lowest: int) -> list[Row]:
    """``fold`` of leaf hashes packed 32 bytes each, the first level hashed from the packed bytes.

    Each pair of leaves is one 64-byte slice of ``packed``: no list of 32-byte leaves is made
    (cutting them cost about a quarter of the fold). Levels of ``lowest`` or more only (at
    least 1: no leaf row); ``edge`` as in ``merkle.fold``.
    """
    if lowest < 1:
        return fold(size, edge, _split(packed), lowest)
    fresh = _node_state()
    firsts: list[bytes] = []
    add = firsts.append
    at, end = 0, len(packed)
    if size & 1 and end:  # the first leaf is a right child: its left sibling is on the edge
        h = fresh()
        h.update(edge.pop(0))
        h.update(packed[:HASH_SIZE])
        add(h.digest())
        at = HASH_SIZE
    if (end - at) & HASH_SIZE:  # an odd leaf left over: a left child still waiting for its sibling
        end -= HASH_SIZE
        edge[0] = packed[end:]
    # Each pair cut by ``struct`` in C rather than sliced by index (0.364 against 0.392 us a node).
    for (pair,) in _PAIRS(memoryview(packed)[at:end]):
        h = fresh()
        h.update(pair)
        add(h.digest())
    return merkle.fold(size >> 1, edge, firsts, lowest, _parents, 1)


class Folder:
    """The nodes of ``STORED_FROM`` and up that each batch of leaves completes, from a right edge on.

    For the writer of an import (``append.append_packed``): from the tree's right edge where
    the import starts (``start_edge``, read in its transaction), it folds the leaf hashes of
    each batch that the packing process hashed, and ``append_leaves`` inserts the rows beside
    the facts, in the same transaction. The fold is here and not in the packing process because
    that one is the import's longer half (docs/decisions.md, issue 19, hN).
    """

    def __init__(self, size: int, edge: Mapping[int, bytes]) -> None:
        self.size = size
        self.edge = dict(edge)

    def nodes(self, leaves: bytes | list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
        """The rows of a batch's leaf hashes (32 bytes each, as ``Packed.leaves`` holds them)."""
        if not isinstance(leaves, bytes):
            raise StoreError("import: the packed batch carries Merkle nodes, not leaf hashes")
        got = fold_packed(self.size, self.edge, leaves, STORED_FROM)
        self.size += len(leaves) // HASH_SIZE
        return got

    def rows(self, leaves: list[bytes]) -> list[tuple[int, int, bytes]]:
        """The rows of a batch's leaf hashes given one by one."""
        return self.nodes(b"".join(leaves))



def _edge(read: Callable[[Sequence[Key]], Mapping[Key, bytes]], size: int) -> dict[int, bytes]:
    """The right edge of the tree of ``size`` (``merkle.fold``'s ``edge``)."""
    keys = merkle.frontier(size)
    got = read(keys) if keys else {}
    missing = [k for k in keys if k not in got]
    if missing:
        raise merkle.MissingNode(f"the tree has no node at level {missing[0][0]}, index {missing[0][1]}")
    return {level: got[level, idx] for level, idx in keys}


def start_edge(tree: Tree, size: int) -> dict[int, bytes] | None:
    """The right edge of the tree of ``size`` leaves, None if the tree does not cover them.

    Read by the writer of an import, in its transaction, to fold the import's leaves from
    (``Folder``): its lower part comes from the log's last partial tile.
    """
    if tree.covered() != tiles(size):
        return None
    return _edge(_Reader(tree), size)


def append_leaves(tree: Tree, start: int, count: int, leaves: bytes | list[tuple[int, int, bytes]]) -> None:
    """The append hook: write the nodes that ``count`` leaves appended at position ``start`` complete.

    Called inside the transaction that inserts the rows (after them). Only when the tree
    covers the log up to where they begin: a store whose tree is not built (or is behind)
    keeps it so for ``build``. ``leaves`` is either the leaf hashes (32 bytes each): the
    right edge's lower part is then recomputed from the log's last partial tile (at most
    63 rows) and the nodes folded here; or the node rows themselves, folded by an import's
    writer from the edge it read in this transaction (``start_edge``, ``Folder``), which are
    checked to be exactly the tiles these leaves complete. A batch
    writes about one row per 32 leaves.
    """
    if count == 0:
        return
    size = start - 1
    if tree.covered() != tiles(size):
        return
    if isinstance(leaves, list):
        first, end = tiles(size) >> STORED_FROM, tiles(size + count) >> STORED_FROM
        tiled = [idx for level, idx, _ in leaves if level == STORED_FROM]
        if tiled != list(range(first, end)):
            raise StoreError(f"append: the Merkle nodes packed for positions {start} to {size + count} "
                             f"are not that batch's")
        if leaves:
            tree.write(leaves)
        return
    if len(leaves) != count * HASH_SIZE:
        raise StoreError(f"append: {len(leaves) // HASH_SIZE} leaf hashes for {count} facts")
    rows = fold_packed(size, _edge(_Reader(tree), size), leaves, STORED_FROM)
    if rows:
        tree.write(rows)



# --- from the log: the root of a checkpoint, the build, the check -------------------------


class LogAltered(StoreError):
    """The log cannot give the leaves asked for: a position is missing, or a stored fact no longer decodes."""


def _log_leaves(recorder: LedgerRecorder, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
    """(position, leaf hash) of the log from ``start`` to ``stop``, recomputed from the facts.

    Through ``export_line`` of the decoded fact: the check does not trust the shortcuts. A
    stored state that does not decode (edited behind the ledger's back) is ``LogAltered``.
    """
    records, last = recorder.read_records(start, stop), start - 1
    while True:
        try:
            rec = next(records, None)
        except (msgspec.DecodeError, ValueError, TypeError) as exc:  # not JSON, not UTF-8, NULL, wrong shape
            raise LogAltered(f"the fact after position {last} is no longer a valid event ({exc})") from None
        if rec is None:
            return
        last = rec.position
        yield rec.position, merkle.leaf_hash(export_line(rec))


def log_root(recorder: LedgerRecorder, size: int) -> bytes:
    """The root of the first ``size`` facts computed from the log itself, not from the stored tree.

    ``LogAltered`` if the log has no such first ``size`` facts (one missing, or no longer decoding).
    """
    edge: dict[int, bytes] = {}
    count = folded = 0
    leaves: list[bytes] = []
    for position, leaf in _log_leaves(recorder, 1, size):
        if position != count + 1:
            raise LogAltered(f"the log has no fact at position {count + 1}")
        leaves.append(leaf)
        count += 1
        if len(leaves) == BUILD_BATCH:
            merkle.fold(folded, edge, leaves, 64)
            folded, leaves = count, []
    merkle.fold(folded, edge, leaves, 64)
    if count != size:
        raise LogAltered(f"the log holds {count} facts, fewer than {size}")
    return _edge_root(edge)


def _edge_root(edge: Mapping[int, bytes]) -> bytes:
    """The root of the tree whose right edge is ``edge`` (RFC 9162: the pieces folded from the right)."""
    if not edge:
        return merkle.EMPTY_ROOT
    levels = sorted(edge)
    acc = edge[levels[0]]
    for level in levels[1:]:
        acc = merkle.node_hash(edge[level], acc)
    return acc


def to_build(recorder: LedgerRecorder) -> int | None:
    """The facts ``build`` would hash (0: only the table to create), or None if the tree covers the log."""
    covered, end = recorder.merkle_sizes()
    if covered is not None and covered >= tiles(end):
        return None
    return tiles(end) - (covered or 0)


def build(recorder: LedgerRecorder, progress: Callable[[int], None] | None = None) -> int:
    """Build the tree of a store made before it, from the log (resumable, idempotent); leaves hashed.

    Each batch is one transaction under the append lock: an interrupted build keeps
    what it committed and the next one goes on from there; an append meanwhile waits.
    Only complete tiles have nodes: the log's last partial tile is read when needed.
    """
    recorder.create_merkle()
    added = 0
    while True:
        with recorder.write_session() as session:
            tree = session.tree()
            covered = tree.covered()
            if covered is None:
                raise StoreError(NOT_BUILT)
            end = tiles(session.head().position)
            if covered >= end:
                return added
            stop = min(end, covered + BUILD_BATCH)
            leaves = [merkle.leaf_hash(export_line(decode_state(p, s)))
                      for p, s in session.states(covered + 1, stop)]
            tree.write(merkle.fold(covered, _edge(tree.read, covered), leaves, STORED_FROM))
        added += len(leaves)
        if progress is not None:
            progress(len(leaves))


def check(recorder: LedgerRecorder, progress: Callable[[int], None] | None = None) -> list[str]:
    """Recompute the tree from the log and compare it with the stored one; the problems found (few).

    Every stored node of the log's complete tiles is compared, and the rows of the lower
    levels that a store made by the earlier layout holds; a stored node beyond the log's
    tiles is named too (nothing reads it, but the append completing its place would fail).
    """
    covered, end = recorder.merkle_sizes()
    if covered is None or (covered == 0 and tiles(end) > 0):
        return [NOT_BUILT]
    with recorder.merkle_tree() as tree:
        lower = tree.lower()
        stray = tree.stray()
    problems: list[str] = []
    if covered > tiles(end):
        problems.append(f"the Merkle tree's nodes cover {covered} leaves, the log's tiles {tiles(end)}")
    if stray is not None:  # nothing reads it, but the append that completes its place would fail on it
        problems.append(f"the Merkle tree holds a node the log does not have "
                        f"(level {stray[0]}, index {stray[1]})")
    if lower is not None and lower > end:
        problems.append(f"the Merkle tree holds {lower} leaves, the log {end} facts")
    upto = min(covered, tiles(end))
    if lower:  # the earlier layout's rows reach into the last tile
        upto = max(upto, min(lower, end))
    lowest = 0 if lower else STORED_FROM
    edge: dict[int, bytes] = {}
    done = 0
    for start in range(1, upto + 1, BUILD_BATCH):
        stop = min(upto, start + BUILD_BATCH - 1)
        leaves = [leaf for _, leaf in _log_leaves(recorder, start, stop)]
        rows = merkle.fold(done, edge, leaves, lowest)
        with recorder.merkle_tree() as tree:
            stored = tree.read([(lv, ix) for lv, ix, _ in rows])
        for level, idx, h in rows:
            got = stored.get((level, idx))
            if got != h and (level >= STORED_FROM or got is not None or idx < (lower or 0) >> level):
                what = (f"position {idx + 1}" if level == 0 else f"positions {(idx << level) + 1} to "
                        f"{(idx + 1) << level} (the node at level {level}, index {idx})")
                problems.append(f"the Merkle tree differs from the log at {what}")
                if len(problems) >= 5:
                    return problems
        done += len(leaves)
        if progress is not None:
            progress(len(leaves))
    if covered < tiles(end) and not problems:
        # Behind, not altered: every stored node matches the log, and appends leave the tree
        # alone until it covers the log (``append_leaves``); the build goes on from here.
        return [behind(covered, tiles(end))]
    return problems


def tree_size(recorder: LedgerRecorder) -> int:
    """The leaves the tree's stored nodes cover (0 where there is no tree table)."""
    with recorder.merkle_tree() as tree:
        return tree.covered() or 0
