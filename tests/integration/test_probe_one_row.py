"""A probe report has one key index row, ``p:<service>/<probe>@<day>`` (issue 17, hI).

Both stores. Every reader of a service's whole history (``ledger events --service``, the
rebuild and the follower, support's downtime stretches, an earlier store's month read) reads
``s:<service>`` and the service's probe range, so it sees what it saw when probe reports
were under ``s:`` too; a store written before month buckets (probe reports under ``s:``
alone) still verifies and reports the same figures as the same facts filed this way.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

import ledger.month_read as month_read
from ledger.application import Ledger
from ledger.events import IncidentOpened, IncidentResolved, ProbeFailed, ProbeRecovered
from ledger.persistence.keys import index_keys, read_service_states
from ledger.policy_check import load_policy
from ledger.verify import verify
from projections.model import to_json
from tests.integration.test_month_bounded import C, S, _earlier_keys, _policy
from tests.integration.test_reporting import query
from tests.lines import import_lines

MONTH = "2026-03"


def _facts() -> list[Any]:
    at = datetime(2026, 3, 10, 8, tzinfo=UTC)
    return [
        ProbeFailed(service=S, probe="p1", at=datetime(2026, 1, 20, tzinfo=UTC)),  # down since January
        ProbeFailed(service=S, probe="p2", at=at),
        ProbeRecovered(service=S, probe="p2", at=at + timedelta(hours=3)),
        ProbeFailed(service="other", probe="p1", at=at),
        IncidentOpened(service=S, incident="i1", at=at, impact="degraded"),
        IncidentResolved(incident="i1", at=at + timedelta(hours=1)),
        ProbeRecovered(service=S, probe="p1", at=datetime(2026, 3, 20, tzinfo=UTC)),
    ]


def _index_rows(ledger: Ledger) -> dict[int, list[str]]:
    rows: dict[int, list[str]] = {}
    with ledger.recorder.snapshot() as snap:
        for position, key in snap.index():
            rows.setdefault(int(position), []).append(str(key))  # type: ignore[call-overload]
    return rows


def _view_downtime(url: str) -> Decimal:
    rows = query(url, f"SELECT downtime_seconds FROM report_monthly_availability "  # noqa: S608
                      f"WHERE contract = '{C}' AND month = '{MONTH}'")
    return Decimal(str(rows[0]["downtime_seconds"]))


def _fill(ledger: Ledger, earlier: bool) -> None:
    ledger.register_contract(load_policy(_policy("Europe/Paris", '"any"', "downtime")))
    lines = [msgspec.json.encode(f) for f in _facts()]
    if earlier:
        with _earlier_keys():
            import_lines(ledger, lines)
    else:
        import_lines(ledger, lines)


def _probe_positions(ledger: Ledger) -> list[int]:
    return [r.position for r in ledger.records() if isinstance(r.fact, ProbeFailed | ProbeRecovered)
            and r.fact.service == S]


def test_a_probe_report_has_one_row_and_whole_service_readers_see_it(ledger: Ledger, store_url: str) -> None:
    from projections.tracked import rebuild

    _fill(ledger, earlier=False)
    probes = _probe_positions(ledger)
    rows = _index_rows(ledger)
    filed = [list(index_keys(r.fact)) for r in ledger.recorder.read_positions(probes)]
    assert [rows[p] for p in probes] == filed
    assert all(len(rows[p]) == 1 and rows[p][0].startswith("p:web/") for p in probes)
    assert [r.position for r in ledger.recorder.read_keyed(["s:web"], 99)] == [6]  # the incident only
    last = ledger.recorder.last_position()
    about = [r.position for r in ledger.records() if getattr(r.fact, "service", S) == S]
    assert [r.position for r in ledger.events(service=S)] == about  # contract, probes, incident, resolution
    assert {p for p, _ in read_service_states(ledger.recorder, ["s:web"], last)} == {*probes, 6}
    assert set(probes) <= {r.position for r in ledger.service_records([S], [C], last)}
    assert verify(ledger.recorder).ok
    report = ledger.report(C, MONTH).report
    assert report.downtime_seconds > 0
    rebuild(ledger, workers=1)
    assert _view_downtime(store_url) == Decimal(str(report.downtime_seconds))


def test_an_earlier_store_verifies_and_reports_the_same(make_ledger: Callable[[str], Ledger], store_url: str,
                                                        tmp_path: Any) -> None:
    """Probe reports under ``s:`` alone (a store written before month buckets): read whole, same figures."""
    from projections.tracked import rebuild

    old = make_ledger(store_url)
    new = make_ledger(f"sqlite:///{tmp_path / 'new.db'}")
    _fill(old, earlier=True)
    _fill(new, earlier=False)
    probes = _probe_positions(old)
    rows = _index_rows(old)
    assert all(rows[p] == ["s:web"] for p in probes)
    last = old.recorder.last_position()
    assert not month_read.is_bucketed(old.recorder, S, last)
    assert month_read.is_bucketed(new.recorder, S, last)
    result = verify(old.recorder)
    assert result.ok, result.problem
    strip = ("checkpoint",)
    for month in ("2026-01", "2026-02", MONTH):
        a = msgspec.json.decode(to_json(old.report(C, month).report))
        b = msgspec.json.decode(to_json(new.report(C, month).report))
        for k in strip:
            a.pop(k, None)
            b.pop(k, None)
        assert a == b, month
    assert [r.position for r in old.events(service=S)] == [r.position for r in new.events(service=S)]
    rebuild(old, workers=1)
    assert _view_downtime(store_url) == Decimal(str(new.report(C, MONTH).report.downtime_seconds)) > 0
