"""Hostile input: every NDJSON line and policy file ends in a clean append or one line of error.

Never a traceback, never a partial write: on error the store is exactly as it was.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tomllib
import tracemalloc
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import cli
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.errors import BadInput
from ledger.events import export_line, strip_envelope
from ledger.ingest.lines import CHUNK, MAX_LINE, LineSplitter
from ledger.policy import PolicyFile
from ledger.policy_check import load_policy
from ledger.verify import verify
from tests.conftest import StepClock
from tests.integration.test_store_contract import GOOD, snapshot
from tests.lines import import_lines

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "ledger" / "examples"
# LEDGER_FUZZ_SCALE=20 multiplies the examples for a long run; the default keeps the suite quick.
SCALE = int(os.environ.get("LEDGER_FUZZ_SCALE", "1"))
FUZZ = settings(max_examples=200 * SCALE, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FEW = settings(max_examples=50 * SCALE, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SQL = "'; DROP TABLE stored_events; --"

# --- strategies -------------------------------------------------------------------

# Key names without line breaks: an unknown key is echoed raw in the error message, which then
# spans two lines (a known defect, pinned by test_line_break_in_an_unknown_key_* below). Values
# keep every character: messages quote them.
BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
keys = st.text(st.characters(exclude_characters=BREAKS), max_size=10)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=10**40)
    | st.floats(allow_nan=False) | st.text(max_size=30)
    | st.sampled_from(["2026-10-04T09:15:00Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00",
                       "2026-10-04T09:15:00", "2028-02-29T12:00:00Z", "2027-02-29T12:00:00Z", SQL, "\x00",
                       "x" * 600, "outage", "third_party", "2026-13"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
GOOD_OBJECTS = [json.loads(line) for line in GOOD]
FIELDS = sorted({k for obj in GOOD_OBJECTS for k in obj} | {"recorded_at", "position", "detail", "colour"})


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A valid event with a few fields replaced, removed or added."""
    obj = dict(draw(st.sampled_from(GOOD_OBJECTS)))
    action = "set"
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(FIELDS) | keys)
        action = draw(st.sampled_from(["set", "drop", "dup"]))
        if action == "drop":
            obj.pop(key, None)
        else:
            obj[key] = draw(json_values)
    # ensure_ascii escapes lone surrogates as \udXXX; off, they cannot be encoded at all.
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()))
    if action == "dup" and len(obj) > 1:
        # Duplicate keys: JSON allows them syntactically; append a second copy of one.
        k = draw(st.sampled_from(sorted(obj)))
        text = text[:-1] + f", {json.dumps(k)}: {json.dumps(draw(json_values))}}}"
    return text.encode("utf-8", "surrogatepass")


lines = st.one_of(
    mutated_events(),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
files = st.lists(st.one_of(lines, st.sampled_from(GOOD)), min_size=1, max_size=5)


def one_line_error(result: Result) -> str:
    """The CLI failed the way it should: non-zero, one line on stderr starting `error: `, no traceback."""
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    err = result.stderr.splitlines()
    assert len(err) == 1, result.stderr
    assert err[0].startswith("error: "), err[0]
    assert "Traceback" not in result.output
    return err[0]


def import_checked(led: Ledger, data: list[bytes]) -> bool:
    """Import; True if appended, False if refused cleanly with the store untouched."""
    before = snapshot(led)
    try:
        import_lines(led, data)
    except BadInput as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1, message
        assert message.startswith("line "), message
        assert snapshot(led) == before
        return False
    return True


# --- NDJSON ------------------------------------------------------------------------


class TestNdjsonFuzz:
    @pytest.fixture
    def led(self, tmp_path: Path, clock: StepClock) -> Iterator[Ledger]:
        led = open_ledger(f"sqlite:///{tmp_path / 'fuzz.db'}", clock=clock)
        yield led
        assert verify(led.recorder).ok
        led.close()

    @FUZZ
    @given(data=files)
    def test_import_lines(self, led: Ledger, data: list[bytes]) -> None:
        # Lines are split as a file would be: an embedded newline makes two lines.
        split = [part for chunk in data for part in chunk.split(b"\n")]
        import_checked(led, split)

    @FEW
    @given(data=files)
    def test_cli_import_stdin(self, led: Ledger, runner: CliRunner, tmp_path: Path,
                              data: list[bytes]) -> None:
        url = f"sqlite:///{tmp_path / 'fuzz.db'}"
        before = snapshot(led)
        result = runner.invoke(cli, ["--store", url, "import", "-"], input=b"\n".join(data))
        if result.exit_code == 0:
            assert result.stderr.startswith("imported "), result.stderr
        else:
            assert one_line_error(result).startswith("error: line "), result.stderr
            assert snapshot(led) == before


@pytest.mark.postgres
@FEW
@given(data=files)
def test_import_lines_postgres(pg_shared: Ledger, data: list[bytes]) -> None:
    import_checked(pg_shared, [part for chunk in data for part in chunk.split(b"\n")])


@pytest.fixture
def pg_shared(pg_url: str, clock: StepClock) -> Iterator[Ledger]:
    led = open_ledger(pg_url, clock=clock)
    yield led
    assert verify(led.recorder).ok
    led.close()


# --- policies ----------------------------------------------------------------------

BASE_POLICIES = [tomllib.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.toml"))]


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string, escapes and all (lone surrogates stay invalid)
    if isinstance(v, int | float):
        return repr(v) if v == v and abs(v) != float("inf") else "nan"
    if isinstance(v, datetime | date):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def toml_dump(doc: dict[str, Any]) -> str:
    out = []
    for key, value in doc.items():
        if isinstance(value, dict):
            out.append(f"[{json.dumps(key)}]")
            out += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()]
        else:
            out.insert(0, f"{json.dumps(key)} = {toml_value(value)}")
    return "\n".join(out) + "\n"


toml_values = st.recursive(
    st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.floats()
    | st.text(max_size=20) | st.dates()
    | st.sampled_from(["24h", "0h", "99999999999999999999999d", "5 business days", "0 business days",
                       "24:00-24:00", "02:15-02:45", "00:00-24:00", "99.97", "100.000000000001", "0",
                       "America/Toronto", "Europe/Paris", "Etc/GMT+12", "Pacific/Kiritimati",
                       "../../etc/passwd",
                       "", "2028-02", "0001-01", "9999-12", "ZZ", "CA-QC", SQL, "x" * 600]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)
SECTIONS = {s: sorted({k for p in BASE_POLICIES for k in p.get(s, {})}) for s in
            ("contract", "availability", "maintenance", "calendar", "credits")}


@st.composite
def mutated_policies(draw: st.DrawFn) -> bytes:
    doc = {k: dict(v) if isinstance(v, dict) else v for k, v in draw(st.sampled_from(BASE_POLICIES)).items()}
    for _ in range(draw(st.integers(1, 4))):
        section = draw(st.sampled_from(sorted(SECTIONS)))
        table = doc.setdefault(section, {})
        key = draw(st.sampled_from(SECTIONS[section] or ["x"]) | keys)
        if draw(st.booleans()) and key in table:
            del table[key]
        else:
            table[key] = draw(toml_values)
    if draw(st.integers(0, 9)) == 0:
        doc.pop(draw(st.sampled_from(sorted(doc))))
    return toml_dump(doc).encode("utf-8", "surrogatepass")


policies = st.one_of(mutated_policies(), st.binary(max_size=300),
                     st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))


def load_checked(data: bytes) -> PolicyFile | None:
    try:
        return load_policy(data, source="fuzz.toml")
    except BadInput as exc:
        message = str(exc)
        assert len(message.splitlines()) == 1, message
        assert message.startswith("fuzz.toml: "), message
        return None


class TestPolicyFuzz:
    @FUZZ
    @given(data=policies)
    def test_load_policy(self, data: bytes) -> None:
        load_checked(data)

    @FEW
    @given(data=mutated_policies())
    def test_cli_contract_register(self, runner: CliRunner, tmp_path: Path, clock: StepClock,
                                   data: bytes) -> None:
        url = f"sqlite:///{tmp_path / 'policies.db'}"
        led = open_ledger(url, clock=clock)
        try:
            before = snapshot(led)
            path = tmp_path / "fuzz.toml"
            path.write_bytes(data)
            result = runner.invoke(cli, ["--store", url, "contract", "register", str(path)])
            if result.exit_code == 0:
                assert result.stdout.startswith("contract "), result.stdout
            else:
                one_line_error(result)
                assert snapshot(led) == before
        finally:
            led.close()


# --- explicit cases, on both stores ---------------------------------------------------

EVENT = '{"type":"probe_failed","service":"%s","probe":"%s","at":"%s"%s}'


def event(service: str = "web", probe: str = "p", at: str = "2026-10-04T09:15:00Z", extra: str = "") -> bytes:
    return (EVENT % (service, probe, at, extra)).encode("utf-8", "surrogatepass")


REFUSED = [
    pytest.param(b'{"type":"probe_failed","service":"w\xff\xfe","probe":"p","at":"2026-10-04T09:15:00Z"}',
                 "UTF-8", id="invalid-utf8"),
    pytest.param(b'{"type":"probe_failed","service":"caf\xe9","probe":"p","at":"2026-10-04T09:15:00Z"}',
                 "UTF-8", id="latin1-byte"),
    pytest.param(b'{"type":"probe_failed","service":"\xed\xa0\x80","probe":"p","at":"2026-10-04T09:15:00Z"}',
                 "UTF-8", id="utf8-encoded-surrogate"),
    pytest.param(b'{"type":"probe_failed","detail":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "detail",
                 id="nested-100k-in-field"),
    pytest.param(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "deeply", id="nested-100k-objects"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "object", id="nested-100k-arrays"),
    pytest.param(event(extra=',"id":"' + "i" * 10_000 + '"'), "id", id="id-10k"),
    pytest.param(event(service="s" * 10_000), "service", id="service-10k"),
    pytest.param(event(probe="a\x00b"), "JSON", id="raw-nul"),
    pytest.param(event(probe="a\\u0000b"), "probe", id="escaped-nul-in-name"),
    pytest.param(event(extra=',"detail":"\\ud800"'), "JSON", id="lone-surrogate"),
    pytest.param(event(extra=',"detail":"\\udfff\\ud800"'), "JSON", id="reversed-surrogates"),
    pytest.param(b'{"type":"probe_failed","service":42,"probe":"p","at":"2026-10-04T09:15:00Z"}', "service",
                 id="number-for-string"),
    pytest.param(b'{"type":"probe_failed","service":"w","probe":"p","at":1791105300}', "at",
                 id="epoch-for-timestamp"),
    pytest.param(event(at="2026-10-04T09:15:00"), "at", id="no-offset"),
    pytest.param(event(at="2026-10-04T09:15:00+24:00"), "at", id="offset-24h"),
    pytest.param(event(at="2027-02-29T12:00:00Z"), "at", id="not-a-leap-year"),
    pytest.param(event(at="0000-12-31T23:59:59Z"), "at", id="year-0"),
    pytest.param(event(at="10000-01-01T00:00:00Z"), "at", id="year-10000"),
    pytest.param(b'{"type":"probe_failed","type":"nonsense","service":"w","probe":"p",'
                 b'"at":"2026-10-04T09:15:00Z"}', "type", id="duplicate-type-key"),
    # Issue 14: instants outside 1970..2999, a NUL in free text, a severity beyond 64 bits, a key
    # given twice (these were accepted before).
    pytest.param(event(at="0001-01-01T00:00:00Z"), "at", id="year-1"),
    pytest.param(event(at="0001-01-01T00:00:00+14:00"), "at", id="year-1-plus-14h"),
    pytest.param(event(at="9999-12-31T23:59:59Z"), "at", id="year-9999"),
    pytest.param(event(at="9999-12-31T23:59:59-12:00"), "at", id="year-9999-minus-12h"),
    pytest.param(event(extra=',"detail":"a\\u0000b"'), "detail", id="escaped-nul-in-text"),
    pytest.param(b'{"type":"incident_opened","service":"w","incident":"i","at":"2026-10-04T09:15:00Z",'
                 b'"impact":"none","severity":' + b"9" * 400 + b"}", "severity", id="huge-integer"),
    pytest.param(b'{"type":"probe_failed","service":"first","service":"second","probe":"p",'
                 b'"at":"2026-10-04T09:15:00Z"}', "service", id="duplicate-key"),
    pytest.param(b"\xef\xbb\xbf" + event(), "byte order mark", id="byte-order-mark"),
    pytest.param(event().replace(b"}", b",}"), "JSON", id="trailing-comma"),
    pytest.param(b'{"type":"incident_opened","service":"w","incident":"i","at":"2026-10-04T09:15:00Z",'
                 b'"impact":"outage","severity":NaN}', "JSON", id="nan"),
]

ACCEPTED = [
    pytest.param(event(at="1970-01-01T00:00:00Z"), id="first-instant"),
    pytest.param(event(at="1970-01-01T14:00:00+14:00"), id="first-instant-plus-14h"),
    pytest.param(event(at="2999-12-31T23:59:59.999999Z"), id="last-instant"),
    pytest.param(event(at="2999-12-31T11:59:59.999999-12:00"), id="last-instant-minus-12h"),
    pytest.param(event(at="2026-10-04T23:00:00+14:00"), id="plus-14h"),
    pytest.param(event(at="2026-10-04T01:00:00-12:00"), id="minus-12h"),
    pytest.param(event(at="2028-02-29T12:00:00Z"), id="leap-day"),
    pytest.param(event(at="2026-10-04T09:15:00.123456Z"), id="microseconds"),
    pytest.param(event(extra=',"id":"' + "i" * 500 + '"'), id="id-500"),
    pytest.param(event(service=SQL, probe="\\\"); DELETE FROM ledger_chain; --",
                       extra=f',"detail":"{SQL}"'), id="sql-strings"),
    pytest.param(event(extra=',"detail":"a\\tb\\r\\nc"'), id="tab-and-line-breaks-in-text"),
    pytest.param(event(extra=',"detail":"\\ud83d\\ude00 \u00e9\u4e2d\u0627"'),
                 id="surrogate-pair-and-scripts"),
    pytest.param(b'{"type":"incident_opened","service":"w","incident":"i","at":"2026-10-04T09:15:00Z",'
                 b'"impact":"none","severity":' + b"9" * 18 + b"}", id="large-integer"),
    pytest.param(event() + b"\r", id="crlf"),
]


class TestExplicitCases:
    """Each case on SQLite; the same cases run on PostgreSQL in one database below (a database per
    case would cost more than the cases: the refusals happen before the store is touched)."""

    @pytest.fixture
    def store_url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'explicit.db'}"

    @pytest.fixture
    def led(self, store_url: str, clock: StepClock) -> Iterator[Ledger]:
        led = open_ledger(store_url, clock=clock)
        import_lines(led, GOOD[:3])
        yield led
        assert verify(led.recorder).ok
        led.close()

    @pytest.mark.parametrize(("line", "names"), REFUSED)
    def test_refused(self, led: Ledger, store_url: str, runner: CliRunner, line: bytes, names: str) -> None:
        before = snapshot(led)
        with pytest.raises(BadInput) as err:
            import_lines(led, [GOOD[3], line])  # after a good line: nothing of the file may stay
        message = str(err.value)
        assert message.startswith("line 2: "), message
        assert names in message, message
        assert "\n" not in message
        assert snapshot(led) == before
        result = runner.invoke(cli, ["--store", store_url, "import", "-"], input=GOOD[3] + b"\n" + line)
        assert one_line_error(result).startswith("error: line 2: ")
        assert snapshot(led) == before

    @pytest.mark.parametrize("line", ACCEPTED)
    def test_accepted_verbatim(self, led: Ledger, store_url: str, runner: CliRunner, tmp_path: Path,
                               line: bytes, clock: StepClock) -> None:
        result = import_lines(led, [line])
        assert result.appended == 1
        rec = list(led.records())[-1]
        assert rec.fact == strip_envelope(msgspec.json.decode(line.rstrip(), type=type(rec.fact)))
        exported = export_line(rec)
        # What goes in comes out: same content, and it imports elsewhere unchanged.
        other = open_ledger(f"sqlite:///{tmp_path / 'copy.db'}", clock=clock)
        try:
            import_lines(other, [exported])
            assert export_line(list(other.records())[-1]).replace(b'"position":1', b'"position":%d'
                                                                   % rec.position) == exported
        finally:
            other.close()
        out = runner.invoke(cli, ["--store", store_url, "events"])
        assert out.exit_code == 0, out.output
        assert out.stdout_bytes.splitlines()[-1] == exported
        # Idempotent: the same line again changes nothing.
        assert import_lines(led, [line]).appended == 0

    def test_huge_position_is_ignored(self, led: Ledger) -> None:
        # `position` on input is reassigned, however large: a clean append, never an overflow.
        result = import_lines(led, [event(extra=',"position":' + "9" * 400)])
        assert result.first_position == 4

    def test_duplicate_keys_are_refused(self, led: Ledger) -> None:
        # JSON leaves duplicate keys to the reader; msgspec would keep the last: bad input (issue 14).
        with pytest.raises(BadInput, match=r"^line 1: field `service`: the key appears twice"):
            import_lines(led, [b'{"type":"probe_failed","service":"first","service":"second","probe":"p",'
                              b'"at":"2026-10-04T09:15:00Z"}'])

    def test_sql_strings_leave_the_tables_alone(self, led: Ledger) -> None:
        import_lines(led, [event(service=SQL, probe="x'); DELETE FROM ledger_chain; --")])
        assert [r.position for r in led.records()] == [1, 2, 3, 4]
        assert len(list(led.recorder.read_raw())) == 4


@pytest.mark.postgres
def test_explicit_cases_on_postgres(pg_url: str, clock: StepClock) -> None:
    led = open_ledger(pg_url, clock=clock)
    try:
        import_lines(led, GOOD[:3])
        for case in REFUSED:
            line, names = case.values
            before = snapshot(led)
            with pytest.raises(BadInput, match=r"^line 2: ") as err:
                import_lines(led, [GOOD[3], line])  # type: ignore[list-item]
            assert names in str(err.value)  # type: ignore[operator]
            assert snapshot(led) == before, case.id
        for case in ACCEPTED:
            (line,) = case.values
            assert import_lines(led, [line]).appended == 1, case.id  # type: ignore[list-item]
            rec = list(led.records())[-1]
            assert rec.fact == strip_envelope(msgspec.json.decode(line.rstrip(), type=type(rec.fact)))  # type: ignore[arg-type]
        assert verify(led.recorder).ok
    finally:
        led.close()


# An unknown key is echoed in the message; its line breaks are escaped (ledger.errors.one_line).
@pytest.mark.parametrize("key", ["a\nb", "a\rb", "a\u2028b"])
def test_line_break_in_an_unknown_key_ndjson(runner: CliRunner, tmp_path: Path, key: str) -> None:
    line = event(extra=f",{json.dumps(key)}:1")
    result = runner.invoke(cli, ["--store", f"sqlite:///{tmp_path / 'k.db'}", "import", "-"], input=line)
    assert one_line_error(result).startswith("error: line 1: ")


@pytest.mark.parametrize("key", ["a\nb", "a\rb"])
def test_line_break_in_an_unknown_key_policy(key: str) -> None:
    doc = dict(BASE_POLICIES[0])
    doc["availability"] = {**doc["availability"], key: 1}
    with pytest.raises(BadInput) as err:
        load_policy(toml_dump(doc).encode(), source="p.toml")
    assert len(str(err.value).splitlines()) == 1, str(err.value)


# --- over-long lines, without the memory to match ------------------------------------------


class LazyLongLine(io.RawIOBase):
    """A stream holding one ``size``-byte line, generated as it is read (never whole in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.head = b'{"type":"probe_failed","service":"w","probe":"p","at":"2026-10-04T09:15:00Z","detail":"'

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        n = min(len(view), self.left)
        chunk = self.head[:n] if self.head else b""
        self.head = self.head[len(chunk):]
        view[: len(chunk)] = chunk
        view[len(chunk): n] = b"x" * (n - len(chunk))
        self.left -= n
        return n


def _split(stream: Any, limit: int = MAX_LINE, chunk: int = CHUNK) -> Iterator[bytes]:
    splitter = LineSplitter(limit)
    while data := stream.read(chunk):
        for _, line in splitter.feed(data):
            yield line
    for _, line in splitter.finish():
        yield line


def test_line_splitter_refuses_100mb_line_in_bounded_memory() -> None:
    stream = io.BufferedReader(LazyLongLine(100 * 1024 * 1024))
    tracemalloc.start()
    try:
        with pytest.raises(BadInput, match=f"^line 1: longer than {MAX_LINE} bytes$"):
            for _ in _split(stream):
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_LINE, peak


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64])
def test_line_splitter_keeps_ordinary_lines(chunk: int) -> None:
    data = b"a\n\nbb\r\n" + b"c" * 10 + b"\nlast"
    expected = [b"a\n", b"\n", b"bb\r\n", b"c" * 10 + b"\n", b"last"]
    assert list(_split(io.BytesIO(data), limit=11, chunk=chunk)) == expected
    # The limit counts the newline, as a line read whole would: 10 bytes end the file, 11 do not.
    assert list(_split(io.BytesIO(b"ok\n" + b"c" * 10), limit=10, chunk=chunk)) == [b"ok\n", b"c" * 10]
    with pytest.raises(BadInput, match=r"^line 2: longer than 10 bytes$"):
        list(_split(io.BytesIO(b"ok\n" + b"c" * 10 + b"\n"), limit=10, chunk=chunk))
    with pytest.raises(BadInput, match=r"^line 2: longer than 10 bytes$"):
        list(_split(io.BytesIO(b"ok\n" + b"c" * 11), limit=10, chunk=chunk))


def test_cli_refuses_100mb_line_without_blowing_memory(tmp_path: Path) -> None:
    path = tmp_path / "huge.ndjson"
    with path.open("wb") as f:
        f.write(GOOD[0] + b"\n")
        f.write(b'{"type":"probe_failed","service":"w","probe":"p","at":"2026-10-04T09:15:00Z","detail":"')
        block = b"x" * (1 << 20)
        for _ in range(100):
            f.write(block)
        f.write(b'"}\n')
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    # A child measures its own child, so the figure is this import's peak and nothing else's.
    probe = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
        "sys.stderr.buffer.write(p.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "cli.main", "--store", url,
                           "import", str(path)], cwd=REPO, capture_output=True, timeout=120, check=True)
    code, peak_kb = (int(x) for x in proc.stdout.split())
    assert code == 2
    err = proc.stderr.decode().splitlines()
    assert err == [f"error: line 2: longer than {MAX_LINE} bytes"]
    # ~230 MB reading the line whole (file iteration); the line splitter of ledger.ingest
    # keeps at most the limit plus a chunk. Either way, far from gigabytes.
    assert peak_kb < 512 * 1024, f"peak RSS {peak_kb} kB"
    led = open_ledger(url)
    try:
        assert led.recorder.last_position() == 0
    finally:
        led.close()


# --- calendar edge cases in policies -----------------------------------------------------

DST_POLICY = b"""
[contract]
id = "dst-gap"
customer = "Gap Inc"
service = "web"
timezone = "America/Toronto"
currency = "CAD"
monthly_fee = "100.00"

[availability]
target = "99.9"
probes = ["p"]

[maintenance]
min_notice = "1 business days"
outside_business_hours = true

[calendar]
timezone = "America/Toronto"
holidays = "CA"
business_hours = "02:15-02:45"
"""


def test_business_hours_inside_the_spring_forward_gap(store_url: str, runner: CliRunner,
                                                      tmp_path: Path) -> None:
    """Business hours that do not exist on the DST day (02:15-02:45, Toronto, 2027-03-14)."""
    policy = tmp_path / "dst.toml"
    policy.write_bytes(DST_POLICY)
    assert runner.invoke(cli, ["--store", store_url, "contract", "register", str(policy)]).exit_code == 0
    events = b"\n".join([
        b'{"type":"maintenance_announced","service":"web","maintenance":"m1",'
        b'"announced_at":"2027-03-01T00:00:00-05:00","starts_at":"2027-03-14T01:00:00-05:00",'
        b'"ends_at":"2027-03-14T04:00:00-04:00"}',
        b'{"type":"probe_failed","service":"web","probe":"p","at":"2027-03-14T01:30:00-05:00"}',
        b'{"type":"probe_recovered","service":"web","probe":"p","at":"2027-03-14T03:30:00-04:00"}',
        b'{"type":"probe_failed","service":"web","probe":"p","at":"2027-03-15T02:20:00-04:00"}',
        b'{"type":"probe_recovered","service":"web","probe":"p","at":"2027-03-15T02:40:00-04:00"}',
    ])
    assert runner.invoke(cli, ["--store", store_url, "import", "-"], input=events).exit_code == 0
    result = runner.invoke(cli, ["--store", store_url, "report", "--contract", "dst-gap",
                                 "--month", "2027-03", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["total_seconds"] == 31 * 86400 - 3600  # the month lost an hour
    assert report["outage_seconds"] == 3600 + 1200


def test_leap_day_month(store_url: str, runner: CliRunner) -> None:
    policy = str(EXAMPLES / "sla-a.toml")
    assert runner.invoke(cli, ["--store", store_url, "contract", "register", policy]).exit_code == 0
    events = b"\n".join(
        b'{"type":"probe_failed","service":"workspace","probe":"%s","at":"2028-02-29T23:00:00Z"}' % p
        for p in (b"paris", b"frankfurt", b"london")
    )
    assert runner.invoke(cli, ["--store", store_url, "import", "-"], input=events).exit_code == 0
    result = runner.invoke(cli, ["--store", store_url, "report", "--contract", "sla-a-2026",
                                 "--month", "2028-02", "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["total_seconds"] == 29 * 86400
    assert report["outage_seconds"] == 0  # 23:00Z on the 29th is March 1st in Paris
