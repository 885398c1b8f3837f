"""Running the view: status, and a worker that keeps it up to date (polling, or following with reconnects)."""

from __future__ import annotations

import gc
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Final

import msgspec

from ledger.errors import one_line
from ledger.persistence.port import APP_NAME, FAILED_TABLE, PROJECTION, SUPPORT_TABLES, ProjectionError
from ledger.urls import scrub
from projections.tracked.projection import LedgerLike, ReportingProjection
from projections.tracked.rows import Failed


class Status(msgspec.Struct, frozen=True):
    """How far a projection has got, and which of its contract-months failed."""

    projection: str
    position: int
    head: int
    failed: int = 0
    failures: list[Failed] = msgspec.field(default_factory=list)  # the first few, by contract and month

    @property
    def lag(self) -> int:
        return max(0, self.head - self.position)


SHOWN_FAILURES: Final = 5


def status(ledger: LedgerLike, *, failures: int = SHOWN_FAILURES) -> list[Status]:
    """Per projection: tracked position, ledger head and failed contract-months (creates nothing)."""
    existing = ledger.recorder.existing_view()
    head = ledger.recorder.last_position()
    if existing is None:
        return [Status(projection=PROJECTION, position=0, head=head)]
    view, tables = existing
    position = int(view.max_tracking_id(APP_NAME) or 0)
    failed, first = view.failures(failures) if FAILED_TABLE in tables else (0, [])
    return [Status(projection=PROJECTION, position=position, head=head, failed=failed,
                   failures=[Failed(*f) for f in first])]


RECONNECT_FIRST: Final = 0.5  # seconds before the first reconnection attempt; doubled after each failure
RECONNECT_MAX: Final = 15.0  # the cap on that wait


def run(
    ledger: LedgerLike,
    url: str,
    *,
    once: bool = False,
    interval: float = 1.0,
    stop: threading.Event | None = None,
    progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] | None = None,
    freeze: bool = False,
) -> int:
    """Keep the view up to date until ``stop`` is set (or SIGTERM/SIGINT); ``once``: catch up and return.

    ``freeze``: the process is the follower's own (the command): what it holds for good is
    left out of the cyclic collector's sweeps once loaded (``started``).

    PostgreSQL: catch up in pages, then on each notification (LISTEN/NOTIFY) catch up
    again; a lost connection (a server restart) is retried with a growing
    wait, one line to ``log`` (stderr) per attempt, and the worker goes on from the
    view's tracking. SQLite has no subscription: look at its head every ``POLL`` seconds, and catch up
    when it moved (or every ``interval`` seconds). A stop
    is seen between pages. Returns the tracked position when it stops.
    """
    stop = stop or threading.Event()
    if _made_before_support(ledger):
        from projections.tracked.rebuilding import rebuild

        (log or _to_stderr)("projections run: the reporting view was made before its support tables: "
                            "rebuilding it first")
        rebuild(ledger)
    with _stopped_by_signals(stop):
        if ledger.recorder.subscribes and not once:
            return _follow_postgres(ledger, url, interval, stop, progress, log or _to_stderr, freeze)
        projection = started(ReportingProjection(ledger.recorder.open_view()), freeze)
        while True:
            position = projection.catch_up(stop=stop)
            if progress is not None:
                progress(position)
            if once or _polled(projection, interval, stop):
                return projection.tracked


def _made_before_support(ledger: LedgerLike) -> bool:
    """Whether the view holds rows but not the support tables (made before them): following alone
    would fill them only for the months new facts change."""
    existing = ledger.recorder.existing_view()
    if existing is None or set(SUPPORT_TABLES) <= existing[1]:
        return False
    return int(existing[0].max_tracking_id(APP_NAME) or 0) > 0


POLL: Final = 0.05  # seconds between looks at the head of a store that cannot notify (SQLite)


def _polled(projection: ReportingProjection, interval: float, stop: threading.Event) -> bool:
    """Wait for the ledger's head to move past the projection (read every ``POLL``), ``interval`` or ``stop``.

    True if stopped. The head is looked at often so that a single append shows in the
    view within about ``POLL`` seconds; a catch-up only starts when there is something to read.
    """
    deadline = time.monotonic() + interval
    while not stop.wait(min(POLL, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline or projection.reader.last_position() > projection.position:
            return False
    return True


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _follow_postgres(
    ledger: LedgerLike,
    url: str,
    interval: float,
    stop: threading.Event,
    progress: Callable[[int], None] | None,
    log: Callable[[str], None],
    freeze: bool,
) -> int:
    """``run`` on PostgreSQL: catch up, follow, and on a lost connection reconnect and go on."""
    current = ledger
    lost = ledger.recorder.connection_errors
    opened: LedgerLike | None = None  # a ledger opened here on reconnecting (the caller closes its own)
    projection: ReportingProjection | None = None
    position = 0
    attempt = 0
    try:
        while not stop.is_set():
            try:
                if attempt:
                    current.recorder.reachable(url)
                    if ledger.reopen is None:
                        raise ProjectionError("cannot reconnect: this ledger cannot be opened again")
                    if opened is not None:
                        opened.close()
                    opened = current = ledger.reopen()
                projection = _resumed(current, projection, freeze)
                position = projection.catch_up(stop=stop)
                if progress is not None:
                    progress(position)
                attempt = 0
                if stop.is_set():
                    break
                position = _follow(projection, interval, stop, progress)
            except lost as exc:
                attempt += 1
                wait = min(RECONNECT_FIRST * 2 ** (attempt - 1), RECONNECT_MAX)
                reason = scrub(one_line(' '.join(str(exc).split())), url)  # libpq may echo the URL
                log(f"projections run: connection lost ({reason}); "
                    f"reconnecting in {wait:g} s (attempt {attempt})")
                stop.wait(wait)
            else:
                break
        if projection is not None and not attempt:  # connected: where the view is now
            with suppress(*lost):
                position = projection.tracked
        return position
    finally:
        if opened is not None:
            opened.close()


def _resumed(ledger: LedgerLike, before: ReportingProjection | None, freeze: bool) -> ReportingProjection:
    """A projection on ``ledger``'s view, going on from ``before``'s index where that is safe.

    The state is kept if it is not ahead of the view: a connection lost after a batch
    was folded in but before its rows were written leaves it ahead, and it is loaded again.
    """
    view = ledger.recorder.open_view()
    if before is not None and before.position <= int(view.max_tracking_id(APP_NAME) or 0):
        return ReportingProjection(view, before.state)
    return started(ReportingProjection(view), freeze)


def started(projection: ReportingProjection, freeze: bool) -> ReportingProjection:
    """``projection`` with what it holds for good loaded (every contract's versions); ``freeze``: then
    left out of the cyclic collector's sweeps (``gc.freeze``: the whole process's objects so far).

    A follower is a long-lived process whose largest part is that directory (20,000 contracts'
    policies): each full collection walked it again, about a third of a page's CPU at 20,000
    contracts. Frozen objects are still freed when their last reference goes; a cycle among
    them is not collected, and the directory makes none (issue 17, hL).
    """
    projection.load()
    if freeze:
        gc.freeze()
    return projection


def _follow(
    projection: ReportingProjection, interval: float, stop: threading.Event,
    progress: Callable[[int], None] | None,
) -> int:
    """Follow new facts until ``stop``: on each notification (or every ``interval``), catch up in pages.

    One projection, one index: the pages are the catch-up's, whatever the notifications'
    rhythm (the library's runner handed them one at a time, a commit each). Raises what
    stops it (a lost connection).
    """
    listening = projection.view.notifications()
    if listening is None:
        raise ProjectionError("this store cannot be followed: it has no notifications (poll it)")
    with listening as wait:
        while not stop.is_set():
            position = projection.catch_up(stop=stop)
            if progress is not None:
                progress(position)
            # Short waits: a stop is seen within a second even when nothing is appended.
            deadline = time.monotonic() + interval
            while not stop.is_set() and not wait(min(1.0, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    break
    return projection.position


class _stopped_by_signals:  # lower case: reads as a function in a `with` statement
    """Set ``stop`` on SIGTERM and SIGINT while inside (main thread only)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.saved: list[tuple[int, Any]] = []

    def __enter__(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.saved.append((sig, signal.signal(sig, lambda *_: self.stop.set())))

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved:
            with suppress(ValueError, TypeError):
                signal.signal(sig, handler)
