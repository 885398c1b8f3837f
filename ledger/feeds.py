"""Monitoring payloads into facts: Alertmanager and Uptime Kuma webhooks, Statuspage JSON.

Pure: bytes in, facts out; nothing here reads the store or the clock. A payload
sent again gives the same facts with the same ids, and the order of the alerts
or incidents in it does not change them (the facts come out sorted), so the
ledger's idempotent append makes a re-sent webhook change nothing.

Every fact goes through ``decode_fact``, the check every NDJSON line gets: a
payload can hold nothing an import would refuse. Errors are one line naming
the payload's field (``alerts[2].labels.service``).
"""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

from ledger.admission import decode_fact
from ledger.calendar import rfc3339
from ledger.errors import BadInput
from ledger.events import Fact
from ledger.text import bom_or

Instant = Annotated[datetime, msgspec.Meta(tz=True)]
T = TypeVar("T")

SOURCES: Final = ("alertmanager", "uptime-kuma", "statuspage")
_DETAIL_MAX: Final = 1000  # of a monitor's message kept as a failure's detail
_NOT_TEXT: Final = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


# --- which labels name the service and the probe ---------------------------------


class LabelMap(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The label (Alertmanager) or monitor tag (Uptime Kuma) naming each part of a probe."""

    service: str = "service"
    probe: str = "probe"


DEFAULT_MAP: Final = LabelMap()
_MAP_KEYS: Final = ("service", "probe")


def parse_label_map(spec: str) -> LabelMap:
    """``service=instance,probe=job``, or the path of a TOML file holding those keys."""
    if spec.endswith(".toml") or (("=" not in spec) and Path(spec).is_file()):
        try:
            pairs: dict[str, Any] = tomllib.loads(Path(spec).read_text(encoding="utf-8"))
        except OSError as exc:
            raise BadInput(f"--map {spec}: cannot read it ({exc.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            why = bom_or(Path(spec).read_bytes(), "TOML", f"not valid TOML: {exc}", "line 1: ")
            raise BadInput(f"--map {spec}: {why}") from None
        where = f"--map {spec}"
    else:
        pairs = {}
        where = "--map"
        for item in spec.split(","):
            key, eq, value = item.strip().partition("=")
            if not eq:
                raise BadInput(f"--map: expected KEY=LABEL pairs (service=..., probe=...), got {item!r}")
            if key in pairs:
                raise BadInput(f"--map: `{key}` given twice")
            pairs[key] = value.strip()
    for key, value in pairs.items():
        if key not in _MAP_KEYS:
            raise BadInput(f"{where}: unknown key `{key}` (expected {', '.join(_MAP_KEYS)})")
        if not isinstance(value, str) or not value or _NOT_TEXT.search(value) or "\n" in value:
            raise BadInput(f"{where}: `{key}` must name a label (a non-empty string)")
    return LabelMap(**pairs)


# --- shared helpers ---------------------------------------------------------------


_PATH: Final = re.compile(r"\s*-\s*at `\$\.?([^`]*)`")


def _decode(decoder: msgspec.json.Decoder[T], data: bytes, what: str) -> T:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        match = _PATH.search(msg)
        field = (match.group(1) if match else "") or "payload"
        raise BadInput(f"{what}: field `{field}`: {_PATH.sub('', msg)}") from None
    except msgspec.DecodeError as exc:
        raise BadInput(f"{what}: {bom_or(data, 'JSON', f'not valid JSON: {exc}')}") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{what}: not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    except RecursionError:
        raise BadInput(f"{what}: JSON nested too deeply") from None


def utc_text(at: datetime) -> str:
    """An instant as it appears in derived ids: UTC, RFC 3339, microseconds only when present."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fact(fields: dict[str, Any], where: str) -> Fact:
    try:
        return decode_fact(msgspec.json.encode(fields))
    except BadInput as exc:
        raise BadInput(f"{where}: {exc}") from None


def _ordered(facts: list[Fact]) -> list[Fact]:
    """Exact repeats dropped, the rest in one order whatever the payload's order."""
    unique = {msgspec.json.encode(f, order="sorted"): f for f in facts}
    return [unique[k] for k in sorted(unique)]


def _text(value: str) -> str:
    return _NOT_TEXT.sub(" ", value)[:_DETAIL_MAX]


# --- Alertmanager (webhook version 4) ---------------------------------------------


class _Alert(msgspec.Struct, rename="camel"):
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    starts_at: Instant
    fingerprint: str
    ends_at: Instant | None = None


class _AlertmanagerPayload(msgspec.Struct):
    alerts: list[_Alert]
    version: str | None = None


_AM: Final = msgspec.json.Decoder(_AlertmanagerPayload)


def _label(labels: dict[str, str], name: str, where: str, part: str) -> str:
    try:
        return labels[name]
    except KeyError:
        hint = "" if name != part else f" (`--map {part}=LABEL` names another label)"
        raise BadInput(f"alertmanager: field `{where}.labels.{name}`: missing; it names the {part}{hint}"
                       ) from None


def alertmanager_facts(data: bytes, labels: LabelMap = DEFAULT_MAP) -> list[Fact]:
    """The facts of an Alertmanager webhook: a probe failure per alert, and its recovery if resolved."""
    payload = _decode(_AM, data, "alertmanager")
    if payload.version is not None and payload.version != "4":
        raise BadInput(f"alertmanager: field `version`: expected \"4\", got {payload.version!r}")
    facts: list[Fact] = []
    for i, alert in enumerate(payload.alerts):
        where = f"alerts[{i}]"
        service = _label(alert.labels, labels.service, where, "service")
        probe = _label(alert.labels, labels.probe, where, "probe")
        fp = alert.fingerprint
        if not fp or not fp.isprintable() or len(fp) > 128:
            raise BadInput(f"alertmanager: field `{where}.fingerprint`: "
                           "expected 1 to 128 printable characters")
        base = {"service": service, "probe": probe}
        failed = {"type": "probe_failed", "id": f"alertmanager:{fp}:failed:{utc_text(alert.starts_at)}",
                  **base, "at": alert.starts_at.astimezone(UTC)}
        if "alertname" in alert.labels:
            # A label, not an annotation: labels make the fingerprint, so a re-sent alert has the
            # same ones, while annotations may be templated on the current value.
            failed["detail"] = _text("alertname=" + alert.labels["alertname"])
        facts.append(_fact(failed, f"alertmanager: {where}"))
        if alert.status == "resolved":
            if alert.ends_at is None:
                raise BadInput(f"alertmanager: field `{where}.endsAt`: a resolved alert needs its end")
            if alert.ends_at <= alert.starts_at:
                raise BadInput(f"alertmanager: field `{where}.endsAt`: must be after `startsAt`")
            facts.append(_fact(
                {"type": "probe_recovered", "id": f"alertmanager:{fp}:recovered:{utc_text(alert.ends_at)}",
                 **base, "at": alert.ends_at.astimezone(UTC)},
                f"alertmanager: {where}"))
    return _ordered(facts)


# --- Uptime Kuma (webhook notification) -------------------------------------------


class _Tag(msgspec.Struct):
    name: str
    value: str | None = None


class _Monitor(msgspec.Struct):
    name: str
    id: int | str | None = None
    tags: list[_Tag] | None = None


class _Heartbeat(msgspec.Struct):
    status: int
    time: str
    msg: Any = None


class _KumaPayload(msgspec.Struct):
    heartbeat: _Heartbeat | None = None
    monitor: _Monitor | None = None


_KUMA: Final = msgspec.json.Decoder(_KumaPayload)
# Uptime Kuma writes `heartbeat.time` in UTC without an offset ("2026-10-04 09:15:00.123").
_KUMA_TIME: Final = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?")
KUMA_DOWN, KUMA_UP = 0, 1
_KUMA_IGNORED: Final = (2, 3)  # pending, maintenance: not a change of reachability


def _kuma_time(text: str) -> datetime:
    match = _KUMA_TIME.fullmatch(text)
    if match is not None:
        year, month, day, hour, minute, second, frac = match.groups()
        try:
            at = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
        except ValueError as exc:
            raise BadInput(f"uptime-kuma: field `heartbeat.time`: {exc}") from None
        return at + timedelta(microseconds=int((frac or "0").ljust(6, "0")))
    given = rfc3339(text)
    if given is None or given.tzinfo is None:
        raise BadInput("uptime-kuma: field `heartbeat.time`: expected `YYYY-MM-DD HH:MM:SS[.fff]` (UTC) "
                       f"or an RFC 3339 timestamp with an offset, got {text!r}")
    return given


def _probe_of(monitor: _Monitor, labels: LabelMap) -> tuple[str, str]:
    tags = {t.name: t.value for t in monitor.tags or () if t.value}
    service, probe = tags.get(labels.service), tags.get(labels.probe)
    if service is None or probe is None:
        named_service, slash, named_probe = monitor.name.partition("/")
        if not slash or not named_service or not named_probe:
            raise BadInput(f"uptime-kuma: field `monitor.name`: expected SERVICE/PROBE (or tags "
                           f"`{labels.service}` and `{labels.probe}`), got {monitor.name!r}")
        service, probe = service or named_service, probe or named_probe
    return service, probe


def uptime_kuma_facts(data: bytes, labels: LabelMap = DEFAULT_MAP) -> list[Fact]:
    """The fact of an Uptime Kuma notification: down is a probe failure, up its recovery."""
    payload = _decode(_KUMA, data, "uptime-kuma")
    beat, monitor = payload.heartbeat, payload.monitor
    if beat is None and monitor is None:
        return []  # the "Test" button's notification: a message and nothing else
    if beat is None or monitor is None:
        missing = "heartbeat" if beat is None else "monitor"
        raise BadInput(f"uptime-kuma: field `{missing}`: missing")
    if beat.status in _KUMA_IGNORED:
        return []
    if beat.status not in (KUMA_DOWN, KUMA_UP):
        raise BadInput(f"uptime-kuma: field `heartbeat.status`: expected 0 (down) or 1 (up), "
                       f"got {beat.status}")
    service, probe = _probe_of(monitor, labels)
    at = _kuma_time(beat.time).astimezone(UTC)
    who = monitor.name if monitor.id is None else str(monitor.id)
    kind = "down" if beat.status == KUMA_DOWN else "up"
    fields: dict[str, Any] = {
        "type": "probe_failed" if beat.status == KUMA_DOWN else "probe_recovered",
        "id": f"uptime-kuma:{who}:{kind}:{utc_text(at)}", "service": service, "probe": probe, "at": at,
    }
    if beat.status == KUMA_DOWN and isinstance(beat.msg, str) and beat.msg:
        fields["detail"] = _text(beat.msg)
    return [_fact(fields, "uptime-kuma")]


# --- Statuspage (incidents and scheduled maintenances, API v2 JSON) ---------------


class _Component(msgspec.Struct):
    name: str


class _Entry(msgspec.Struct):
    id: str
    name: str
    status: str
    created_at: Instant
    impact: str | None = None
    started_at: Instant | None = None
    resolved_at: Instant | None = None
    updated_at: Instant | None = None
    scheduled_for: Instant | None = None
    scheduled_until: Instant | None = None
    components: list[_Component] | None = None


class _StatuspageDoc(msgspec.Struct):
    incidents: list[_Entry] | None = None
    scheduled_maintenances: list[_Entry] | None = None


_SP: Final = msgspec.json.Decoder(_StatuspageDoc)
# Statuspage's incident impact, by the component status it stands for: `critical` is a major
# outage; `major` a partial outage and `minor` degraded performance, which the ledger's
# `degraded` covers (only `outage` counts as downtime).
IMPACTS: Final = {"critical": "outage", "major": "degraded", "minor": "degraded", "none": "none"}
_RESOLVED: Final = ("resolved", "postmortem")
_OPEN: Final = ("investigating", "identified", "monitoring")
_PLANNED: Final = ("scheduled", "in_progress", "verifying")


def _services(entry: _Entry, service: str | None, where: str) -> list[str]:
    if service is not None:
        return [service]
    names = sorted({c.name for c in entry.components or ()})
    if not names:
        raise BadInput(f"statuspage: field `{where}.components`: none listed; name the service "
                       "(`--service`, or `?service=` over HTTP)")
    return names


def _incident(entry: _Entry, where: str, services: list[str]) -> list[Fact]:
    if entry.status not in (*_OPEN, *_RESOLVED):
        raise BadInput(f"statuspage: field `{where}.status`: unknown incident status {entry.status!r}")
    impact = IMPACTS.get(entry.impact or "")
    if impact is None:
        raise BadInput(f"statuspage: field `{where}.impact`: expected one of {', '.join(IMPACTS)}, "
                       f"got {entry.impact!r}")
    if entry.status in _RESOLVED and entry.resolved_at is None:
        raise BadInput(f"statuspage: field `{where}.resolved_at`: a {entry.status} incident needs it")
    out: list[Fact] = []
    for service in services:
        name = f"statuspage:{entry.id}/{service}"
        # No explicit ids: an id derived from content lets a later export that raised the
        # impact add its opening (the fold applies the worst), where a fixed id would conflict.
        out.append(_fact({"type": "incident_opened", "service": service, "incident": name,
                          "at": entry.started_at or entry.created_at, "impact": impact,
                          "title": entry.name, "severity": entry.impact}, f"statuspage: {where}"))
        if entry.status in _RESOLVED:
            out.append(_fact({"type": "incident_resolved", "incident": name, "at": entry.resolved_at},
                             f"statuspage: {where}"))
    return out


def _maintenance(entry: _Entry, where: str, services: list[str]) -> list[Fact]:
    if entry.scheduled_for is None or entry.scheduled_until is None:
        missing = "scheduled_for" if entry.scheduled_for is None else "scheduled_until"
        raise BadInput(f"statuspage: field `{where}.{missing}`: a scheduled maintenance needs it")
    if entry.scheduled_until <= entry.scheduled_for:
        raise BadInput(f"statuspage: field `{where}.scheduled_until`: must be after `scheduled_for`")
    end: tuple[str, datetime | None] | None = None
    if entry.status == "completed":
        end = "maintenance_completed", entry.resolved_at
    elif entry.status == "cancelled":
        end = "maintenance_cancelled", entry.resolved_at or entry.updated_at
    elif entry.status not in _PLANNED:
        raise BadInput(f"statuspage: field `{where}.status`: unknown maintenance status {entry.status!r}")
    if end is not None and end[1] is None:
        field = "resolved_at" if entry.status == "completed" else "updated_at"
        raise BadInput(f"statuspage: field `{where}.{field}`: a {entry.status} maintenance needs it")
    out: list[Fact] = []
    for service in services:
        name = f"statuspage:{entry.id}/{service}"
        out.append(_fact({"type": "maintenance_announced", "service": service, "maintenance": name,
                          "announced_at": entry.created_at, "starts_at": entry.scheduled_for,
                          "ends_at": entry.scheduled_until, "title": entry.name}, f"statuspage: {where}"))
        if end is not None:
            out.append(_fact({"type": end[0], "maintenance": name, "at": end[1]}, f"statuspage: {where}"))
    return out


def statuspage_facts(data: bytes, service: str | None = None) -> list[Fact]:
    """The facts of a Statuspage export (``incidents``, ``scheduled_maintenances`` or both).

    Each affected component is a service (``service`` names one for every entry
    instead); an entry with ``scheduled_for`` is a maintenance wherever it is listed.
    """
    doc = _decode(_SP, data, "statuspage")
    if doc.incidents is None and doc.scheduled_maintenances is None:
        raise BadInput("statuspage: field `incidents`: expected `incidents` or `scheduled_maintenances`")
    facts: list[Fact] = []
    lists = (("incidents", doc.incidents), ("scheduled_maintenances", doc.scheduled_maintenances))
    for key, entries in lists:
        for i, entry in enumerate(entries or ()):
            where = f"{key}[{i}]"
            services = _services(entry, service, where)
            if entry.scheduled_for is not None or key == "scheduled_maintenances":
                facts += _maintenance(entry, where, services)
            else:
                facts += _incident(entry, where, services)
    return _ordered(facts)


def facts_from(source: str, data: bytes, labels: LabelMap = DEFAULT_MAP,
               service: str | None = None) -> list[Fact]:
    """The facts of a payload from ``source`` (one of ``SOURCES``)."""
    if source == "alertmanager":
        return alertmanager_facts(data, labels)
    if source == "uptime-kuma":
        return uptime_kuma_facts(data, labels)
    if source == "statuspage":
        return statuspage_facts(data, service)
    raise BadInput(f"unknown source `{source}` (expected one of {', '.join(SOURCES)})")
