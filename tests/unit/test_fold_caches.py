"""What the month fold now keeps between months (issue 17): it must never change a figure.

A rebuild folds thousands of months in one process, so the fold keeps a local clock per
zone, each month's bounds, and each policy's JSON for the digest. These tests pin down that
a kept value is the one computing afresh gives: across the clock's bound, and when a
policy object's id is reused by another policy.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.policy_check import load_policy
from projections import digest as digest_module
from projections import timeline
from projections.timeline import clock_for, local_at, to_us
from tests.unit.factories import SEED_A, SEED_B


def test_one_clock_per_zone() -> None:
    assert clock_for(ZoneInfo("Europe/Paris")) is clock_for(ZoneInfo("Europe/Paris"))
    assert clock_for(ZoneInfo("UTC")) is not clock_for(ZoneInfo("Europe/Paris"))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["Europe/Paris", "America/New_York", "Australia/Lord_Howe"]),
       st.lists(st.integers(0, 3_600_000_000 * 24 * 365 * 60), min_size=1, max_size=30))
def test_the_shared_clock_stays_exact_across_its_bound(zone: str, instants: list[int]) -> None:
    tz = ZoneInfo(zone)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(timeline, "_MAX_HOURS", 3)  # cleared every few hours: a long rebuild's case
        # The process's clocks as a new process has them: another test's instants may fill
        # the shared one with more hours than this bound, which only the next new hour clears.
        mp.setattr(timeline, "_CLOCKS", {})
        clock = clock_for(tz)
        for us in instants:
            got, want = clock(us), local_at(us, tz)
            assert (got.isoformat(), got.fold) == (want.isoformat(), want.fold)
        assert len(clock._hours) <= 3


def test_the_clock_across_a_fall_back_after_other_months() -> None:
    tz = ZoneInfo("Europe/Paris")
    clock = clock_for(tz)
    clock(to_us(datetime(2026, 3, 29, 1, 30, tzinfo=UTC)))  # another month's instant first
    change = to_us(datetime(2026, 10, 25, 1, tzinfo=UTC))
    for us in range(change - 3_600_000_000, change + 3_600_000_000, 60_000_000 * 7):
        got, want = clock(us), local_at(us, tz)
        assert (got.isoformat(), got.fold) == (want.isoformat(), want.fold)


def test_a_policy_json_is_never_another_policys() -> None:
    a, b = load_policy(SEED_A.encode()), load_policy(SEED_B.encode())
    assert digest_module._policy_json(a) == digest_module._encoder.encode(a)
    # b is given a's id's entry, as when a is freed and b reuses its memory.
    digest_module._POLICIES[id(b)] = (a, digest_module._encoder.encode(a))
    assert digest_module._policy_json(b) == digest_module._encoder.encode(b)
    assert digest_module._policy_json(b) == digest_module._policy_json(b)
