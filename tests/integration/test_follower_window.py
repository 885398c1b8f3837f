"""A follower that loads a window of a service's history, not all of it (issue 17, hQ): figures unchanged.

Both stores. Services with nine months of history are rebuilt to the head; then facts arrive
that reach back past any window a page would first load: an incident opened months earlier and
still open (one degraded, one an outage that leaves no quiet instant for months), a long
maintenance window announced months ago and still running, a probe report into an old month
(out of order), a revocation of an exclusion declared months ago, and the old incidents'
resolutions. A fresh follower catches up in pages of every size; its tables equal ``ledger
report`` and a rebuild's, and it loaded windows, not whole histories.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner

from ledger.application import Ledger
from ledger.events import (
    ExclusionDeclared,
    ExclusionRevoked,
    Fact,
    IncidentOpened,
    IncidentResolved,
    MaintenanceAnnounced,
    ProbeFailed,
    ProbeRecovered,
)
from projections.tracked import open_view
from projections.tracked.projection import ReportingProjection
from tests.integration.test_reporting import assert_tables_match_reports, ledger_cli, query, register

A, B = "workspace", "biings"  # services of the example contracts (sla-a, sla-b)
A_PROBES, B_PROBES = ("paris", "frankfurt", "london"), ("ping", "tcp-443")


def _at(month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def _blips(service: str, probes: tuple[str, ...], month: int) -> list[Fact]:
    """A few short outages of every probe in ``month``."""
    out: list[Fact] = []
    for day in (3, 11, 19, 27):
        for k, probe in enumerate(probes):
            at = _at(month, day, 8 + k)
            out += [ProbeFailed(service=service, probe=probe, at=at),
                    ProbeRecovered(service=service, probe=probe, at=at + timedelta(minutes=7))]
    return out


def _history() -> list[Fact]:
    facts: list[Fact] = []
    for month in range(1, 10):
        facts += _blips(A, A_PROBES, month) + _blips(B, B_PROBES, month)
    facts += [
        ExclusionDeclared(service=A, exclusion="x-old", category="customer_isp", starts_at=_at(2, 11, 7),
                          ends_at=_at(2, 11, 12), reason="their ISP"),
        IncidentOpened(service=A, incident="i-degraded", at=_at(4, 2), impact="degraded"),
        MaintenanceAnnounced(service=A, maintenance="m-long", announced_at=_at(4, 20), starts_at=_at(5, 1),
                             ends_at=_at(12, 20)),
        # Down from May on: B has no quiet instant after this.
        IncidentOpened(service=B, incident="i-outage", at=_at(5, 14), impact="outage"),
    ]
    return facts


def _later() -> list[Fact]:
    return [
        *_blips(A, A_PROBES, 11)[:4],
        ProbeFailed(service=A, probe="london", at=_at(2, 20, 3)),  # out of order, into an old month
        ProbeRecovered(service=A, probe="london", at=_at(2, 20, 5)),
        *_blips(B, B_PROBES, 11)[:2],
        ExclusionRevoked(ref="x-old", reason="it was ours"),
        IncidentResolved(incident="i-degraded", at=_at(11, 9)),
        *_blips(A, A_PROBES, 11)[4:8],
        IncidentResolved(incident="i-outage", at=_at(11, 10)),
        *_blips(B, B_PROBES, 11)[2:],
    ]


def _rows(url: str) -> list[dict[str, object]]:
    out = []
    for table in ("report_monthly_availability", "report_downtime_intervals", "report_credit_entitlements"):
        rows = query(url, f"SELECT * FROM {table}")  # noqa: S608
        out += sorted((dict(r, as_of_position=None) for r in rows), key=repr)
    return out


@pytest.mark.parametrize("page", [1, 3, 500])
def test_a_follower_with_windows_writes_the_rebuilds_tables(
    ledger: Ledger, store_url: str, runner: CliRunner, page: int
) -> None:
    register(ledger)
    ledger.append_facts(_history())
    ledger_cli(runner, store_url, "projections", "rebuild")
    for f in _later():
        ledger.append(f)
    head = ledger.recorder.last_position()

    projection = ReportingProjection(open_view(ledger.recorder))
    floors: list[int | None] = []
    load = projection._groups

    def watched(*args, **kwargs):  # type: ignore[no-untyped-def]
        groups = load(*args, **kwargs)
        floors.extend(g.floor for g in groups)
        return groups

    projection._groups = watched  # type: ignore[method-assign]
    assert projection.catch_up(page=page) == head
    assert not projection.state.whole
    assert any(f is not None for f in floors), "no group was loaded as a window"
    assert assert_tables_match_reports(store_url, runner, rebuilt=False) > 0
    followed = _rows(store_url)
    ledger_cli(runner, store_url, "projections", "rebuild")
    assert _rows(store_url) == followed
