"""Monitoring payloads into facts (ledger.feeds): pure, no store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import BadInput
from ledger.events import (
    IncidentOpened,
    IncidentResolved,
    MaintenanceAnnounced,
    MaintenanceCancelled,
    MaintenanceCompleted,
    ProbeFailed,
    ProbeRecovered,
    fact_id,
)
from ledger.feeds import (
    LabelMap,
    alertmanager_facts,
    parse_label_map,
    statuspage_facts,
    uptime_kuma_facts,
)


def alert(fp: str, status: str = "firing", start: str = "2026-10-04T09:15:00Z",
          end: str = "0001-01-01T00:00:00Z", **labels: str) -> dict[str, Any]:
    return {"status": status, "labels": {"service": "web", "probe": "paris", **labels},
            "annotations": {"summary": "down"}, "startsAt": start, "endsAt": end,
            "generatorURL": "http://prometheus/graph", "fingerprint": fp}


def webhook(*alerts: dict[str, Any]) -> bytes:
    return json.dumps({"version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": "firing",
                       "receiver": "ledger", "groupLabels": {}, "commonLabels": {},
                       "commonAnnotations": {}, "externalURL": "http://am", "alerts": list(alerts)}).encode()


def test_firing_alert_is_a_probe_failure_at_its_start() -> None:
    [fact] = alertmanager_facts(webhook(alert("f1", start="2026-10-04T11:15:00+02:00", alertname="Down")))
    assert isinstance(fact, ProbeFailed)
    assert (fact.service, fact.probe, fact.at) == ("web", "paris", datetime(2026, 10, 4, 9, 15, tzinfo=UTC))
    assert fact.id == "alertmanager:f1:failed:2026-10-04T09:15:00Z"
    assert fact.detail == "alertname=Down"


def test_resolved_alert_is_the_failure_and_the_recovery() -> None:
    facts = alertmanager_facts(webhook(alert("f1", "resolved", end="2026-10-04T09:45:00.5Z")))
    assert [type(f) for f in facts] == [ProbeFailed, ProbeRecovered]
    firing = alertmanager_facts(webhook(alert("f1")))
    assert facts[0] == firing[0]  # the failure the firing webhook gave: same id, same content
    assert facts[1].at == datetime(2026, 10, 4, 9, 45, 0, 500000, tzinfo=UTC)
    assert facts[1].id == "alertmanager:f1:recovered:2026-10-04T09:45:00.500000Z"


def test_label_map_names_other_labels() -> None:
    labels = parse_label_map("service=instance,probe=job")
    body = webhook({**alert("f1"), "labels": {"instance": "api", "job": "blackbox"}})
    [fact] = alertmanager_facts(body, labels)
    assert isinstance(fact, ProbeFailed)
    assert (fact.service, fact.probe) == ("api", "blackbox")


def test_label_map_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text('service = "instance"\n')
    assert parse_label_map(str(path)) == LabelMap(service="instance", probe="probe")


@pytest.mark.parametrize(("spec", "message"), [
    ("region=eu", "--map: unknown key `region` (expected service, probe)"),
    ("service", "--map: expected KEY=LABEL pairs"),
    ("service=", "--map: `service` must name a label"),
    ("service=a,service=b", "--map: `service` given twice"),
])
def test_bad_label_map(spec: str, message: str) -> None:
    with pytest.raises(BadInput, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        parse_label_map(spec)


def test_bad_toml_map(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text('service = "instance"\nzone = "x"\n')
    with pytest.raises(BadInput, match="unknown key `zone`"):
        parse_label_map(str(path))
    path.write_text("service = \n")
    with pytest.raises(BadInput, match="not valid TOML"):
        parse_label_map(str(path))


@pytest.mark.parametrize(("body", "message"), [
    (b"{", "alertmanager: not valid JSON"),
    (b"[]", "alertmanager: field `payload`: Expected `object`, got `array`"),
    (b'{"alerts": [{}]}', "alertmanager: field `alerts[0]`: Object missing required field"),
    (webhook({**alert("f"), "startsAt": "2026-10-04T09:15:00"}), "field `alerts[0].startsAt`"),
    (webhook({**alert("f"), "status": "pending"}), "field `alerts[0].status`"),
    (webhook(alert("f"), {**alert("g"), "labels": {"service": "web"}}),
     "field `alerts[1].labels.probe`: missing"),
    (webhook(alert("f", "resolved", end="2026-10-04T09:15:00Z")), "field `alerts[0].endsAt`: must be after"),
    (webhook({**alert("f", "resolved"), "endsAt": None}), "field `alerts[0].endsAt`: a resolved alert"),
    (webhook(alert("")), "field `alerts[0].fingerprint`"),
    (webhook(alert("f", start="1900-01-01T00:00:00Z")), "alerts[0]: field `at`: must lie between"),
    (webhook(alert("f", probe="a\u0085b")), "alerts[0]: field `probe`: must not contain control"),
    (json.dumps({"version": "3", "alerts": []}).encode(), "field `version`"),
])
def test_bad_alertmanager_payloads(body: bytes, message: str) -> None:
    with pytest.raises(BadInput) as info:
        alertmanager_facts(body)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                        timezones=st.just(UTC))
alerts = st.builds(
    # A fingerprint is a hash of the labels: one per probe here.
    lambda fp, start, length, resolved, probe: alert(
        probe + fp, "resolved" if resolved else "firing", start.isoformat(),
        (start + timedelta(seconds=length)).isoformat() if resolved else "0001-01-01T00:00:00Z",
        probe=probe),
    st.text("0123456789abcdef", min_size=1, max_size=16), instants, st.integers(1, 10**6), st.booleans(),
    st.sampled_from(["paris", "london"]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(alerts, max_size=8), st.randoms(use_true_random=False))
def test_order_and_repeats_change_nothing(batch: list[dict[str, Any]], rnd: Any) -> None:
    facts = alertmanager_facts(webhook(*batch))
    shuffled = list(batch)
    rnd.shuffle(shuffled)
    assert alertmanager_facts(webhook(*shuffled)) == facts
    # The same alerts sent twice in one payload, or again later: the same facts.
    assert alertmanager_facts(webhook(*batch, *batch)) == facts
    ids = [fact_id(f) for f in facts]
    assert len(set(ids)) == len(ids)
    # A firing webhook and then its resolution: every fact of the first is among the second's.
    firing = alertmanager_facts(webhook(*({**a, "status": "firing"} for a in batch)))
    assert set(msgspec.json.encode(f) for f in firing) <= set(msgspec.json.encode(f) for f in facts)


# --- Uptime Kuma -------------------------------------------------------------------


def kuma(status: int = 0, name: str = "web/paris", time: str = "2026-10-04 09:15:00.123",
         **monitor: Any) -> bytes:
    return json.dumps({
        "heartbeat": {"monitorID": 7, "status": status, "time": time, "msg": "timeout", "important": True,
                      "duration": 60, "timezone": "Europe/Paris", "timezoneOffset": "+02:00",
                      "localDateTime": "2026-10-04 11:15:00"},
        "monitor": {"id": 7, "name": name, "url": "https://web.example", "type": "http", **monitor},
        "msg": f"[{name}] [Down] timeout",
    }).encode()


def test_kuma_down_and_up() -> None:
    [down] = uptime_kuma_facts(kuma(0))
    [up] = uptime_kuma_facts(kuma(1, time="2026-10-04T11:45:00+02:00"))
    assert isinstance(down, ProbeFailed)
    assert isinstance(up, ProbeRecovered)
    assert down.at == datetime(2026, 10, 4, 9, 15, 0, 123000, tzinfo=UTC)  # Kuma's time is UTC
    assert up.at == datetime(2026, 10, 4, 9, 45, tzinfo=UTC)
    assert (down.service, down.probe, down.detail) == ("web", "paris", "timeout")
    assert down.id == "uptime-kuma:7:down:2026-10-04T09:15:00.123000Z"
    assert uptime_kuma_facts(kuma(0)) == [down]


def test_kuma_tags_name_service_and_probe() -> None:
    tags = [{"name": "svc", "value": "api"}, {"name": "probe", "value": "frankfurt"}]
    [fact] = uptime_kuma_facts(kuma(0, name="anything", tags=tags), parse_label_map("service=svc"))
    assert isinstance(fact, ProbeFailed)
    assert (fact.service, fact.probe) == ("api", "frankfurt")


def test_kuma_test_button_and_other_states_record_nothing() -> None:
    assert uptime_kuma_facts(b'{"heartbeat": null, "monitor": null, "msg": "Uptime Kuma Testing"}') == []
    assert uptime_kuma_facts(kuma(2)) == []
    assert uptime_kuma_facts(kuma(3)) == []


@pytest.mark.parametrize(("body", "message"), [
    (kuma(5), "field `heartbeat.status`: expected 0 (down) or 1 (up), got 5"),
    (kuma(0, name="web"), "field `monitor.name`: expected SERVICE/PROBE"),
    (kuma(0, time="04/10/2026"), "field `heartbeat.time`"),
    (kuma(0, time="2026-02-30 10:00:00"), "field `heartbeat.time`"),
    (b'{"heartbeat": {"status": 0, "time": "2026-10-04 09:15:00"}}', "field `monitor`: missing"),
    (b'{"heartbeat": {"status": "down"}}', "field `heartbeat.status`"),
])
def test_bad_kuma_payloads(body: bytes, message: str) -> None:
    with pytest.raises(BadInput) as info:
        uptime_kuma_facts(body)
    assert message in str(info.value)


# --- Statuspage ----------------------------------------------------------------------


def incident(id_: str = "inc1", status: str = "resolved", impact: str = "critical",
             components: tuple[str, ...] = ("web",), **extra: Any) -> dict[str, Any]:
    return {"id": id_, "name": "Web down", "status": status, "impact": impact,
            "created_at": "2026-10-04T09:20:00.000Z", "started_at": "2026-10-04T09:15:00.000Z",
            "updated_at": "2026-10-04T10:00:00.000Z", "monitoring_at": None,
            "resolved_at": "2026-10-04T09:50:00.000Z" if status in ("resolved", "postmortem") else None,
            "shortlink": "https://stspg.io/x", "page_id": "p1", "scheduled_for": None,
            "scheduled_until": None, "incident_updates": [],
            "components": [{"id": f"c-{c}", "name": c, "status": "operational"} for c in components],
            **extra}


def maintenance(id_: str = "m1", status: str = "scheduled", **extra: Any) -> dict[str, Any]:
    return {**incident(id_, status, "maintenance"), "name": "Upgrade",
            "created_at": "2026-10-01T08:00:00Z", "scheduled_for": "2026-10-10T22:00:00Z",
            "scheduled_until": "2026-10-11T02:00:00Z",
            "resolved_at": "2026-10-11T01:00:00Z" if status == "completed" else None, **extra}


def page(**lists: list[dict[str, Any]]) -> bytes:
    return json.dumps({"page": {"id": "p1", "name": "Example"}, **lists}).encode()


def test_statuspage_incidents() -> None:
    facts = statuspage_facts(page(incidents=[incident(), incident("inc2", "monitoring", "minor")]))
    opened = [f for f in facts if isinstance(f, IncidentOpened)]
    resolved = [f for f in facts if isinstance(f, IncidentResolved)]
    assert {(f.incident, f.impact, f.severity) for f in opened} == {
        ("statuspage:inc1/web", "outage", "critical"), ("statuspage:inc2/web", "degraded", "minor")}
    assert [(f.incident, f.at.isoformat()) for f in resolved] == [
        ("statuspage:inc1/web", "2026-10-04T09:50:00+00:00")]
    assert opened[0].at == datetime(2026, 10, 4, 9, 15, tzinfo=UTC)  # started_at, not created_at


def test_statuspage_one_opening_per_component_or_the_named_service() -> None:
    facts = statuspage_facts(page(incidents=[incident(components=("api", "web"))]))
    assert sorted(f.service for f in facts if isinstance(f, IncidentOpened)) == ["api", "web"]
    facts = statuspage_facts(page(incidents=[incident(components=())]), service="platform")
    assert [f.service for f in facts if isinstance(f, IncidentOpened)] == ["platform"]


def test_statuspage_maintenances() -> None:
    doc = page(scheduled_maintenances=[maintenance(), maintenance("m2", "completed"),
                                       maintenance("m3", "cancelled")])
    facts = statuspage_facts(doc)
    announced = [f for f in facts if isinstance(f, MaintenanceAnnounced)]
    assert len(announced) == 3
    assert announced[0].announced_at == datetime(2026, 10, 1, 8, tzinfo=UTC)
    [done] = [f for f in facts if isinstance(f, MaintenanceCompleted)]
    [cancelled] = [f for f in facts if isinstance(f, MaintenanceCancelled)]
    assert (done.maintenance, done.at) == ("statuspage:m2/web", datetime(2026, 10, 11, 1, tzinfo=UTC))
    assert cancelled.maintenance == "statuspage:m3/web"
    assert cancelled.at == datetime(2026, 10, 4, 10, tzinfo=UTC)
    # summary.json lists a maintenance under both keys: the same facts once.
    both = page(incidents=[maintenance()], scheduled_maintenances=[maintenance()])
    assert statuspage_facts(both) == statuspage_facts(page(scheduled_maintenances=[maintenance()]))


@pytest.mark.parametrize(("doc", "message"), [
    (page(), "field `incidents`: expected `incidents` or `scheduled_maintenances`"),
    (page(incidents=[incident(impact="huge")]), "field `incidents[0].impact`"),
    (page(incidents=[incident(status="closed")]), "field `incidents[0].status`"),
    (page(incidents=[incident(components=())]), "field `incidents[0].components`: none listed"),
    (page(incidents=[{**incident(), "resolved_at": None}]), "field `incidents[0].resolved_at`"),
    (page(incidents=[{**incident(), "created_at": "yesterday"}]), "field `incidents[0].created_at`"),
    (page(scheduled_maintenances=[{**maintenance(), "scheduled_until": None}]),
     "field `scheduled_maintenances[0].scheduled_until`"),
    (page(scheduled_maintenances=[maintenance(scheduled_until="2026-10-10T21:00:00Z")]),
     "field `scheduled_maintenances[0].scheduled_until`: must be after `scheduled_for`"),
])
def test_bad_statuspage_documents(doc: bytes, message: str) -> None:
    with pytest.raises(BadInput) as info:
        statuspage_facts(doc)
    assert message in str(info.value)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([incident(), incident("i2", "investigating", "major"), maintenance(),
                                 maintenance("m2", "completed")]), max_size=6),
       st.randoms(use_true_random=False))
def test_statuspage_order_and_repeats_change_nothing(entries: list[dict[str, Any]], rnd: Any) -> None:
    facts = statuspage_facts(page(incidents=entries))
    shuffled = list(entries)
    rnd.shuffle(shuffled)
    assert statuspage_facts(page(incidents=shuffled + entries)) == facts
