"""Input hygiene on both stores (issue 14): what is refused is refused alike, and what is
accepted can always be reported, audited, projected and moved.
"""

from __future__ import annotations

import io
import re
from contextlib import suppress
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.admission import decode_fact
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.calendar import EARLIEST, LATEST
from ledger.errors import BadInput, NotFound
from ledger.events import ContractRegistered, IncidentOpened, ProbeFailed, canonical, derive_id, export_line
from ledger.ingest.lines import MAX_LINE, prepare_fact
from ledger.persistence.append import append_prepared
from ledger.policy import PolicyFile
from ledger.policy_check import MAX_POLICY_BYTES, check_policy, load_policy
from ledger.verify import verify
from projections.tracked import rebuild, run
from tests.conftest import StepClock
from tests.integration.test_store_contract import snapshot
from tests.lines import import_lines
from tests.pgserver import scratch_database

AT = "2026-10-04T09:15:00Z"
POLICY = b"""
[contract]
id = "c1"
customer = "Acme"
service = "web"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "100.00"

[availability]
target = "99.9"
probes = ["p"]
"""


def line(kind: str, **fields: Any) -> bytes:
    return msgspec.json.encode({"type": kind, **fields})


def import_refused(led: Ledger, data: bytes, match: str) -> None:
    """Refused with the same one-line message in process and by the preparing child, store untouched."""
    before = snapshot(led)
    for parallel_from in (1 << 30, 1):  # prepared here; prepared (linked and packed) in a child
        with pytest.raises(BadInput, match=match):
            led.import_file(io.BytesIO(data), parallel_from=parallel_from)
        assert snapshot(led) == before
    with pytest.raises(BadInput, match=match):
        import_lines(led, data.splitlines())
    assert snapshot(led) == before


def test_a_nul_in_free_text_is_refused_alike(ledger: Ledger) -> None:
    # Accepted by SQLite before, it then stopped every projection on PostgreSQL (a text column
    # cannot hold NUL).
    good = line("probe_failed", service="web", probe="p", at=AT)
    for kind, fields in [
        ("exclusion_declared", {"service": "web", "exclusion": "x", "category": "third_party",
                                "starts_at": AT, "ends_at": "2026-10-04T10:00:00Z", "reason": "a\x00b"}),
        ("probe_failed", {"service": "web", "probe": "p", "at": AT, "detail": "\x00"}),
        ("incident_opened", {"service": "web", "incident": "i", "at": AT, "impact": "none", "title": "\x85"}),
    ]:
        bad = line(kind, **fields)
        assert b"\\u0000" in bad or b"\xc2\x85" in bad
        field = next(k for k, v in fields.items() if v in ("a\x00b", "\x00", "\x85"))
        import_refused(ledger, good + b"\n" + bad + b"\n",
                       rf"^line 2: field `{field}`: must not contain control characters other than tab")
    import_lines(ledger, [good])
    assert run(ledger, ledger.url or "", once=True) == 1
    assert verify(ledger.recorder).ok


def test_tab_and_line_breaks_in_free_text_are_kept_and_projected(ledger: Ledger) -> None:
    ledger.register_contract(load_policy(POLICY + b'excludable = ["third_party"]\n'))
    reason = "CDN\tdown\r\nsee ticket"
    import_lines(ledger, [
        line("probe_failed", service="web", probe="p", at=AT),
        line("exclusion_declared", service="web", exclusion="x", category="third_party", starts_at=AT,
             ends_at="2026-10-04T10:00:00Z", reason=reason),
        line("probe_recovered", service="web", probe="p", at="2026-10-04T09:45:00Z"),
    ])
    assert run(ledger, ledger.url or "", once=True) == 4
    report = ledger.report("c1", "2026-10").report
    assert any(reason in i.reason for i in report.intervals), report.intervals


def test_out_of_range_instants_are_refused_alike(ledger: Ledger) -> None:
    good = line("probe_failed", service="web", probe="p", at=AT)
    for at in ("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59.999999Z"):
        import_refused(ledger, good + b"\n" + line("probe_recovered", service="x", probe="q", at=at),
                       r"^line 2: field `at`: must lie between 1970-01-01T00:00:00Z and ")
        import_refused(ledger, good + b"\n" + good[:-1] + b',"recorded_at":"' + at.encode() + b'"}',
                       r"^line 2: field `recorded_at`: must lie between ")


def test_a_repeated_key_is_refused_alike_wherever_it_is(ledger: Ledger) -> None:
    lines = [line("probe_failed", service="web", probe="p", at=AT, id=f"e{i}") for i in range(5000)]
    dup = b'{"type":"probe_failed","service":"web","probe":"p","at":"%s","service":"evil"}' % AT.encode()
    for where in (0, 2500, 4999):
        data = b"\n".join([*lines[:where], dup, *lines[where:]]) + b"\n"
        import_refused(ledger, data, rf"^line {where + 1}: field `service`: the key appears twice")
    # Explicit nulls are not repeated keys: accepted on every path, the same facts as without them.
    nulls = [b'{"type":"probe_failed","service":"web","probe":"p","at":"%s","detail":null,"id":"n%d"}'
             % (AT.encode(), i) for i in range(3)]
    assert ledger.import_file(io.BytesIO(b"\n".join(nulls)), parallel_from=1).appended == 3
    assert all(isinstance(r.fact, ProbeFailed) and r.fact.detail is None for r in ledger.records())


def test_a_maximal_policy_moves_between_stores(ledger: Ledger, tmp_path: Path, clock: StepClock) -> None:
    # As large as a policy may be: 100 probes with long names, 100 tiers, a long customer text.
    tiers = [{"below": f"{99 - i * 0.5:.1f}", "percent": "1"} for i in range(100)]

    def policy(wide: int) -> PolicyFile:  # names of 512 characters, ``wide`` of them two bytes long
        return _policy([f"{i:03d}" + "\u00e9" * wide + "p" * (509 - wide) for i in range(100)], tiers=tiers,
                       customer="c" * 998 + "\t\n")

    spare = MAX_POLICY_BYTES - len(msgspec.json.encode(policy(0)))
    pf = policy(spare // 100)  # each wide character adds one byte to each of the 100 names
    size = len(msgspec.json.encode(pf))
    assert MAX_POLICY_BYTES - 100 < size <= MAX_POLICY_BYTES, size
    ledger.register_contract(pf)
    exported = [export_line(r) for r in ledger.records()]
    assert all(len(e) < MAX_LINE for e in exported)
    other = open_ledger(f"sqlite:///{tmp_path / 'copy.db'}", clock=clock)
    try:
        other.import_file(io.BytesIO(b"\n".join(exported) + b"\n"), parallel_from=1)
        assert [export_line(r) for r in other.records()] == exported
        assert other.contracts()["c1"][0].policy == pf
    finally:
        other.close()
    # ...and back into the store it came from: already recorded.
    assert ledger.import_file(io.BytesIO(b"\n".join(exported)), parallel_from=1).appended == 0
    with pytest.raises(BadInput, match=r"the policy is \d+ bytes as JSON, at most 65536"):
        ledger.append(ContractRegistered(policy=policy(spare // 100 + 1)))


def _policy(probes: list[str], *, tiers: list[dict[str, str]], customer: str) -> PolicyFile:
    doc: dict[str, Any] = {
        "contract": {"id": "c1", "customer": customer, "service": "web", "timezone": "UTC",
                     "currency": "EUR", "monthly_fee": "1.00"},
        "availability": {"target": "99.9", "probes": probes},
    }
    if tiers:
        doc["credits"] = {"tiers": tiers}
    return msgspec.convert(doc, PolicyFile)


def _old_store(led: Ledger, facts: list[Any]) -> None:
    """Record facts as an older ledger would have: without the input rules of issue 14."""
    append_prepared(led.recorder, [[prepare_fact(n, f) for n, f in enumerate(facts, 1)]], led.clock)


def test_an_old_store_still_verifies_reports_and_projects(ledger: Ledger) -> None:
    old_policy = msgspec.convert({
        "contract": {"id": "c1", "customer": "x", "service": "web", "timezone": "Europe/Paris",
                     "currency": "EUR", "monthly_fee": "100"},
        "availability": {"target": "99.9"},
        "maintenance": {"min_notice": "5 business days", "outside_business_hours": True},
    }, PolicyFile)
    at = datetime(2026, 10, 4, 9, tzinfo=UTC)
    text, number = (IncidentOpened(service="web", incident=i, at=at, impact="outage", severity=s)
                    for i, s in (("i1", "2"), ("i2", 2)))
    _old_store(ledger, [ContractRegistered(policy=old_policy), text, number])
    assert verify(ledger.recorder).ok
    severities = [getattr(r.fact, "severity", None) for r in ledger.records()]
    assert severities == [None, "2", 2]  # read back as recorded: the chain still holds
    ledger.report("c1", "2026-10")
    rebuild(ledger)
    assert run(ledger, ledger.url or "", once=True) == 3
    # Exported and imported again, each keeps its id (the export names it); the old policy is
    # input the rules now refuse, named by its line.
    exported = [export_line(r) for r in ledger.records()]
    assert import_lines(ledger, exported[1:]).appended == 0
    with pytest.raises(BadInput, match=r"^line 1: policy: field `maintenance.min_notice`: .*\[calendar\]"):
        import_lines(ledger, exported)
    # Appended anew, "2" is the integer: one fact with 2, whose derived id is the integer's.
    assert canonical(text) != canonical(number)
    new = IncidentOpened(service="web", incident="i2", at=at, impact="outage", severity="2")
    assert ledger.append(new).appended == 0  # the same fact as the old integer one
    assert derive_id(number) in {r.id for r in ledger.records()}


def test_severity_two_ways_is_one_fact(ledger: Ledger) -> None:
    a = b'{"type":"incident_opened","service":"w","incident":"i","at":"%s","impact":"outage","severity":2}'
    b = a.replace(b":2}", b':"2"}')
    assert import_lines(ledger, [a % AT.encode()]).appended == 1
    assert ledger.import_file(io.BytesIO(b % AT.encode()), parallel_from=1).appended == 0
    assert import_lines(ledger, [b % AT.encode()]).appended == 0


# --- accepted input never stops a report, an audit or a projection ----------------------------

ZONES = ["UTC", "Pacific/Kiritimati", "Etc/GMT+12", "America/St_Johns", "Europe/Paris",
         "Australia/Lord_Howe", "America/Toronto"]
OFFSETS = [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)),
           timezone(timedelta(hours=5, minutes=45)), timezone(-timedelta(hours=3, minutes=30))]
SPAN = timedelta(days=75)  # around one instant per example: months held stay few (rebuild time)
# The reporting view holds every month from a contract's first month (its earliest fact's) to
# the later of the ledger's clock (2026-11 here) and its latest fact: an era far from the clock
# means thousands of months per pass (a probe down from 2500 on: 5,700 full evaluations each
# time the follower or a rebuild runs). The eras are the accepted range's first instant and
# the years around the clock; the last instant, which would cost 11,600 months a pass, is
# `test_the_edges_of_time_are_evaluable`'s (report and audit; see docs/decisions.md).
ERAS = st.one_of(
    st.sampled_from([EARLIEST, datetime(2026, 10, 1, tzinfo=UTC)]),
    st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[bytes], list[str]]:
    """Accepted lines about an instant anywhere in the accepted range, and months to report."""
    era: datetime = draw(ERAS)

    def instant() -> datetime:
        delta = timedelta(microseconds=draw(st.integers(-SPAN // timedelta(microseconds=1),
                                                        SPAN // timedelta(microseconds=1))))
        when = max(EARLIEST, min(LATEST, era + delta))
        return when.astimezone(draw(st.sampled_from(OFFSETS)))

    def window() -> tuple[str, str]:
        a, b = sorted((instant(), instant()))
        if a == b:
            a, b = (a - timedelta(microseconds=1), b) if b == LATEST else (a, b + timedelta(microseconds=1))
        return _ts(a), _ts(b)

    def month() -> str:
        return _month(instant().astimezone(draw(st.sampled_from([UTC, *OFFSETS[1:3]]))))

    service = st.sampled_from(["s1", "s2"])
    name = st.sampled_from(["a", "b"])
    out: list[bytes] = []
    contracts = draw(st.lists(st.sampled_from(["c1", "c2"]), min_size=1, max_size=2, unique=True))
    for cid in contracts:
        out.append(line("contract_registered", policy=draw(policies(cid, draw(service), None))))
    for _ in range(draw(st.integers(0, 25))):
        kind = draw(st.sampled_from(["probe_failed", "probe_recovered", "probe_failed", "probe_recovered",
                                     "incident_opened", "incident_resolved", "maintenance_announced",
                                     "maintenance_cancelled", "maintenance_completed",
                                     "force_majeure_declared", "exclusion_declared", "exclusion_revoked",
                                     "credit_claim_filed", "contract_amended"]))
        fields: dict[str, Any] = {}
        if draw(st.integers(0, 4)) == 0:
            fields["id"] = draw(st.sampled_from(["x", "y", "z"]))  # ids collide across facts
        if kind.startswith("probe_"):
            fields.update(service=draw(service), probe=draw(st.sampled_from(["p1", "p2", "p3"])),
                          at=_ts(instant()))
        elif kind == "incident_opened":
            fields.update(service=draw(service), incident=draw(name), at=_ts(instant()),
                          impact=draw(st.sampled_from(["outage", "degraded", "none"])),
                          severity=draw(st.sampled_from([None, 1, "2", "SEV1"])))
        elif kind in ("incident_resolved",):
            fields.update(incident=draw(name), at=_ts(instant()))
        elif kind == "maintenance_announced":
            starts, ends = window()
            fields.update(service=draw(service), maintenance=draw(name), announced_at=_ts(instant()),
                          starts_at=starts, ends_at=ends)
        elif kind.startswith("maintenance_"):
            fields.update(maintenance=draw(name), at=_ts(instant()))
        elif kind == "force_majeure_declared":
            starts, ends = window()
            fields.update(service=draw(service), declaration=draw(name), starts_at=starts, ends_at=ends,
                          reason="storm")
        elif kind == "exclusion_declared":
            starts, ends = window()
            fields.update(service=draw(service), exclusion=draw(name), starts_at=starts, ends_at=ends,
                          category=draw(st.sampled_from(["customer_isp", "third_party", "internet_failure"])),
                          reason="isp\tdown", contract=draw(st.sampled_from([None, "c1", "c2"])))
        elif kind == "exclusion_revoked":
            fields.update(ref=draw(st.sampled_from(["a", "b", "x"])), reason="wrong")
        elif kind == "credit_claim_filed":
            fields.update(contract=draw(st.sampled_from(["c1", "c2"])), month=month(), at=_ts(instant()))
        else:
            fields["policy"] = draw(policies(draw(st.sampled_from(contracts)), draw(service), month()))
        out.append(line(kind, **{k: v for k, v in fields.items() if v is not None}))
    months = sorted({month() for _ in range(3)} | {_month(era)})
    return out, months


def _ts(instant: datetime) -> str:
    return msgspec.json.encode(instant).decode()[1:-1]


def _month(instant: datetime) -> str:
    return f"{instant.year:04d}-{instant.month:02d}"


@st.composite
def policies(draw: st.DrawFn, cid: str, service: str, effective_from: str | None) -> Any:
    """An accepted policy, the extreme notices and durations included."""
    probes = draw(st.lists(st.sampled_from(["p1", "p2", "p3"]), unique=True, max_size=3))
    doc: dict[str, Any] = {
        "contract": {"id": cid, "customer": "Acme\tInc", "service": service,
                     "timezone": draw(st.sampled_from(ZONES)), "currency": "EUR",
                     draw(st.sampled_from(["monthly_fee", "annual_fee"])): draw(
                         st.sampled_from(["0", "1200.00", "999999999999999.999999999999"]))},
        "availability": {
            "target": draw(st.sampled_from(["0", "99.9", "100"])),
            "formula": draw(st.sampled_from(["downtime_over_total", "maintenance_out_of_total"])),
            "outage_when": draw(st.sampled_from(["any", "all", *range(1, len(probes) + 1)])),
            "probes": probes,
            "excludable": draw(st.lists(st.sampled_from(["force_majeure", "customer_isp", "third_party"]),
                                        unique=True)),
        },
    }
    if effective_from is not None:
        doc["contract"]["effective_from"] = effective_from
    calendar = draw(st.booleans())
    if draw(st.booleans()):
        notices = ["0h", "24h", "366d", "8784h", "527040m"]
        if calendar:
            notices += ["1 business day", "366 business days", "0 business days"]
        doc["maintenance"] = {"min_notice": draw(st.sampled_from(notices)),
                              "outside_business_hours": calendar and draw(st.booleans()),
                              "nonconforming": draw(st.sampled_from(["downtime", "emergency"]))}
    if calendar:
        doc["calendar"] = {"holidays": draw(st.sampled_from([None, "CA-ON", "BE"])),
                           "business_hours": draw(st.sampled_from(
                               ["09:00-17:00", "00:00-24:00", "23:59-24:00", "00:00-00:01"]))}
        if draw(st.booleans()):
            doc["calendar"]["timezone"] = draw(st.sampled_from(ZONES))
        doc["calendar"] = {k: v for k, v in doc["calendar"].items() if v is not None}
    if draw(st.booleans()):
        credits: dict[str, Any] = {"tiers": draw(st.lists(st.fixed_dictionaries({
            "below": st.sampled_from(["100", "99.99", "50", "0"]),
            "percent": st.sampled_from(["0", "10", "100"])}), min_size=1, max_size=3,
            unique_by=lambda t: t["below"]))}
        if draw(st.booleans()):
            credits["cap_percent"] = draw(st.sampled_from(["0", "50", "100"]))
        if draw(st.booleans()):
            credits["claim_deadline_days"] = draw(st.sampled_from([0, 3, 366]))
        if draw(st.booleans()):
            credits["long_outage"] = {"over": draw(st.sampled_from(["0h", "1s", "366d"])),
                                      "per_started_day": draw(st.booleans())}
        doc["credits"] = credits
    pf = msgspec.convert(doc, PolicyFile)
    check_policy(pf)  # the strategy draws accepted policies only
    return msgspec.to_builtins(pf)


def _import_accepted(led: Ledger, lines: list[bytes]) -> list[bytes]:
    """Import the lines; one refused by a rule of the store (not of input) is left out."""
    for raw in lines:
        decode_fact(raw)  # the strategy draws only facts the input rules accept
    lines = list(lines)
    while lines:
        try:
            import_lines(led, lines)
            return lines
        except BadInput as exc:
            message = str(exc)
        refused = re.match(r"line (\d+): ", message)
        assert refused, message
        del lines[int(refused.group(1)) - 1]
    return lines


def _exercise(led: Ledger, url: str, lines: list[bytes], months: list[str]) -> None:
    half = len(lines) // 2
    _import_accepted(led, lines[:half])
    run(led, url, once=True)
    _import_accepted(led, lines[half:])
    run(led, url, once=True)
    head = led.recorder.last_position()
    for cid in sorted(led.contracts()):
        for month in months:
            led.report(cid, month)
            with suppress(NotFound):  # not registered yet at that position
                led.audit(cid, month, position=max(1, head // 2))
            with suppress(NotFound):  # nothing recorded by then
                led.audit(cid, month, as_of=datetime(2026, 11, 1, 12, 0, 2, tzinfo=UTC))
    rebuild(led)
    assert verify(led.recorder).ok


SQLITE_FOLDS = settings(max_examples=15, deadline=None,
                        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
POSTGRES_FOLDS = settings(SQLITE_FOLDS, max_examples=6)


@SQLITE_FOLDS
@given(scenario=scenarios())
def test_accepted_input_is_always_evaluable_sqlite(tmp_path: Path,
                                                   scenario: tuple[list[bytes], list[str]]) -> None:
    lines, months = scenario
    path = tmp_path / f"fold-{len(list(tmp_path.iterdir()))}.db"
    led = open_ledger(f"sqlite:///{path}", clock=StepClock())
    try:
        _exercise(led, f"sqlite:///{path}", lines, months)
    finally:
        led.close()


@pytest.mark.postgres
@POSTGRES_FOLDS
@given(scenario=scenarios())
def test_accepted_input_is_always_evaluable_postgres(pg_admin_url: str,
                                                     scenario: tuple[list[bytes], list[str]]) -> None:
    lines, months = scenario
    with scratch_database(pg_admin_url) as url:
        led = open_ledger(url, clock=StepClock())
        try:
            _exercise(led, url, lines, months)
        finally:
            led.close()


def test_the_edges_of_time_are_evaluable(ledger: Ledger) -> None:
    # The two ends of the accepted range, in zones 14 h ahead and 12 h behind UTC.
    extremes = (b'[maintenance]\nmin_notice = "366 business days"\noutside_business_hours = true\n'
                b'[calendar]\nholidays = "CA-ON"\n[credits]\ntiers = [{ below = "100", percent = "100" }]\n'
                b'claim_deadline_days = 366\nlong_outage = { over = "366d" }\n')
    for cid, zone in (("east", "Pacific/Kiritimati"), ("west", "Etc/GMT+12")):
        text = POLICY.replace(b'"c1"', f'"{cid}"'.encode()).replace(b'"Europe/Paris"', f'"{zone}"'.encode())
        ledger.register_contract(load_policy(text + extremes))
    import_lines(ledger, [
        line("probe_failed", service="web", probe="p", at=_ts(EARLIEST)),
        line("probe_recovered", service="web", probe="p", at=_ts(LATEST)),
        line("maintenance_announced", service="web", maintenance="m", announced_at=_ts(LATEST),
             starts_at=_ts(EARLIEST), ends_at=_ts(LATEST)),
        line("credit_claim_filed", contract="east", month="3000-01", at=_ts(LATEST)),
        line("credit_claim_filed", contract="west", month="1969-12", at=_ts(EARLIEST)),
    ])
    for cid in ("east", "west"):
        # 1969-12 and 3000-01: where the first and last instants fall 12 h behind and 14 h ahead
        for month in ("1969-12", "1970-01", "2999-12", "3000-01"):
            ledger.report(cid, month)
            ledger.audit(cid, month, as_of=LATEST)
    # (No projection here: it would evaluate each of the 12,360 months the facts span.)


def test_a_byte_that_is_not_utf8_is_named_where_it_is_in_the_line(ledger: Ledger) -> None:
    # msgspec counts from the start of the string holding the byte: the message said "at byte 1"
    # for the 36th byte of the line, on every path.
    good = line("probe_failed", service="web", probe="p", at=AT)
    bad = good.replace(b'"web"', b'"w\xffb"')
    assert bad.index(b"\xff") == 35
    import_refused(ledger, good + b"\n" + bad + b"\n",
                   re.escape("line 2: not valid UTF-8: invalid start byte at byte 36 of the line"))
    cut = bad.replace(b"w\xffb", b"web\xe2\x82")  # a truncated sequence, ending the string
    where = cut.index(b"\xe2") + 1
    with pytest.raises(BadInput, match=re.escape(
            f"not valid UTF-8: invalid continuation byte at byte {where} of the line")):
        decode_fact(cut)
