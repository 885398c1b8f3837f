"""The fold's local times (``projections.support._local``): ``astimezone``, offset fixed, DST included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.support_hours import from_us, to_us
from projections.support import _local

# Transitions: whole hours (Toronto, Zurich), half an hour (Lord Howe), and zones without DST.
ZONES = ("America/Toronto", "Europe/Zurich", "Australia/Lord_Howe", "America/St_Johns", "Asia/Kolkata", "UTC")
TRANSITIONS = [datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC),
               datetime(2026, 3, 29, 1, tzinfo=UTC), datetime(2026, 10, 25, 1, tzinfo=UTC),
               datetime(2026, 4, 4, 15, tzinfo=UTC), datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
               datetime(2026, 3, 8, 5, 30, tzinfo=UTC)]


def _expected(us: int, tz: ZoneInfo) -> datetime:
    local = from_us(us).astimezone(tz)
    offset = local.utcoffset()
    assert offset is not None
    return local.replace(tzinfo=timezone(offset))


@settings(max_examples=400)
@given(zone=st.sampled_from(ZONES), near=st.sampled_from(TRANSITIONS),
       delta=st.integers(-3 * 3_600_000_000, 3 * 3_600_000_000))
def test_local_equals_astimezone_near_transitions(zone: str, near: datetime, delta: int) -> None:
    tz = ZoneInfo(zone)
    us = to_us(near) + delta
    got = _local(us, tz)
    assert got.isoformat() == _expected(us, tz).isoformat()
    assert got == from_us(us)


def test_local_on_every_minute_of_a_transition_day() -> None:
    tz = ZoneInfo("Australia/Lord_Howe")
    start = datetime(2026, 4, 4, 12, tzinfo=UTC)
    for minute in range(0, 6 * 60):
        us = to_us(start + timedelta(minutes=minute))
        assert _local(us, tz).isoformat() == _expected(us, tz).isoformat()
