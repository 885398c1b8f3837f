"""A rebuild replaces the reporting view whole, in short transactions, without growing it (issue 17).

SQLite fills shadow tables and renames them in; PostgreSQL fills the copy readers do not see
and flips the one row that names the live copy. Either way a reader sees the whole old
view until the swap and the whole new one after it, and the store's size stays put over
repeated rebuilds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from cli.demo.run import run_demo
from ledger.admission import fact_from_fields
from ledger.application import Ledger
from tests.integration.test_reporting import query

REPORTS = "SELECT * FROM report_monthly_availability ORDER BY contract, month"


def _view(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The monthly table and the tracked position, each read in one statement."""
    tracking = "tracking" if url.startswith("sqlite") else "reporting_tracking"
    return query(url, REPORTS), query(url, f"SELECT notification_id FROM {tracking} "  # noqa: S608
                                           "WHERE application_name = 'ledger'")


def _late_fact(ledger: Ledger) -> None:
    """A probe failure in the demo month that changes the figures of the workspace's contracts."""
    ledger.append_facts([fact_from_fields("probe_failed", {
        "service": "workspace", "probe": "late", "at": "2026-10-20T10:00:00Z"})])


def test_a_reader_during_a_rebuild_sees_the_old_view_until_the_swap(
        ledger: Ledger, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from projections.tracked import rebuild, rebuilding

    run_demo(ledger)
    rebuild(ledger, workers=1)
    old = _view(store_url)
    _late_fact(ledger)
    seen: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []
    real = rebuilding._groups_reports

    def read_between_writes(*args: Any) -> list[tuple[int, bytes]]:
        seen.append(_view(store_url))  # after the previous group's rows were written
        return real(*args)

    monkeypatch.setattr(rebuilding, "GROUPS_PER_TASK", 1)
    monkeypatch.setattr(rebuilding, "WRITE_BATCH", 1)  # every group written before the next is read
    monkeypatch.setattr(rebuilding, "_groups_reports", read_between_writes)
    rebuild(ledger, workers=1)
    new = _view(store_url)
    assert len(seen) >= 3
    assert new != old
    assert new[1] == [{"notification_id": ledger.recorder.last_position()}]
    assert all(s == old for s in seen)  # never a half view: rows written so far are not visible


def _size(url: str) -> int:
    """Bytes the view's tables take (PostgreSQL), or the pages in use of the whole file (SQLite)."""
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url[len("sqlite:///"):])
        try:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            return int(pages - free) * int(conn.execute("PRAGMA page_size").fetchone()[0])
        finally:
            conn.close()
    rows = query(url, "SELECT sum(pg_total_relation_size(c.oid)) AS n FROM pg_class c "
                      "JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE c.relkind = 'r' AND c.relname LIKE 'report%' AND n.nspname = current_schema()")
    return int(rows[0]["n"])


def test_repeated_rebuilds_do_not_grow_the_view(ledger: Ledger, store_url: str) -> None:
    from projections.tracked import rebuild

    run_demo(ledger)
    rebuild(ledger, workers=1)
    rebuild(ledger, workers=1)  # on PostgreSQL both copies now hold a view
    settled = _size(store_url)
    sizes = []
    for _ in range(6):
        rebuild(ledger, workers=1)
        sizes.append(_size(store_url))
    # A rebuild that deleted and rewrote every row grew by the view's size each time (until a
    # vacuum); the copies are emptied by TRUNCATE, the shadow tables dropped.
    assert max(sizes) <= settled, (settled, sizes)


def test_a_failed_rebuild_keeps_the_live_copy_and_empties_the_other(
        make_ledger: Callable[[str], Ledger], pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from projections.tracked import rebuild, rebuilding, run

    led = make_ledger(pg_url)  # PostgreSQL's own: the copies
    run_demo(led)
    rebuild(led, workers=1)
    live = query(pg_url, "SELECT live FROM reporting_live")
    old = _view(pg_url)
    _late_fact(led)
    calls: list[int] = []
    real = rebuilding._groups_reports

    def fails_on_the_third_task(*args: Any) -> list[tuple[int, bytes]]:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("worker lost")
        return real(*args)

    with monkeypatch.context() as m:
        m.setattr(rebuilding, "GROUPS_PER_TASK", 1)
        m.setattr(rebuilding, "WRITE_BATCH", 1)  # two groups written into the other copy
        m.setattr(rebuilding, "_groups_reports", fails_on_the_third_task)
        with pytest.raises(RuntimeError, match="worker lost"):
            rebuild(led, workers=1)
    assert query(pg_url, "SELECT live FROM reporting_live") == live
    assert _view(pg_url) == old
    other = "b" if live == [{"live": "a"}] else "a"
    assert query(pg_url, f"SELECT count(*) AS n FROM report_monthly_availability__{other}") == [{"n": 0}]  # noqa: S608
    # The follower writes the live copy; the next rebuild flips to the other one.
    run(led, pg_url, once=True)
    followed = _view(pg_url)
    assert followed != old
    rebuild(led, workers=1)
    assert query(pg_url, "SELECT live FROM reporting_live") == [{"live": other}]
    def figures(view: tuple[list[dict[str, Any]], list[dict[str, Any]]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in row.items() if k != "as_of_position"} for row in view[0]]

    assert figures(_view(pg_url)) == figures(followed)  # the follower's rows: as_of is each row's own


def test_a_reader_holding_the_other_copy_delays_the_truncate_not_the_reader(
        make_ledger: Callable[[str], Ledger], pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ledger.persistence.postgres import view
    from projections.tracked import rebuild

    led = make_ledger(pg_url)
    run_demo(led)
    rebuild(led, workers=1)
    monkeypatch.setattr(view, "TRUNCATE_WAIT", "50ms")
    monkeypatch.setattr(view, "TRUNCATE_TRIES", 2)
    with psycopg.connect(pg_url) as reader:
        # A reader's transaction holds a lock on both copies until it ends.
        before = reader.execute(REPORTS).fetchall()
        with pytest.raises(Exception, match="stayed locked by its readers"):
            rebuild(led, workers=1)
        assert reader.execute(REPORTS).fetchall() == before
    assert rebuild(led, workers=1).pairs == len(before)


def test_a_query_on_the_view_reads_the_live_copy_only_through_its_month_index(
        make_ledger: Callable[[str], Ledger], pg_url: str) -> None:
    from projections.tracked import rebuild

    led = make_ledger(pg_url)
    run_demo(led)
    rebuild(led, workers=1)  # copy b is live now
    month = "SELECT contract FROM report_monthly_availability WHERE month = '2026-10' ORDER BY contract"
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET enable_seqscan = off")  # a demo-sized table would be scanned otherwise
        plan = [str(r[0]) for r in conn.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {month}").fetchall()]
        assert len(conn.execute(month).fetchall()) == 5
    scans = {copy: next(line for line in plan if f"report_monthly_availability__{copy}" in line)
             for copy in ("a", "b")}
    assert "report_monthly_availability__b_by_month" in scans["b"]
    assert "never executed" in scans["a"]
    assert "never executed" not in scans["b"]


def test_another_connection_fills_what_the_rebuild_swaps_in(
        store_url: str, make_ledger: Callable[[str], Ledger]) -> None:
    """A rebuild's workers write their rows themselves (``ReportingView.fill``, on their own
    connections) into the tables ``replacing`` names: unseen until the swap, then the whole view.

    Both stores: SQLite's shadow tables, PostgreSQL's copy readers do not see (whose live copy
    ``fill`` refuses).
    """
    ledger = make_ledger(store_url)
    from eventsourcing.persistence import Tracking

    from ledger.persistence.port import APP_NAME, Filling, ProjectionError
    from projections.tracked import rebuild, rebuilding
    from projections.tracked.groups import service_groups
    from projections.tracked.rows import view_rows

    run_demo(ledger)
    rebuild(ledger, workers=1)
    old = _view(store_url)
    _late_fact(ledger)
    head = ledger.recorder.last_position()
    clock = next(r.recorded_at for r in ledger.recorder.read_records(head, head))
    groups = [(sorted(s), sorted(c)) for s, c in service_groups(ledger.contracts(head))]
    items = [item for _, data in rebuilding._groups_reports(ledger, groups, head, clock)
             for item in rebuilding._decoded(data)]
    worker = make_ledger(store_url).recorder.open_view()  # another connection, as a worker's
    with ledger.recorder.open_view().replacing(Tracking(APP_NAME, head)) as write:
        assert isinstance(write, Filling)
        with pytest.raises(ProjectionError):
            worker.fill(write.target + "x", view_rows(items, text=worker.text))
        if store_url.startswith("postgres"):
            live = "a" if write.target == "b" else "b"
            with pytest.raises(ProjectionError, match="live copy"):
                worker.fill(live, view_rows(items, text=worker.text))
        worker.fill(write.target, view_rows(items[:3], text=worker.text))
        worker.fill(write.target, view_rows(items[3:], text=worker.text))
        assert _view(store_url) == old  # not before the swap
    new = _view(store_url)
    assert new[1] == [{"notification_id": head}]
    rebuild(ledger, workers=1)  # the same rows, written by the rebuild's own writer
    assert _view(store_url) == new != old
