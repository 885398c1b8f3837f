"""The line reader: input lines (or facts) to ``Prepared`` rows, checked, numbered and batched."""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any, Final

import msgspec

from ledger.admission import (
    admit,
    canonical_plain,
    check_keys,
    content_checks,
    decode_fact,
    may_hold_control,
)
from ledger.calendar import FIRST_YEAR, LAST_YEAR
from ledger.errors import BadInput
from ledger.events import CONTRACT_TYPES, FACT_DECODER, FACT_TAGS, Fact, canonical, derive_id_from
from ledger.persistence.consistency import ROW_CLAIM_OF
from ledger.persistence.keys import KEY_OF
from ledger.persistence.port import BATCH
from ledger.persistence.rows import Prepared

MAX_LINE: Final = 16 * 1024 * 1024  # bytes; a longer line is refused without reading it whole
CHUNK: Final = 1 << 20  # bytes handed to the child at a time

_json: Final = msgspec.json.Encoder()

def prepare_fact(lineno: int, fact: Fact) -> Prepared:
    """The row the writer needs for one validated fact (canonical JSON computed once)."""
    return prepare_row(lineno, fact, canonical(fact))


def prepare_row(lineno: int, fact: Fact, canon: bytes) -> Prepared:
    """``prepare_fact`` given the fact's canonical JSON."""
    # The type's tag, index key and name (if it gives one) from one table lookup: this runs
    # once per imported line.
    tag, key_of, claim_of = _TAG_AND_KEY[type(fact)]
    id_ = fact.id if fact.id is not None else derive_id_from(canon)
    at = None if fact.recorded_at is None else _json.encode(fact.recorded_at)
    # tuple.__new__ rather than Prepared(...): the NamedTuple's own __new__ is a Python
    # function, 0.27 of 0.49 us a row (measured); the fields are the same, in the same order.
    return _new_tuple(Prepared, (lineno, id_, _json.encode(id_), tag, key_of(fact), canon, at,
                                 None if claim_of is None else claim_of(fact)))


_new_tuple: Final = tuple.__new__


_TAG_AND_KEY: Final[dict[type, tuple[str, Callable[[Any], str | tuple[str, ...]],
                                     Callable[[Any], tuple[str, str]] | None]]] = {
    cls: (FACT_TAGS[cls], key_of, ROW_CLAIM_OF.get(cls)) for cls, key_of in KEY_OF.items()
}


def prepare_line(lineno: int, line: bytes | str, limit: int = MAX_LINE) -> Prepared | None:
    """Decode and check one NDJSON line (None for a blank one); errors name the line."""
    if len(line) > limit:
        raise BadInput(f"line {lineno}: longer than {limit} bytes")
    if not line.strip():
        return None
    try:
        fact = decode_fact(line)
    except BadInput as exc:
        raise BadInput(f"line {lineno}: {exc}") from None
    return prepare_fact(lineno, fact)


def batched(rows: Iterable[Prepared], size: int = BATCH) -> Iterator[list[Prepared]]:
    """``rows`` in lists of ``size`` (the last one shorter)."""
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def prepare_lines(lines: Iterable[bytes | str], batch_size: int = BATCH) -> Iterator[list[Prepared]]:
    """Batches of prepared rows from lines, in this process."""
    rows = (prepare_line(lineno, line) for lineno, line in enumerate(lines, 1))
    return batched((row for row in rows if row is not None), batch_size)


def prepare_facts(facts: Iterable[Fact], batch_size: int = BATCH) -> Iterator[list[Prepared]]:
    """Batches of prepared rows from facts built in code, numbered from 1 for error messages."""

    def rows() -> Iterator[Prepared]:
        for n, fact in enumerate(facts, 1):
            # No JSON to tell where a control character could be: every field is checked.
            checked, canon, _ = admit(fact)
            yield prepare_row(n, checked, canon)

    return batched(rows(), batch_size)


class LineSplitter:
    """Cuts a byte stream into lines (newline kept), refusing one longer than ``limit`` bytes.

    A partial line is kept only up to ``limit`` bytes: past that it is refused
    at once, so an endless line costs at most ``limit`` plus one chunk.
    """

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self.lineno = 0
        self.partial = b""
        # About the lines the last call returned, from one scan of the bytes instead of one
        # per line: whether none can decode to a string holding a control character or
        # holds an escape (``may_hold_control``), and how many quotes they hold.
        self.plain = True
        self.quotes = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytes]]:
        """The complete lines (newline kept) that ``chunk`` finishes, numbered."""
        return numbered(*self.pieces(chunk))

    def pieces(self, chunk: bytes) -> tuple[int, list[bytes]]:
        """``feed``'s lines without their newlines, and the number of the first."""
        data = self.partial + chunk if self.partial else chunk
        pieces = data.split(b"\n")
        self.partial = pieces.pop()
        self._scan(data, len(data) - len(self.partial))
        first = self.lineno + 1
        if pieces and max(map(len, pieces)) >= self.limit:  # with its newline, longer than the limit
            lengths = list(map(len, pieces))
            at = next(i for i, n in enumerate(lengths) if n >= self.limit)
            self.lineno += at + 1
            raise BadInput(f"line {self.lineno}: longer than {self.limit} bytes")
        self.lineno += len(pieces)
        if len(self.partial) > self.limit:
            raise BadInput(f"line {self.lineno + 1}: longer than {self.limit} bytes")
        return first, pieces

    def finish(self) -> list[tuple[int, bytes]]:
        """The last line, if the input does not end with a newline."""
        if not self.partial:
            return []
        self.lineno += 1
        last, self.partial = self.partial, b""
        self._scan(last, len(last))
        return [(self.lineno, last)]

    def _scan(self, data: bytes, end: int) -> None:
        # The control test covers the partial line too: cheaper than slicing it off.
        self.plain = not may_hold_control(data)
        self.quotes = data.count(b'"', 0, end)


def numbered(first: int, pieces: list[bytes]) -> list[tuple[int, bytes]]:
    """Lines numbered from ``first``, each with its newline back (``LineSplitter.feed``)."""
    return list(zip(itertools.count(first), [piece + b"\n" for piece in pieces], strict=False))


def prepare_chunk(splitter: LineSplitter, chunk: bytes, limit: int, out: list[Prepared]) -> None:
    """The lines ``chunk`` completes (all that is left if it is empty), prepared onto ``out``."""
    if not chunk:
        _prepare_numbered(splitter.finish(), limit, out, splitter)
        return
    first, pieces = splitter.pieces(chunk)
    if not _prepare_plain(first, pieces, out, splitter):
        _prepare_numbered(numbered(first, pieces), limit, out, splitter)


def _prepare_plain(first: int, pieces: list[bytes], out: list[Prepared], splitter: LineSplitter) -> bool:
    """``_prepare_numbered`` for lines without an escape or a control character, a few hundred at a time.

    False (nothing added) if a line needs the line-by-line path: one that does not decode (or is
    blank), needs ``admit`` one at a time, or whose quotes do not add up (a repeated key);
    ``_prepare_numbered`` then names the line or prepares it as it always did. The same rows:
    each fact's id, index key and name as ``prepare_row`` gives them (tests hold them to it).
    """
    if not splitter.plain or not pieces:
        return False
    mark = len(out)
    quotes = 0
    # Slices, not the whole chunk: a chunk's facts at once took more memory than the
    # allocator keeps, and the child's CPU went up by a tenth (measured) instead of down.
    for at in range(0, len(pieces), _SLICE):
        counted = _plain_rows(first + at, pieces[at : at + _SLICE], out)
        if counted is None:
            del out[mark:]
            return False
        quotes += counted
    if quotes != splitter.quotes:
        del out[mark:]
        return False
    return True


_SLICE: Final = 1024


def _plain_rows(first: int, pieces: list[bytes], out: list[Prepared]) -> int | None:
    """The rows of ``pieces`` onto ``out`` and the quotes they should hold; None: see ``_prepare_plain``."""
    try:
        facts = list(map(FACT_DECODER.decode, pieces))
    except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError):
        return None
    plans = _PLANS
    tags: list[str] = []
    keys: list[str | tuple[str, ...]] = []
    claims: list[tuple[str, str] | None] = []
    try:
        for i, fact in enumerate(facts):
            # ``admit``'s checks (``content_checks``) and ``prepare_row``'s lookups, in one loop.
            times, special, tag, key_of, claim_of = plans[type(fact)]
            for field in times:
                if not _FIRST_YEAR < getattr(fact, field).year < _LAST_YEAR:
                    return None  # near an end of the range: ``admit`` decides
            if special is not None:
                if type(fact) in CONTRACT_TYPES:  # their quotes are counted apart (``check_keys``)
                    return None
                fact = facts[i] = special(fact)
            tags.append(tag)
            keys.append(key_of(fact))
            claims.append(None if claim_of is None else claim_of(fact))
    except Exception:
        return None
    admitted = canonical_plain(facts)
    if admitted is None:
        return None
    canons, envelope = admitted
    ids: list[str] = list(map(_ID, facts))
    if None in ids:
        ids = [derive_id_from(canon) if id_ is None else id_ for id_, canon in zip(ids, canons, strict=True)]
    rows = zip(itertools.count(first), ids, map(_json.encode, ids), tags, keys, canons,
               itertools.repeat(None), claims)
    out.extend(map(_new_tuple, itertools.repeat(Prepared), rows))
    return b"".join(canons).count(b'"') + envelope


_ID: Final = operator.attrgetter("id")
_FIRST_YEAR, _LAST_YEAR = FIRST_YEAR, LAST_YEAR
# Per fact type: ``content_checks`` and ``_TAG_AND_KEY``.
_PLANS: Final = {cls: (*content_checks(cls), *plan) for cls, plan in _TAG_AND_KEY.items()}


def _prepare_numbered(lines: list[tuple[int, bytes]], limit: int, out: list[Prepared],
                      splitter: LineSplitter) -> None:
    # prepare_line, unrolled for the bulk path (the splitter has checked the lengths, and
    # ``plain`` says that no line holds a backslash, DEL or 0xC2: no control character, and
    # no quote inside a string); any failure goes back through prepare_line for its
    # one-line message.
    #
    # Repeated keys (``check_keys``) are counted for all the lines at once: the quotes of
    # the lines against those of their canonical forms and envelopes. A policy or a line
    # with an escape is checked on its own.
    decode = FACT_DECODER.decode
    plain = splitter.plain
    quotes = splitter.quotes
    canons: list[bytes] = []
    counted = canons.append
    envelope = 0
    first = len(out)
    for lineno, line in lines:
        if not line or line.isspace():
            continue
        try:
            fact, canon, quoted = admit(decode(line), not plain and may_hold_control(line))
            row = prepare_row(lineno, fact, canon)
            if (plain or b"\\" not in line) and type(fact) not in CONTRACT_TYPES:
                counted(canon)
                envelope += quoted
            else:
                check_keys(line, fact, canon, not plain and b"\\" in line)
                quotes -= line.count(b'"')
        except (msgspec.MsgspecError, UnicodeDecodeError, RecursionError, BadInput):
            # The first bad line is the one to name: one before may repeat a key.
            _check_keys_each(lines, out[first:], plain, lineno)
            prepare_line(lineno, line, limit)
            raise
        out.append(row)
    if b"".join(canons).count(b'"') + envelope != quotes:
        # A line repeats a key, or sets one to null, or spells an integer severity as
        # text: each line is counted on its own, and one with too many quotes parsed.
        _check_keys_each(lines, out[first:], plain)


def _check_keys_each(lines: list[tuple[int, bytes]], rows: list[Prepared], plain: bool,
                     before: int | None = None) -> None:
    """``check_keys`` line by line (``rows`` are the lines' prepared rows, blank lines left out)."""
    decode = FACT_DECODER.decode
    prepared = iter(rows)
    for lineno, line in lines:
        if lineno == before:
            return
        if line and not line.isspace():
            try:
                check_keys(line, decode(line), next(prepared).canon, not plain and b"\\" in line)
            except BadInput as exc:
                raise BadInput(f"line {lineno}: {exc}") from None
