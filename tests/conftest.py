"""Shared fixtures: stores on both backends, a fixed clock, the CLI runner."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from tests.pgserver import DatabasePool, postgres_server, terminate_sessions

BACKENDS = ("sqlite", "postgres")

# Every PostgreSQL write the tests make meets the insert checks, the owner's included (they
# skip a role that could switch them off: ledger/sql/append_checks.sql, ledger_unchecked).
os.environ.setdefault("PGOPTIONS", "-c ledger.check_all=on")


@pytest.fixture(scope="session", autouse=True)
def _holiday_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Holiday tables computed by the tests are cached in a directory of their own (and subprocesses')."""
    os.environ["LEDGER_CACHE_DIR"] = str(tmp_path_factory.mktemp("ledger-cache"))


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """Admin URL of a real PostgreSQL server (started if none runs; never skipped)."""
    with postgres_server() as url:
        yield url


@pytest.fixture(scope="session")
def _pg_fresh(pg_admin_url: str) -> Iterator[DatabasePool]:
    pool = DatabasePool(pg_admin_url)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def _pg_stores(pg_admin_url: str, _pg_fresh: DatabasePool) -> Iterator[DatabasePool]:
    """Databases that already hold an empty ledger: copies of one this session's code created.

    ``store_url``'s tests are about what a store does, not how it is created; creating the
    schema took about as long as a short test. ``pg_url`` (and ``ledger init``'s own tests)
    still start from an empty database.
    """
    with _pg_fresh.database() as url:
        open_ledger(url).close()
        name = url.rsplit("/", 1)[1]
        terminate_sessions(pg_admin_url, name)
        pool = DatabasePool(pg_admin_url, template=name)
        try:
            yield pool
        finally:
            pool.close()


@pytest.fixture
def pg_url(_pg_fresh: DatabasePool) -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database for one test."""
    with _pg_fresh.database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each store-level test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
    else:
        pool = request.getfixturevalue("_pg_stores")
        with pool.database() as url:
            yield url


class StepClock:
    """A test clock: starts at a fixed instant and moves on by one second per reading."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@pytest.fixture
def clock() -> StepClock:
    return StepClock()


@pytest.fixture
def ledger(store_url: str, clock: StepClock) -> Iterator[Ledger]:
    led = open_ledger(store_url, clock=clock)
    try:
        yield led
    finally:
        led.close()


@pytest.fixture
def pair(store_url: str, tmp_path: Path) -> Iterator[tuple[Ledger, Ledger]]:
    """A ledger on the store under test and a second one (SQLite) to compare against."""
    a = open_ledger(store_url, clock=StepClock())
    b = open_ledger(f"sqlite:///{tmp_path / 'other.db'}", clock=StepClock())
    try:
        yield a, b
    finally:
        a.close()
        b.close()


@pytest.fixture
def make_ledger(clock: StepClock) -> Iterator[Callable[[str], Ledger]]:
    opened: list[Ledger] = []

    def make(url: str) -> Ledger:
        led = open_ledger(url, clock=clock)
        opened.append(led)
        return led

    yield make
    for led in opened:
        led.close()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("LEDGER_STORE", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    return CliRunner()


@pytest.fixture
def examples_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "ledger" / "examples"


def pytest_report_header() -> str:
    return f"ledger tests: LEDGER_TEST_PG={os.environ.get('LEDGER_TEST_PG', '(auto)')}"
