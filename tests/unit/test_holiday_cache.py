"""The holiday cache (issue 17): exactly the package's dates, from disk when computed before."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import calendar
from ledger.calendar import holiday_dates, holidays_cache_dir, supported_holidays

CODES = ("BE", "CA", "CA-ON", "CA-QC", "FR", "DE-BY", "CH-ZH", "US", "GB", "JP")


def _package(code: str, year: int) -> frozenset[date]:
    country, _, subdiv = code.partition("-")
    return frozenset(holidays.country_holidays(country, subdiv=subdiv or None, years=year).keys())


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("LEDGER_CACHE_DIR", str(tmp_path))
    holiday_dates.cache_clear()
    supported_holidays.cache_clear()
    yield tmp_path
    holiday_dates.cache_clear()
    supported_holidays.cache_clear()


@settings(max_examples=40, deadline=None)
@given(code=st.sampled_from(CODES), year=st.integers(1970, 2999))
def test_cached_dates_are_the_packages(code: str, year: int) -> None:
    # computed (and stored) the first time, read back the second: both the package's dates
    first = holiday_dates.__wrapped__(code, year)
    again = holiday_dates.__wrapped__(code, year)
    assert first == again == _package(code, year)


def test_read_from_disk_without_the_package(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert holiday_dates("BE", 2026) == _package("BE", 2026)
    stored = Path(holidays_cache_dir() or "")
    assert stored.parent == cache
    assert stored.name == f"holidays-{holidays.__version__}"
    holiday_dates.cache_clear()
    monkeypatch.setattr(calendar, "_package_dates", lambda code, year: pytest.fail("not cached"))
    assert holiday_dates("BE", 2026) == _package("BE", 2026)


def test_a_file_cut_short_is_computed_again(cache: Path) -> None:
    holiday_dates("BE", 2026)
    path = Path(holidays_cache_dir() or "") / "dates-BE-2026"
    whole = path.read_text()
    path.write_text(whole[:15])  # one date and a half, no end marker
    holiday_dates.cache_clear()
    assert holiday_dates("BE", 2026) == _package("BE", 2026)
    assert path.read_text() == whole


def test_no_cache_when_empty_or_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_CACHE_DIR", "")
    assert holidays_cache_dir() is None
    assert holiday_dates.__wrapped__("FR", 2030) == _package("FR", 2030)
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    monkeypatch.setenv("LEDGER_CACHE_DIR", str(blocked))
    assert holiday_dates.__wrapped__("FR", 2030) == _package("FR", 2030)
    assert not os.path.isdir(blocked)


def test_supported_countries_are_the_packages(cache: Path) -> None:
    want = {k: list(v) for k, v in holidays.list_supported_countries().items()}
    assert supported_holidays() == want
    supported_holidays.cache_clear()
    assert supported_holidays() == want  # from disk
