"""What one fact or one policy may hold, checked where it comes in (issue 14).

Instants lie in 1970-01-01T00:00:00Z..2999-12-31T23:59:59.999999Z; months are exactly
"YYYY-MM" in 1969-12..3000-01 (where those instants fall, UTC-12 to UTC+14); notices
and durations are at most 366 days; a policy that counts business days or hours says
whose; a policy is bounded; no JSON object repeats a key; 2 and "2" are one severity;
names refuse every C0/C1 control and DEL, free text all of them but tab, LF and CR.
"""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.admission import check_content, decode_fact, fact_from_fields
from ledger.calendar import (
    _MONTH_RE,
    INSTANT_RANGE,
    LATEST,
    check_instant,
    check_month,
    parse_month,
    split_month,
)
from ledger.errors import BadInput
from ledger.events import FACT_TYPES, ContractRegistered, IncidentOpened, ProbeFailed, canonical, derive_id
from ledger.ingest.lines import LineSplitter, _prepare_numbered, prepare_line
from ledger.ingest.strategy import prepared_batches
from ledger.policy import _DURATION_RE, PolicyFile, duration_groups, resolve
from ledger.policy_check import MAX_POLICY_BYTES, load_policy

AT = "2026-10-04T09:15:00Z"


def probe(extra: str = "", at: str = AT) -> str:
    return f'{{"type":"probe_failed","service":"web","probe":"p","at":"{at}"{extra}}}'


def refused(data: str | bytes, match: str) -> None:
    """Refused by every decoding path: in process, one line, and the bulk (child's) loop."""
    raw = data.encode() if isinstance(data, str) else data
    with pytest.raises(BadInput, match=match):
        decode_fact(data)
    with pytest.raises(BadInput, match=f"^line 3: {match.lstrip('^')}"):
        prepare_line(3, raw)
    good = probe().encode() + b"\n"
    with pytest.raises(BadInput, match=f"^line 3: {match.lstrip('^')}"):
        list(prepared_batches(io.BytesIO(good * 2 + raw + b"\n" + good)))


POLICY = """
[contract]
id = "c1"
customer = "Acme"
service = "web"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "100.00"
{contract}
[availability]
target = "99.9"
{availability}
{rest}
"""


def policy_toml(contract: str = "", availability: str = "", rest: str = "") -> bytes:
    return POLICY.format(contract=contract, availability=availability, rest=rest).encode()


# --- 1. months ------------------------------------------------------------------------

NOT_MONTHS = [
    "2026-+3", "２０２６-０３", "2026-０３", "2_26-03", "20_6-03", " 2026-03", "2026-03 ", "2026-03\n",
    "2026-03\r", "\n2026-03", "2026-3", "26-03", "02026-03", "2026-003", "2026-13", "2026-00", "+2026-03",
    "2026–03", "2026_03", "2026-03-01", "", "-", "2026-", "-03", "1969-11", "3000-02", "0001-01", "9999-12",
    "2026-1\u0663", "२०२६-०३",
]


# Well-formed but outside what input may name: the folds still compute them (an old store's facts).
OUT_OF_RANGE = {"1969-11", "3000-02"}


@pytest.mark.parametrize("text", NOT_MONTHS)
def test_a_month_is_exactly_yyyy_mm(text: str) -> None:
    if text not in OUT_OF_RANGE:
        with pytest.raises(ValueError, match="not a month"):
            parse_month(text)
    with pytest.raises(BadInput, match=r"^--month: expected a month YYYY-MM from 1969-12 to 3000-01, got "):
        check_month(text, "--month")


@pytest.mark.parametrize(("text", "parsed"), [("1969-12", (1969, 12)), ("1970-01", (1970, 1)),
                                              ("2026-03", (2026, 3)), ("3000-01", (3000, 1))])
def test_months_in_range_parse(text: str, parsed: tuple[int, int]) -> None:
    assert parse_month(text) == parsed


@given(st.text(alphabet=st.sampled_from("0123456789-+_ \n０３٣") | st.characters(), max_size=9))
@example("0002-01")
@example("2026-10")
@example("3000-02")
def test_parse_month_accepts_only_its_own_spelling(text: str) -> None:
    # Whatever int() would take, a month parses only if it is written back the same way.
    try:
        year, mon = parse_month(text)
    except ValueError:
        return
    assert f"{year:04d}-{mon:02d}" == text
    # parse_month reads what the folds can evaluate (years 2-9998); input is narrower (check_month).
    assert 2 <= year <= 9998
    inside = (1969, 12) <= (year, mon) <= (3000, 1)
    try:
        check_month(text, "month")
    except BadInput:
        assert not inside
    else:
        assert inside


@given(st.text(alphabet=st.sampled_from("0123456789dhms \t\n\u2003１٣x") | st.characters(), max_size=12))
@example(" 1 d 2h 30 m 4s ")
@example("1h1d")
@example("1 1d")
@example("１２h")
def test_a_recorded_duration_reads_as_its_pattern_does(text: str) -> None:
    # ``duration_groups`` reads by hand what the pattern matched (compiling it cost each report).
    m = re.fullmatch(_DURATION_RE, text)
    assert duration_groups(text) == (m.groups() if m else None)


@given(st.text(alphabet=st.sampled_from("0123456789-+_ \n０３٣²") | st.characters(), max_size=9))
@example("2026-10")
@example("2026-1０")
@example("²026-10")
@example("2026-10\n")
def test_a_month_splits_as_its_pattern_reads(text: str) -> None:
    # ``split_month`` reads by hand what the pattern matched (compiling it cost every command).
    m = re.fullmatch(_MONTH_RE, text)
    try:
        got: tuple[int, int] | None = split_month(text)
    except ValueError:
        got = None
    assert got == ((int(m.group(1)), int(m.group(2))) if m else None)


@pytest.mark.parametrize("text", ["2026-+3", "２０２６-０３", "2026-03\n", "1969-11", "3000-02"])
def test_a_claim_month_must_be_a_month(text: str) -> None:
    line = json.dumps({"type": "credit_claim_filed", "contract": "c", "month": text, "at": AT})
    refused(line, r"^field `month`: ")  # msgspec's pattern or the month parser


@pytest.mark.parametrize("text", ["2026-+3", "２０２６-０３", "2026-03\n", "1969-11", "3000-02"])
def test_effective_from_must_be_a_month(text: str) -> None:
    toml = policy_toml(contract=f"effective_from = {json.dumps(text)}")
    with pytest.raises(BadInput, match=r"^p.toml: field `contract.effective_from`: "):
        load_policy(toml, "p.toml")


# --- 2. instants and durations -----------------------------------------------------------

EDGES_IN = ["1970-01-01T00:00:00Z", "1970-01-01T01:00:00+01:00", "1969-12-31T23:00:00-01:00",
            "2999-12-31T23:59:59.999999Z", "3000-01-01T00:59:59+01:00", "2999-12-31T22:00:00-01:59"]
EDGES_OUT = ["1969-12-31T23:59:59.999999Z", "1970-01-01T00:30:00+01:00", "0001-01-01T00:00:00Z",
             "0001-01-01T00:00:00+14:00", "3000-01-01T00:00:00Z", "2999-12-31T23:00:00-01:00",
             "9999-12-31T23:59:59Z", "9999-12-31T23:59:59-12:00"]


@pytest.mark.parametrize("at", EDGES_IN)
def test_instants_at_the_edges_are_accepted(at: str) -> None:
    assert decode_fact(probe(at=at)).at == datetime.fromisoformat(at)  # type: ignore[union-attr]


BASE = {
    "probe_failed": {"service": "w", "probe": "p", "at": AT},
    "probe_recovered": {"service": "w", "probe": "p", "at": AT},
    "incident_opened": {"service": "w", "incident": "i", "at": AT, "impact": "outage"},
    "incident_resolved": {"incident": "i", "at": AT},
    "maintenance_announced": {"service": "w", "maintenance": "m", "announced_at": AT,
                              "starts_at": AT, "ends_at": "2026-10-05T00:00:00Z"},
    "maintenance_cancelled": {"maintenance": "m", "at": AT},
    "maintenance_completed": {"maintenance": "m", "at": AT},
    "force_majeure_declared": {"service": "w", "declaration": "d", "reason": "r",
                               "starts_at": AT, "ends_at": "2026-10-05T00:00:00Z"},
    "exclusion_declared": {"service": "w", "exclusion": "x", "category": "third_party", "reason": "r",
                           "starts_at": AT, "ends_at": "2026-10-05T00:00:00Z"},
    "exclusion_revoked": {"ref": "x", "reason": "r"},
    "credit_claim_filed": {"contract": "c", "month": "2026-10", "at": AT},
}
INSTANTS = ("announced_at", "starts_at", "ends_at", "at", "recorded_at")  # the order they are checked in


def _out_of_range_lines() -> list[tuple[str, str]]:
    """Per fact type and instant field, lines with that field out of range: (line, field named)."""
    out = []
    for kind, fields in BASE.items():
        for name in [f for f in INSTANTS if f in fields] + ["recorded_at"]:
            for bad in ("0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59.999999Z",
                        "3000-01-01T00:00:00Z", "9999-12-31T23:59:58-12:00"):
                obj = {"type": kind, **fields, name: bad}
                if name == "starts_at" and bad > "2":
                    obj["ends_at"] = "9999-12-31T23:59:59-12:00"  # a window must end after it starts
                if name == "ends_at" and bad < "2":
                    continue  # its start would be out of range too, and named first
                named = next(f for f in INSTANTS if f in obj and not 1970 < int(str(obj[f])[:4]) < 2999)
                out.append((json.dumps(obj), named))
    return out


@pytest.mark.parametrize(("line", "field"), _out_of_range_lines())
def test_every_instant_field_is_bounded(line: str, field: str) -> None:
    refused(line, rf"^field `{field}`: must lie between {re.escape(INSTANT_RANGE)}$")


@pytest.mark.parametrize("at", EDGES_OUT)
def test_instants_outside_the_range_are_refused_even_on_an_ignored_probe(at: str) -> None:
    refused(probe(at=at), r"^field `at`: must lie between")
    refused(probe(extra=f',"recorded_at":"{at}"'), r"^field `recorded_at`: must lie between")


def test_check_instant_names_what() -> None:
    with pytest.raises(BadInput, match=r"^--as-of: must lie between"):
        check_instant(datetime(1, 1, 1, tzinfo=UTC), "--as-of")
    assert check_instant(LATEST, "x") is LATEST
    assert check_instant(datetime(1970, 1, 1, 5, tzinfo=timezone(timedelta(hours=5))), "x")


@pytest.mark.parametrize(("notice", "ok"), [
    ("366 business days", True), ("367 business days", False), ("99999999 business days", False),
    ("366d", True), ("367d", False), ("8784h", True), ("8785h", False), ("527040m", True),
    ("527041m", False), ("365d24h", True), ("365d24h1s", False), ("99999999999999999999999d", False),
    ("０h", False), ("２４h", False), ("24h\n", True), ("0h", True), ("0 business days", True),
])
def test_notice_is_at_most_a_year(notice: str, ok: bool) -> None:
    toml = policy_toml(rest=f'[maintenance]\nmin_notice = {json.dumps(notice)}\n[calendar]\n')
    if ok:
        resolve(load_policy(toml))
    else:
        with pytest.raises(BadInput, match=r"^policy: field `maintenance.min_notice`: "):
            load_policy(toml)


@pytest.mark.parametrize(("over", "ok"), [("366d", True), ("367d", False), ("8785h", False),
                                          ("99999999999999999999999d", False), ("0h", True)])
def test_long_outage_threshold_is_at_most_a_year(over: str, ok: bool) -> None:
    toml = policy_toml(rest=f'[credits]\ntiers = [{{ below = "99", percent = "10" }}]\n'
                            f'long_outage = {{ over = {json.dumps(over)} }}\n')
    if ok:
        load_policy(toml)
    else:
        with pytest.raises(BadInput, match=r"^policy: field `credits.long_outage.over`: "):
            load_policy(toml)


# --- 3. business days and hours need a calendar ---------------------------------------------


@pytest.mark.parametrize(("maintenance", "field"), [
    ('min_notice = "5 business days"', "maintenance.min_notice"),
    ('min_notice = "1 business day"', "maintenance.min_notice"),
    ('min_notice = "24h"\noutside_business_hours = true', "maintenance.outside_business_hours"),
])
def test_business_rules_without_a_calendar_are_refused(maintenance: str, field: str) -> None:
    toml = policy_toml(rest=f"[maintenance]\n{maintenance}\n")
    with pytest.raises(BadInput, match=rf"^policy: field `{field}`: .*needs a \[calendar\] section"):
        load_policy(toml)
    load_policy(toml + b'[calendar]\nholidays = "FR"\n')
    load_policy(toml + b"[calendar]\n")  # an explicit section: its defaults are chosen, not assumed


def test_a_recorded_policy_without_a_calendar_still_resolves() -> None:
    # What an older ledger may hold: resolve() reads it as before (projections use resolve).
    pf = msgspec.json.decode(json.dumps({
        "contract": {"id": "c", "customer": "x", "service": "w", "timezone": "UTC", "currency": "EUR",
                     "monthly_fee": "1"},
        "availability": {"target": "99"},
        "maintenance": {"min_notice": "5 business days", "outside_business_hours": True},
    }), type=PolicyFile)
    policy = resolve(pf)
    assert policy.maintenance is not None
    assert policy.maintenance.min_notice.business_days == 5
    with pytest.raises(BadInput, match=r"^policy: field `maintenance.min_notice`"):
        check_content(ContractRegistered(policy=pf))


# --- 4. bounded policies ---------------------------------------------------------------------


def test_policy_counts_and_size_are_bounded() -> None:
    probes = ", ".join(f'"p{i}"' for i in range(101))
    with pytest.raises(BadInput, match=r"field `availability.probes`: at most 100 probes, got 101"):
        load_policy(policy_toml(availability=f"probes = [{probes}]"))
    tiers = ", ".join(f'{{ below = "{i}", percent = "1" }}' for i in range(101))
    with pytest.raises(BadInput, match=r"field `credits.tiers`: at most 100 tiers, got 101"):
        load_policy(policy_toml(rest=f"[credits]\ntiers = [{tiers}]\n"))
    with pytest.raises(BadInput, match=r"field `availability.excludable`: a category is listed twice"):
        load_policy(policy_toml(availability='excludable = ["third_party", "third_party"]'))
    big = ", ".join(f'"{i:03d}{"p" * 508}"' for i in range(100))  # 100 names of 511 chars: 51 KB
    load_policy(policy_toml(availability=f"probes = [{big}]"))
    wide = "\u4e2d" * 508  # three bytes a character
    bigger = ", ".join(f'"{i:03d}{wide}"' for i in range(100))
    too_big = rf"^policy: the policy is \d+ bytes as JSON, at most {MAX_POLICY_BYTES}$"
    with pytest.raises(BadInput, match=too_big):
        load_policy(policy_toml(availability=f"probes = [{bigger}]"))


@pytest.mark.parametrize(("old", "new", "field"), [
    (b'monthly_fee = "100.00"', b'monthly_fee = "100.00\\n"', "contract.monthly_fee"),
    (b'currency = "EUR"', b'currency = "EUR\\n"', "contract.currency"),
    (b'target = "99.9"', b'target = "99.9\\n"', "availability.target"),
    (b'id = "c1"', b'id = "c1\\n"', "contract.id"),
    (b'service = "web"', b'service = "web\\u0085"', "contract.service"),
])
def test_policy_fields_match_whole(old: bytes, new: bytes, field: str) -> None:
    # A msgspec pattern's `$` would let a trailing line feed through: these are matched whole.
    with pytest.raises(BadInput, match=rf"^policy: field `{field}`: "):
        load_policy(policy_toml().replace(old, new))


def test_business_hours_match_whole() -> None:
    with pytest.raises(BadInput, match=r"^policy: field `calendar.business_hours`: "):
        load_policy(policy_toml(rest='[calendar]\nbusiness_hours = "09:00-17:00\\n"'))


@pytest.mark.parametrize(("rest", "field"), [
    ('[calendar]\nholidays = "CA\\n"', "calendar.holidays"),
    ('[calendar]\nholidays = "ca"', "calendar.holidays"),
    ('[calendar]\nbusiness_hours = "9:00-17:00"', "calendar.business_hours"),
    ('[credits]\ntiers = [{ below = "99.9\\n", percent = "10" }]', "credits.tiers[0].below"),
    ('[credits]\ntiers = [{ below = "99.9", percent = "1e1" }]', "credits.tiers[0].percent"),
    ('[credits]\ncap_percent = "50\\n"', "credits.cap_percent"),
])
def test_policy_sections_match_whole(rest: str, field: str) -> None:
    with pytest.raises(BadInput, match=rf"^policy: field `{re.escape(field)}`: "):
        load_policy(policy_toml(rest=rest))


@pytest.mark.parametrize(("fields", "field"), [
    ({"country": "CA\n"}, "country"),
    ({"country": "ca"}, "country"),
    ({"country": "CA-"}, "country"),
    ({"dates": ["2026-07-01\n"]}, "dates[0]"),
    ({"dates": ["20260701"]}, "dates[0]"),  # date.fromisoformat alone reads the basic form
    ({"dates": ["2026-07-01", "2026-7-01"]}, "dates[1]"),
])
def test_a_holiday_pin_matches_whole(fields: dict[str, object], field: str) -> None:
    line = json.dumps({"type": "holidays_pinned", "country": "CA", "year": 2026, "dates": ["2026-07-01"],
                       **fields})
    refused(line, rf"^field `{re.escape(field)}`: ")


# --- 5. duplicate keys -----------------------------------------------------------------------

P = '{"type":"probe_failed","service":"a","probe":"p","at":"' + AT + '"'
DUPLICATES = [
    ('{"type":"probe_failed","service":"a","service":"b","probe":"p","at":"' + AT + '"}', "service"),
    (P + ',"service" :"b"}', "service"),
    (P + ',"service"\t:"b"}', "service"),
    (P + ',"service"\r:"b"}', "service"),
    (P + ',"serv\\u0069ce":"a"}', "service"),
    (P.replace(",", ", ").replace('":', '": ') + f', "at": "{AT}"}}', "at"),
    (probe(',"id":"x","id":"y"'), "id"),
    (probe(',"id":"x","id":"x"'), "id"),  # the same value twice is still two keys
    (probe(f',"recorded_at":"{AT}","recorded_at":"{AT}"'), "recorded_at"),
    (probe(',"position":1,"position":2'), "position"),
    (probe(',"detail":null,"detail":"x"'), "detail"),
    (probe(',"detail":"x","detail":null'), "detail"),
    (probe(',"detail":"a\\"b","detail":"c"'), "detail"),
    (f'{{"type":"incident_opened","service":"w","incident":"i","at":"{AT}","impact":"outage",'
     '"severity":"2","severity":2}', "severity"),
]


def test_a_repeated_key_in_a_policy_file_is_refused() -> None:
    # TOML itself forbids it (tomllib refuses the file): one line naming the file.
    with pytest.raises(BadInput, match=r"^p.toml: not valid TOML: "):
        load_policy(policy_toml().replace(b'target = "99.9"', b'target = "99.9"\ntarget = "1"'), "p.toml")


@pytest.mark.parametrize(("line", "key"), DUPLICATES)
def test_a_repeated_key_is_refused_on_every_path(line: str, key: str) -> None:
    refused(line, rf"^field `{key}`: the key appears twice in one object$")


def test_a_repeated_key_in_a_policy_is_refused() -> None:
    pf = msgspec.to_builtins(load_policy(policy_toml()))
    line = json.dumps({"type": "contract_registered", "policy": pf})
    decode_fact(line)
    dup = line.replace('"customer": "Acme"', '"customer": "Acme", "customer": "Evil"')
    refused(dup, r"^field `policy.contract.customer`: the key appears twice in one object$")
    nested = line.replace('"target": "99.9"', '"target": "99.9", "target": "1"')
    refused(nested, r"^field `policy.availability.target`: the key appears twice in one object$")


@pytest.mark.parametrize("line", [
    probe(',"detail":null'), probe(',"position":null,"recorded_at":null,"id":null'),
    '{ "type" : "probe_failed" , "service"\t:\t"w" ,\r"probe"\r: "p" , "at" : "' + AT + '" }',
    probe(',"detail":":x\\" :y"'), probe(',"detail":"\\" :"'),
    f'{{"type":"incident_opened","service":"w","incident":"i","at":"{AT}","impact":"outage","severity":"2"}}',
])
def test_lines_without_a_repeated_key_are_accepted(line: str) -> None:
    fact = decode_fact(line)
    assert prepare_line(1, line.encode()) is not None
    assert len(next(prepared_batches(io.BytesIO(line.encode() + b"\n" + probe().encode())))) == 2
    assert fact == msgspec.json.decode(export_line_of(fact), type=type(fact))


def export_line_of(fact: object) -> bytes:
    return msgspec.json.encode(fact)


SEPARATORS = st.sampled_from([",", ", ", " ,", "\t,\r", " , "])
COLONS = st.sampled_from([":", ": ", " :", "\t:\t", "\r: "])


@st.composite
def json_lines(draw: st.DrawFn) -> tuple[bytes, bool]:
    """A valid probe or incident line, keys in any order, any spacing; maybe one key repeated."""
    obj: dict[str, object] = {"type": "incident_opened", "service": draw(st.sampled_from(["w", ":w", '"'])),
                              "incident": "i", "at": AT, "impact": "outage"}
    for key, value in [("title", draw(st.sampled_from(["t", ":", ' "x" : ', "\\"]))),
                       ("severity", draw(st.sampled_from([1, "1", "S1"]))), ("id", "x"),
                       ("recorded_at", AT), ("position", 3)]:
        if draw(st.booleans()):
            obj[key] = draw(st.sampled_from([value, None]))
    items = list(obj.items())
    repeated = draw(st.booleans())
    if repeated:
        key = draw(st.sampled_from([k for k, _ in items]))
        items.insert(draw(st.integers(0, len(items))), (key, obj[key]))
    items = draw(st.permutations(items))
    sep, colon = draw(SEPARATORS), draw(COLONS)
    ascii_only = draw(st.booleans())
    body = sep.join(json.dumps(k, ensure_ascii=ascii_only) + colon + json.dumps(v, ensure_ascii=ascii_only)
                    for k, v in items)
    return ("{" + body + "}").encode(), repeated


@settings(max_examples=300)
@given(st.lists(json_lines(), min_size=1, max_size=6))
def test_repeated_keys_are_found_whatever_the_spelling(lines: list[tuple[bytes, bool]]) -> None:
    first = next((i for i, (_, rep) in enumerate(lines, 1) if rep), None)
    for line, rep in lines:
        if rep:
            with pytest.raises(BadInput, match="the key appears twice"):
                decode_fact(line)
        else:
            decode_fact(line)
    data = b"\n".join(line for line, _ in lines) + b"\n"
    splitter = LineSplitter()
    out: list[object] = []
    if first is None:
        _prepare_numbered(splitter.feed(data), 1 << 20, out, splitter)  # type: ignore[arg-type]
        assert len(out) == len(lines)
    else:
        with pytest.raises(BadInput, match=rf"^line {first}: field `[a-z_]+`: the key appears twice"):
            _prepare_numbered(splitter.feed(data), 1 << 20, out, splitter)  # type: ignore[arg-type]


# --- 6. one severity --------------------------------------------------------------------------


def incident(severity: str) -> str:
    return (f'{{"type":"incident_opened","service":"w","incident":"i","at":"{AT}","impact":"outage",'
            f'"severity":{severity}}}')


@pytest.mark.parametrize(("text", "number"), [("2", 2), ("0", 0), ("-7", -7),
                                              ("9223372036854775807", 2**63 - 1),
                                              ("-9223372036854775808", -(2**63))])
def test_a_severity_spelt_as_an_integer_is_that_integer(text: str, number: int) -> None:
    as_text, as_number = decode_fact(incident(json.dumps(text))), decode_fact(incident(str(number)))
    assert as_text == as_number
    assert isinstance(as_text, IncidentOpened)
    assert type(as_text.severity) is int
    assert canonical(as_text) == canonical(as_number)
    assert derive_id(as_text) == derive_id(as_number)
    assert fact_from_fields("incident_opened", {"service": "w", "incident": "i", "at": AT,
                                                "impact": "outage", "severity": text}) == as_number


@pytest.mark.parametrize("text", ["02", "-0", "+2", " 2", "2 ", "2.0", "２", "1e3", "0x10", "1_000",
                                  "9223372036854775808", "-9223372036854775809", "SEV2", ""])
def test_other_severities_stay_text(text: str) -> None:
    fact = decode_fact(incident(json.dumps(text)))
    assert isinstance(fact, IncidentOpened)
    assert fact.severity == text


def test_an_integer_severity_is_a_64_bit_integer() -> None:
    decode_fact(incident(str(2**63 - 1)))
    for number in (2**63, -(2**63) - 1, int("9" * 400)):
        refused(incident(str(number)), r"^field `severity`: an integer severity must lie between")


def test_old_facts_keep_their_form() -> None:
    # A fact recorded before the rule holds "2" as text: reading it back leaves it so.
    old = IncidentOpened(service="w", incident="i", at=datetime(2026, 10, 4, tzinfo=UTC), impact="outage",
                         severity="2")
    assert msgspec.json.decode(canonical(old), type=IncidentOpened).severity == "2"
    assert getattr(check_content(old), "severity", None) == 2  # appended again, it is the new form


# --- 7. control characters ---------------------------------------------------------------------

TEXT_FIELDS = [
    ("probe_failed", "detail", {"service": "w", "probe": "p", "at": AT}),
    ("incident_opened", "title", {"service": "w", "incident": "i", "at": AT, "impact": "none"}),
    ("incident_opened", "severity", {"service": "w", "incident": "i", "at": AT, "impact": "none"}),
    ("maintenance_announced", "title", {"service": "w", "maintenance": "m", "announced_at": AT,
                                        "starts_at": AT, "ends_at": "2026-10-05T00:00:00Z"}),
    ("force_majeure_declared", "reason", {"service": "w", "declaration": "d", "starts_at": AT,
                                          "ends_at": "2026-10-05T00:00:00Z"}),
    ("exclusion_declared", "reason", {"service": "w", "exclusion": "x", "category": "third_party",
                                      "starts_at": AT, "ends_at": "2026-10-05T00:00:00Z"}),
    ("exclusion_revoked", "reason", {"ref": "x"}),
]
REFUSED_IN_TEXT = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9f"]
KEPT_IN_TEXT = ["\t", "\n", "\r", "\r\n", "\xa0", "\u2028", "é", "\U0001f600"]


@pytest.mark.parametrize(("kind", "field", "fields"), TEXT_FIELDS)
@pytest.mark.parametrize("char", REFUSED_IN_TEXT)
def test_free_text_refuses_control_characters(kind: str, field: str, fields: dict[str, str],
                                               char: str) -> None:
    for ascii_only in (True, False):  # escaped, and raw where JSON allows it (DEL, C1)
        line = json.dumps({"type": kind, **fields, field: f"a{char}b"}, ensure_ascii=ascii_only)
        refused(line, rf"^field `{field}`: must not contain control characters other than tab, "
                      r"line feed and carriage return$")


@pytest.mark.parametrize(("kind", "field", "fields"), TEXT_FIELDS)
def test_free_text_keeps_tab_line_feed_and_carriage_return(kind: str, field: str,
                                                            fields: dict[str, str]) -> None:
    value = "a" + "".join(KEPT_IN_TEXT) + "b"
    for ascii_only in (True, False):
        fact = decode_fact(json.dumps({"type": kind, **fields, field: value}, ensure_ascii=ascii_only))
        assert getattr(fact, field) == value


def test_policy_text_and_names_refuse_control_characters() -> None:
    for char in ("\\u0000", "\\u001b", "\\u007f", "\\u0085"):
        with pytest.raises(BadInput, match=r"^policy: field `contract.customer`: must not contain control"):
            load_policy(policy_toml().replace(b'"Acme"', f'"A{char}"'.encode()))
        with pytest.raises(BadInput, match=r"^policy: field `availability.probes\[1\]`: "):
            load_policy(policy_toml(availability=f'probes = ["a", "b{char}"]'))
    pf = load_policy(policy_toml().replace(b'"Acme"', b'"Acme\\tInc\\r\\nLine two"'))
    assert pf.contract.customer == "Acme\tInc\r\nLine two"


def test_facts_built_in_code_are_checked_too() -> None:
    fact = ProbeFailed(service="w\x85", probe="p", at=datetime(2026, 10, 4, tzinfo=UTC))
    with pytest.raises(BadInput, match=r"^field `service`: must not contain control characters$"):
        check_content(fact)
    with pytest.raises(BadInput, match=r"^field `at`"):
        check_content(ProbeFailed(service="w", probe="p", at=datetime(1969, 12, 31, tzinfo=UTC)))


def test_every_type_has_its_instants_checked() -> None:
    # A new Timestamp field is found from the annotations, like names and text.
    from ledger.admission import _CONTENT

    for cls in FACT_TYPES.values():  # each type's entry is made on first use (a fast start)
        assert len(_CONTENT[cls]) == 2
    assert set(_CONTENT) == set(FACT_TYPES.values())
    assert _CONTENT[FACT_TYPES["maintenance_announced"]][0] == ("announced_at", "starts_at", "ends_at")
    assert re.fullmatch(r"\(\)", repr(_CONTENT[FACT_TYPES["exclusion_revoked"]][0]))
