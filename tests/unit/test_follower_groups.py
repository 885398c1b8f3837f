"""The follower's per-group indexes against the whole fold (issue 17, hC).

- ``affected._from`` (one walk over the quiet instants, merged month ranges) names the same
  pairs as the rule it replaced (a bisect and a month range per instant);
- a follower restarted at any position and fed the rest in pages of any size writes the
  view the whole fold gives, and loads only groups the pages touch.
"""

from __future__ import annotations

from collections.abc import Iterable

from hypothesis import given
from hypothesis import strategies as st

from ledger.events import Recorded
from projections import affected as affected_module
from projections.affected import Known, Pair, _Held, add_months, affected, month_of
from projections.tracked import ReportingProjection
from projections.tracked import groups as groups_module
from tests.unit.test_affected import SETTINGS, MemoryView, full, ledgers


def _from_before(known: Known, held: _Held, service: str, instants: Iterable[int], out: set[Pair]) -> None:
    """``_from`` as it was before this change: the reference."""
    ends: set[tuple[int | None, int | None]] = set()
    after: int | None = -(2**63)
    for us in sorted(instants):
        if after is not None and us > after:
            after = known.quiet_after(service, us)
        ends.add((known.last_quiet_before(service, us), after))
    for cid in known.contracts_of_service.get(service, ()):
        for tz in known.zones.get(cid, ()):
            for before, after in ends:
                first = "" if before is None else add_months(month_of(before, tz), -1)
                last = month_of(after, tz) if after is not None else "9999-99"
                out.update((cid, m) for m in held[cid] if first <= m <= last)


def _affected(records: list[Recorded], cut: int, rule: object) -> tuple[set[Pair], set[Pair]]:
    saved = affected_module._from
    affected_module._from = rule  # type: ignore[assignment]
    try:
        known = Known()
        known.add_all(records[:cut])
        known.settle()
        known.mark()
        known.add_all(records[cut:])
        got = affected(records[cut:], known, known.settle())
    finally:
        affected_module._from = saved
    return got.changed, got.fresh


def _caught_up_to(records: list[Recorded], start: int) -> MemoryView:
    """A view whose rows a follower wrote up to ``start`` (or the log's end), holding every record."""
    start = min(start, len(records))
    view = MemoryView(records)
    if start:
        view.reader.records = records[:start]
        assert ReportingProjection(view).catch_up() == start  # type: ignore[arg-type]
        view.reader.records = records
    return view


@SETTINGS
@given(ledgers(), st.integers(0, 40))
def test_merged_month_ranges_name_the_same_pairs(ledger: tuple[list[Recorded], list[int]], cut: int) -> None:
    records, _ = ledger
    cut = min(cut, len(records) - 1)
    assert _affected(records, cut, affected_module._from) == _affected(records, cut, _from_before)


@SETTINGS
@given(ledgers(), st.integers(0, 40), st.integers(1, 7), st.sampled_from([400_000, 0]))
def test_a_restart_anywhere_then_pages_of_any_size_give_the_whole_fold(
    ledger: tuple[list[Recorded], list[int]], start: int, page: int, budget: int
) -> None:
    # Budget 0: every group is dropped after each page and loaded again by the next one.
    records, _ = ledger
    view = _caught_up_to(records, start)
    projection = ReportingProjection(view)  # type: ignore[arg-type]
    projection.state.groups.budget = budget
    assert projection.catch_up(page=page) == len(records)
    assert not projection.state.whole
    if budget == 0:
        assert not projection.state.groups.loaded
    assert view.figures == full(records)
    # Started at the head, a follower loads no group at all: nothing touched one.
    idle = ReportingProjection(view)  # type: ignore[arg-type]
    assert idle.catch_up() == len(records)
    assert idle.state.loaded
    assert idle.state.groups.loads == 0


@SETTINGS
@given(ledgers(), st.integers(1, 5))
def test_pages_behind_the_head_are_written_together_and_give_the_whole_fold(
    ledger: tuple[list[Recorded], list[int]], page: int
) -> None:
    # Behind the head a page's rows wait for the next ones' (issue 17, hL): at most one write per
    # DEFER_PAGES pages and one at the end, each at a page boundary, and the same view as the fold.
    from projections.tracked.projection import DEFER_PAGES

    records, _ = ledger
    view = MemoryView(records)
    written: list[int] = []
    replace = view.replace

    def counted(pairs: object, rows: object, tracking: object) -> None:
        written.append(tracking.notification_id)  # type: ignore[attr-defined]
        replace(pairs, rows, tracking)  # type: ignore[arg-type]

    view.replace = counted  # type: ignore[method-assign]
    projection = ReportingProjection(view)  # type: ignore[arg-type]
    assert projection.catch_up(page=page) == len(records)
    pages = -(-len(records) // page)
    assert len(written) <= pages // DEFER_PAGES + 1
    assert written[-1] == len(records)
    assert all(p % page == 0 or p == len(records) for p in written)
    assert view.figures == full(records)
    # One page at a time (``apply``), each is written at once.
    one = MemoryView(records)
    single = ReportingProjection(one)  # type: ignore[arg-type]
    for start in range(0, len(records), page):
        assert single.apply(records[start : start + page]) is True
        assert one.position == min(start + page, len(records))
    assert one.figures == full(records)


@SETTINGS
@given(ledgers(), st.integers(0, 40), st.integers(1, 7), st.sampled_from([-1, 0, 1]))
def test_windows_of_any_depth_give_the_whole_fold(
    ledger: tuple[list[Recorded], list[int]], start: int, page: int, back: int
) -> None:
    # Windows as short as they get (``WINDOW_BACK`` -1, 0 or 1 month): most changes reach before
    # the window and load it again from further back, then whole.
    records, _ = ledger
    view = _caught_up_to(records, start)
    saved = groups_module.WINDOW_BACK
    groups_module.WINDOW_BACK = back
    try:
        projection = ReportingProjection(view)  # type: ignore[arg-type]
        assert projection.catch_up(page=page) == len(records)
    finally:
        groups_module.WINDOW_BACK = saved
    assert view.figures == full(records)
