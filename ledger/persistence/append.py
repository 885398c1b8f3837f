"""The append algorithms: facts linked, checked and inserted all-or-nothing under the append lock.

``append_prepared`` checks each batch against the store as it goes; ``append_packed``
takes batches linked and packed in an import's child process. Both write through one
writer thread (``Writer``) so that a server inserts while this thread links the next batch.

Size: both algorithms, the row sorting they share, the writer thread and the child's linker
(``batch_linker``) are one protocol: each relies on how the others link, check and insert.
"""

from __future__ import annotations

import contextlib
import gc
import operator
from collections import deque
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, NamedTuple, TypeVar, cast

import msgspec

from ledger.errors import BadInput, StoreError
from ledger.events import canonical, decode_stored
from ledger.persistence.chain import Chain, ChainStart, Linked, packing_chain
from ledger.persistence.consistency import NO_CHANGE, NOTHING, Holdings, Item, Lookup, Pending, input_owners
from ledger.persistence.keys import CONTRACT, own_keys
from ledger.persistence.merkle_store import Folder, start_edge
from ledger.persistence.packing import PACKERS
from ledger.persistence.port import (
    AppendResult,
    Conflict,
    IdConflict,
    LedgerRecorder,
    OptimisticSession,
    Packed,
    Packer,
    WriteSession,
)
from ledger.persistence.rows import Prepared

T = TypeVar("T")


class _Tally:
    """What an append did so far."""

    def __init__(self) -> None:
        self.appended = self.skipped = 0
        self.first: int | None = None
        self.last: int | None = None
        self.conflicts: list[Conflict] = []

    def add(self, start: int, count: int, skipped: int, conflicts: Sequence[Conflict]) -> None:
        self.skipped += skipped
        self.conflicts.extend(conflicts)
        if count:
            if self.first is None:
                self.first = start
            self.appended += count
            self.last = start + count - 1

    def result(self) -> AppendResult:
        return AppendResult(self.appended, self.skipped, self.first, self.last, self.conflicts)


def append_prepared(
    recorder: LedgerRecorder,
    batches: Iterable[Sequence[Prepared]],
    clock: Callable[[], datetime],
    *,
    label: str = "line",
    progress: Callable[[int], None] | None = None,
    dry_run: bool = False,
    each: Callable[[AppendResult], None] | None = None,
) -> AppendResult:
    """Append prepared facts all-or-nothing, in order, skipping ids already recorded.

    ``dry_run``: every check and every statement runs, then the transaction is rolled
    back; the result says what would have been appended.

    ``batches`` may be a lazy stream (see ``ledger.ingest``): each batch is
    written as it comes, inside one transaction, so memory stays bounded
    whatever the input's size. Any error rolls the whole stream back.
    ``progress`` gets the number of facts of each batch, ``each`` what that batch
    did (a server's group commit answers each request from its batches). A fact whose id is
    recorded (or given earlier) with other content is not appended: it is a
    conflict of the result. Names and contract versions are checked against
    the store and the batches before (``ledger.persistence.consistency``).

    On a server store the statements run in order on one writer thread: while a
    batch's duplicate check (after the previous batch's insert) runs there, this
    thread links the batch as if none of its ids were recorded, the usual case,
    and links it again only if some were. On SQLite (an ``OptimisticSession``) a
    batch is inserted as if none of its ids were recorded, under a savepoint, and
    checked, relinked and inserted again only if the insert met a recorded id.
    """
    tally = _Tally()
    with contextlib.suppress(_RolledBack):
        _append_prepared(recorder, batches, clock, label, progress, each, tally, dry_run)
    return tally.result()


class _RolledBack(Exception):
    """Raised inside a write session to leave it by rolling back (a dry run)."""


def _append_prepared(
    recorder: LedgerRecorder, batches: Iterable[Sequence[Prepared]], clock: Callable[[], datetime],
    label: str, progress: Callable[[int], None] | None, each: Callable[[AppendResult], None] | None,
    tally: _Tally, dry_run: bool,
) -> None:
    small = isinstance(batches, Sequence) and sum(len(b) for b in batches) <= SMALL_APPEND
    with recorder.write_session() as session, Writer(threaded=session.overlaps and not small) as writer:
        chain = _start_chain(session, clock, label)
        held = Holdings(label)
        optimistic = session if isinstance(session, OptimisticSession) else None
        pack = PACKERS[recorder.packing]
        for batch in batches:
            guess = sort_rows(batch, NONE_RECORDED, chain.position)  # as if none of its ids were recorded
            wanted = held.wanted(guess.items)
            asking = bool(wanted[0] or wanted[1])
            done: tuple[Sorted, Linked, Pending] | None = None
            maybe: Linked | None = None
            if optimistic is not None:
                looked = optimistic.lookup(wanted) if asking else NOTHING
                done = _insert_new(optimistic, pack, chain, held, guess, looked)
                recorded = optimistic.recorded(guess.ids) if done is None else {}
            else:  # check first: link while the check runs
                found = writer.submit(session.recorded, guess.ids)
                asked = writer.submit(session.lookup, wanted) if asking else None
                if not found.done():
                    with contextlib.suppress(BadInput):  # perhaps about a recorded line: see below
                        maybe = chain.link(guess.fresh)
                recorded = writer.result(found)
                looked = NOTHING if asked is None else writer.result(asked)
            if done is None:  # checked first, or an id was recorded, or a line refused: exactly
                rows = sort_rows(batch, recorded, chain.position) if recorded else guess
                pending = held.check(rows.items, looked)
                linked = chain.link(rows.fresh) if recorded or maybe is None else maybe
                if pending.owners:
                    own_keys(linked.keys, pending.owners)
                if linked.events:
                    packed = _packed(pack, linked, chain.position)
                    writer.submit(session.insert, packed, pending.rows())
                done = rows, linked, pending
            rows, linked, pending = done
            held.commit(pending)
            if progress is not None:
                progress(len(batch))
            tally.add(chain.position, len(linked.events), rows.skipped, rows.conflicts)
            if each is not None:
                count = len(linked.events)
                each(AppendResult(count, rows.skipped, chain.position if count else None,
                                  chain.position + count - 1 if count else None, rows.conflicts))
            chain.advance(linked)
        writer.finish()
        if dry_run:
            raise _RolledBack


def _packed(pack: Packer, linked: Linked, position: int) -> Packed:
    """``linked``'s rows packed for the store, its leaf hashes as one run of 32-byte hashes."""
    return pack(linked.events, linked.keys, position, b"".join(linked.leaves))


# An append of at most this many rows (a served webhook's group) runs its statements on the
# caller's thread: a thread of its own, and the lock handed back and forth at every statement,
# cost more than linking beside the duplicate check saves (issue 21).
SMALL_APPEND: Final = 1_000

IN_FLIGHT: Final = 1  # packed batches sent to the writer thread and not yet written


class PackedBatch(NamedTuple):
    """A batch linked and packed in another process, with what the writer must still check."""

    packed: Packed
    skipped: int  # repeats of an earlier row of the batch, same content
    conflicts: list[Conflict]  # repeats with other content
    items: list[Item]  # the facts that give a name or version a contract


def append_packed(
    recorder: LedgerRecorder,
    packed_batches: Callable[[ChainStart], Generator[PackedBatch, None, None]],
    clock: Callable[[], datetime],
) -> AppendResult:
    """Append batches linked and packed elsewhere (``recorder.packer`` in another process).

    ``packed_batches`` is called, under the write lock, with where the chain stands,
    and yields each batch with what it dropped as repeats within the batch and the
    facts whose names and contract versions the store must confirm. They are linked
    as if none of their ids were recorded: a row whose id is (a re-import, a repeat
    across batches), a line the linking process refused, or a name or version that
    contradicts the ledger (each may concern such a row) raises ``IdConflict`` with
    nothing kept, and the caller appends the input again through ``append_prepared``,
    which checks exactly. No batch is inserted before its names and versions are checked.
    """
    # The batches decode into millions of short-lived lists and build no cycles: the collector's
    # passes over them cost the writer about a third of the decoding (0.35 of 0.85 us a row,
    # measured); the import's children run without it too.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _append_packed(recorder, packed_batches, clock)
    finally:
        if collecting:
            gc.enable()


def _append_packed(
    recorder: LedgerRecorder,
    packed_batches: Callable[[ChainStart], Generator[PackedBatch, None, None]],
    clock: Callable[[], datetime],
) -> AppendResult:
    tally = _Tally()
    with recorder.write_session() as session, Writer(threaded=session.overlaps) as writer:
        chain = _start_chain(session, clock, "line")
        held = Holdings()
        position = chain.position
        written: deque[Future[None]] = deque()
        # Closed on the way out, so that a failed append stops the packing process at once.
        # The tree's right edge where the import starts, read here under the lock: the packing
        # process hashes the leaves (told only that the tree covers the log), and this one folds
        # them from the edge into the nodes each batch completes (the packing process is the
        # import's longer half: docs/decisions.md, issue 19, hN).
        edge = start_edge(session.tree(), position - 1)
        folder = None if edge is None else Folder(position - 1, edge)
        start = chain.start()._replace(hashing=edge is not None)
        with contextlib.closing(packed_batches(start)) as stream:
            for packed, skipped, conflicts, items in stream:
                if packed.start != position:
                    raise StoreError(f"import: a batch packed at {packed.start}, expected at {position}")
                pending = NO_CHANGE
                if items:
                    wanted = held.wanted(items)
                    looked = NOTHING
                    if wanted[0] or wanted[1]:
                        # On a server, beside the insert in flight rather than after it.
                        beside = recorder.committed(wanted) if session.overlaps else None
                        if beside is not None:
                            looked = beside
                        else:  # after the batches in flight, which are then written (errors raised)
                            looked = writer.result(writer.submit(session.lookup, wanted))
                            written.clear()
                    try:
                        pending = held.check(items, looked)
                    except BadInput as exc:  # perhaps about a recorded line: the checking pass decides
                        raise IdConflict(str(exc)) from None
                    if pending.owners:  # a log of a ticket the store holds: its key names the contract
                        if not isinstance(packed.index, list):
                            raise IdConflict("import: a time log of a ticket opened before the import")
                        own_keys(packed.index, pending.owners)
                if packed.count:
                    if folder is not None:
                        packed = msgspec.structs.replace(packed, leaves=folder.nodes(packed.leaves))
                    written.append(writer.submit(session.insert, packed, pending.rows()))
                while len(written) > IN_FLIGHT:  # bounded memory: wait for the oldest batch
                    writer.result(written.popleft())
                held.commit(pending)
                tally.add(position, packed.count, skipped, conflicts)
                position += packed.count
            writer.finish()
    return tally.result()


def _start_chain(session: WriteSession, clock: Callable[[], datetime], label: str) -> Chain:
    head = session.head()
    now = clock()
    # Facts without their own recorded_at get the import's instant, never below the store's.
    at = head.recorded_at
    default_at = now if at is None or now >= at else at
    # Positions are known before the insert (the lock is held), so each state can carry
    # its chain link: the link hashes the position. Each insert checks where it landed.
    return Chain(session.next_position(), head.hash.encode(), at, default_at,
                  msgspec.json.encode(default_at), label)


class Sorted(NamedTuple):
    """A batch's rows to append, and what the rest of it was."""

    fresh: list[Prepared]
    skipped: int  # repeats with the same content as the recorded (or earlier) fact
    conflicts: list[Conflict]  # repeats with other content
    items: list[Item]  # the fresh facts that give a name or version a contract, with their positions
    ids: list[str]  # every id of the batch, once


def sort_rows(batch: Sequence[Prepared], recorded: Mapping[str, tuple[int, bytes]], start: int) -> Sorted:
    """Sort ``batch`` into rows to append from position ``start``, repeats and conflicts.

    An id in ``recorded`` (position, stored state) or given earlier in the batch is
    appended once: a later line with the same canonical content is a repeat, one
    with other content a conflict naming the position the id has.
    """
    if not recorded:
        ids = list(map(_ROW_ID, batch))
        if len(set(ids)) == len(ids):  # no repeat (an import's usual batch): every row is fresh, in C
            return Sorted(list(batch), 0, [], _items(batch, start), ids)
    fresh: list[Prepared] = []
    items: list[Item] = []
    conflicts: list[Conflict] = []
    skipped = 0
    firsts: dict[str, int] = {}
    for row in batch:
        id_ = row.id
        if recorded and id_ in recorded:
            firsts.setdefault(id_, -1)
            position, state = recorded[id_]
            if same_content(state, row.id_json, row.canon):
                skipped += 1
            else:
                conflicts.append(Conflict(row.line, id_, position))
            continue
        index = firsts.setdefault(id_, len(fresh))
        if index < len(fresh):
            if fresh[index].canon == row.canon:
                skipped += 1
            else:
                conflicts.append(Conflict(row.line, id_, start + index))
            continue
        fresh.append(row)
        claim = row.claim
        if claim is not None:
            name = claim[0]
            canon = row.canon if name.startswith(CONTRACT) else None
            items.append((row.line, start + index, name, claim[1], canon))
    return Sorted(fresh, skipped, conflicts, items, list(firsts))


def _items(fresh: Sequence[Prepared], start: int) -> list[Item]:
    """``sort_rows``'s items of rows that are all fresh, from position ``start`` on."""
    claims = list(map(_ROW_CLAIM, fresh))
    if claims.count(None) == len(claims):
        return []
    items: list[Item] = []
    for index, (row, claim) in enumerate(zip(fresh, claims, strict=True)):
        if claim is not None:
            name = claim[0]
            canon = row.canon if name.startswith(CONTRACT) else None
            items.append((row.line, start + index, name, claim[1], canon))
    return items


_ROW_ID: Final = operator.itemgetter(1)  # Prepared.id
_ROW_CLAIM: Final = operator.itemgetter(7)  # Prepared.claim


# The tail of a stored state after its content: ``,"<64 hex digits of the link>"]``.
_TAIL: Final = 68


def same_content(state: bytes, id_json: bytes, canon: bytes) -> bool:
    """Whether a stored state holds the fact whose canonical content is ``canon``."""
    # The state is [id, recorded_at, content, link] as ``state_bytes`` writes it: cut the
    # content out rather than decode it (a re-import compares every line).
    start = len(id_json) + 2
    if state[start : start + 1] == b'"':
        end = state.find(b'"', start + 1)
        if end > 0 and state[end + 2 : len(state) - _TAIL] == canon:
            return True
    try:  # laid out otherwise (or other content): decide on the decoded fact
        return canonical(decode_stored(0, bytes(state))[0].fact) == canon
    except (msgspec.MsgspecError, ValueError):
        return False


NONE_RECORDED: Final[Mapping[str, tuple[int, bytes]]] = MappingProxyType({})


def _insert_new(session: OptimisticSession, pack: Packer, chain: Chain, held: Holdings, guess: Sorted,
                looked: Lookup) -> tuple[Sorted, Linked, Pending] | None:
    """Check, link and insert a batch as if none of its ids were recorded; None (nothing kept) if one was."""
    try:
        pending = held.check(guess.items, looked)
        linked = chain.link(guess.fresh)
    except BadInput:
        return None  # perhaps about a line recorded already, which the check will drop
    if pending.owners:
        own_keys(linked.keys, pending.owners)
    packed = _packed(pack, linked, chain.position)
    if linked.events and not session.insert_new(packed, pending.rows()):
        return None
    return guess, linked, pending


class Writer:
    """One thread that runs a write session's statements in the order they are submitted.

    A result is taken only after every statement submitted before it has
    succeeded, so the first error is the one reported (not "transaction
    aborted" from a later statement). On an error, statements not yet started
    are cancelled and the running one finishes before the session rolls back.
    With ``threaded`` off, each statement runs at once on the caller's thread.
    """

    def __init__(self, *, threaded: bool = True) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="ledger-writer") if threaded else None
        self._queue: deque[Future[Any]] = deque()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._pool is not None:
            future = self._pool.submit(fn, *args)
        else:  # an error is raised here and now
            future = Future()
            future.set_result(fn(*args))
        self._queue.append(future)
        return future

    def result(self, future: Future[T]) -> T:
        while self._queue:
            head = self._queue.popleft()
            value = head.result()
            if head is future:
                return cast(T, value)
        raise ValueError("not a statement of this writer")

    def finish(self) -> None:
        """Wait for every statement; raise the first error."""
        while self._queue:
            self._queue.popleft().result()

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


def batch_linker(start: ChainStart, packing: str) -> Callable[[list[Prepared]], PackedBatch]:
    """Link and pack each batch from ``start`` on, as ``append_prepared`` would if no id were recorded.

    For an import's child process (``ledger.ingest``): with each batch go its repeats and
    conflicts within the batch and the facts whose names and contract versions the writer
    checks against the store before inserting it. A line the linking refuses raises
    ``IdConflict`` (it may be about a line recorded already: the writer checks).
    """
    pack = PACKERS[packing]
    chain = packing_chain(start)
    # The leaves are hashed here (the writer folds them) if the store's tree covers its log.
    chain.hashing = start.hashing
    opened: dict[str, tuple[str, int]] = {}  # the tickets this input opens: contract, position

    def link(rows: list[Prepared]) -> PackedBatch:
        sorted_ = sort_rows(rows, NONE_RECORDED, chain.position)
        try:
            linked = chain.link(sorted_.fresh)
        except BadInput as exc:
            raise IdConflict(str(exc)) from None
        items, owners = input_owners(sorted_.items, opened)
        if owners:
            own_keys(linked.keys, owners)
        packed = _packed(pack, linked, chain.position)
        chain.advance(linked)
        return PackedBatch(packed, sorted_.skipped, sorted_.conflicts, items)

    return link

