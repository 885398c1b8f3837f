"""Input hygiene at the command line (issue 14): one month parser, bounded instants, one line of error."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from tests.cli.test_cli import one_line_error, run

POLICY = """
[contract]
id = "c1"
customer = "Acme"
service = "web"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "100.00"

[availability]
target = "99.9"
"""
AT = "2026-10-04T09:15:00Z"


@pytest.fixture
def url(store_url: str, runner: CliRunner, tmp_path: Path) -> str:
    policy = tmp_path / "c1.toml"
    policy.write_text(POLICY)
    assert run(runner, store_url, "contract", "register", str(policy)).exit_code == 0
    line = f'{{"type":"probe_failed","service":"web","probe":"p","at":"{AT}"}}'
    assert run(runner, store_url, "append", "--json", line).exit_code == 0
    return store_url


@pytest.mark.parametrize("month", ["2026-+3", "２０２６-１０", "2_26-10", " 2026-10", "2026-10\n", "2026-10 ",
                                   "2026-1", "1969-11", "3000-02", "0001-01", "9999-12"])
@pytest.mark.parametrize("command", [["report"], ["audit"], ["audit", "--position", "1"]])
def test_month_options_take_exactly_yyyy_mm(runner: CliRunner, url: str, command: list[str],
                                            month: str) -> None:
    result = runner.invoke(cli, ["--store", url, *command, "--contract", "c1", "--month", month])
    assert result.exit_code == 2
    expected = f"error: --month: expected a month YYYY-MM from 1969-12 to 3000-01, got {month!r}"
    assert one_line_error(result) == expected.replace("\n", "\\n")


@pytest.mark.parametrize("month", ["1969-12", "2026-10", "3000-01"])
def test_months_in_range_are_reported(runner: CliRunner, url: str, month: str) -> None:
    assert run(runner, url, "report", "--contract", "c1", "--month", month).exit_code == 0
    assert run(runner, url, "audit", "--contract", "c1", "--month", month, "--as-of",
               "2999-12-31T23:59:59.999999Z").exit_code == 0


@pytest.mark.parametrize(("option", "command"), [
    ("--as-of", ["audit", "--contract", "c1", "--month", "2026-10"]),
    ("--since", ["events"]),
    ("--until", ["events"]),
])
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z",
                                   "2999-12-31T23:59:59-01:00"])
def test_timestamp_options_are_bounded(runner: CliRunner, url: str, option: str, command: list[str],
                                       value: str) -> None:
    result = runner.invoke(cli, ["--store", url, *command, option, value])
    assert result.exit_code == 2
    assert one_line_error(result).startswith(
        f"error: {option}: must lie between 1970-01-01T00:00:00Z and 2999-12-31T23:59:59.999999Z, got ")


def test_a_policy_counting_business_days_needs_a_calendar(runner: CliRunner, url: str,
                                                          tmp_path: Path) -> None:
    policy = tmp_path / "c2.toml"
    policy.write_text(POLICY.replace('"c1"', '"c2"') + '[maintenance]\nmin_notice = "5 business days"\n')
    result = runner.invoke(cli, ["--store", url, "contract", "register", str(policy)])
    assert result.exit_code == 2
    assert one_line_error(result) == (
        f"error: {policy}: field `maintenance.min_notice`: a notice in business days needs a [calendar] "
        "section (business hours and holidays)")
    policy.write_text(policy.read_text() + "[calendar]\n")
    assert run(runner, url, "contract", "register", str(policy)).exit_code == 0


def test_append_refuses_a_repeated_key(runner: CliRunner, url: str) -> None:
    line = f'{{"type":"probe_failed","service":"web","probe":"p","at":"{AT}","probe":"q"}}'
    result = runner.invoke(cli, ["--store", url, "append", "--json", line])
    assert result.exit_code == 2
    assert one_line_error(result) == "error: field `probe`: the key appears twice in one object"


def test_severity_given_as_an_option_or_as_json_is_one_fact(runner: CliRunner, url: str) -> None:
    first = run(runner, url, "append", "incident_opened", "--service", "web", "--incident", "i1", "--at", AT,
                "--impact", "outage", "--severity", "2")
    assert first.exit_code == 0
    again = run(runner, url, "append", "--json",
                f'{{"type":"incident_opened","service":"web","incident":"i1","at":"{AT}","impact":"outage",'
                '"severity":2}')
    assert again.stdout == first.stdout
    assert "already recorded" in again.stderr
    assert '"severity":2' in run(runner, url, "events").stdout


def test_import_refuses_a_nul_in_a_reason(runner: CliRunner, url: str) -> None:
    before = run(runner, url, "events").stdout
    data = (f'{{"type":"probe_failed","service":"web","probe":"p","at":"{AT}","id":"n1"}}\n'
            '{"type":"exclusion_revoked","ref":"x","reason":"a\\u0000b"}\n')
    result = runner.invoke(cli, ["--store", url, "import", "-"], input=data)
    assert result.exit_code == 2
    assert one_line_error(result) == ("error: line 2: field `reason`: must not contain control characters "
                                      "other than tab, line feed and carriage return")
    assert run(runner, url, "events").stdout == before



def test_events_refuse_a_since_after_until(runner: CliRunner, url: str) -> None:
    # It used to print the facts without a time of their own (here the contract), as if the
    # empty range were a filter they pass.
    for since, until in [("2026-10-05T00:00:00Z", "2026-10-04T00:00:00Z"),
                         ("2026-10-04T09:15:00Z", "2026-10-04T10:15:00+02:00")]:
        result = runner.invoke(cli, ["--store", url, "events", "--since", since, "--until", until])
        assert result.exit_code == 2
        assert one_line_error(result) == (
            f"error: --since {since}: after --until {until} (the range would be empty)")
        assert result.stdout == ""
    # The same instant at both ends is a range (it keeps what spans it); the order is by instant.
    same = run(runner, url, "events", "--since", AT, "--until", AT.replace("09:15:00Z", "11:15:00+02:00"))
    assert same.exit_code == 0
    assert [line for line in same.stdout.splitlines() if '"contract_registered"' in line]


@pytest.mark.parametrize(("kind", "verb"),
                         [("contract_registered", "register"), ("contract_amended", "amend")])
def test_append_of_a_contract_type_says_how_a_policy_is_recorded(runner: CliRunner, url: str, kind: str,
                                                                  verb: str) -> None:
    # It used to say "Object missing required field `policy`": no loose field can hold a policy.
    before = run(runner, url, "events").stdout
    for extra in ([], ["--policy", "x"], ["--contract", "c"]):
        result = runner.invoke(cli, ["--store", url, "append", kind, *extra])
        assert result.exit_code == 2
        assert one_line_error(result) == (
            f"error: `{kind}`: a policy is recorded from its TOML file (`ledger contract {verb} FILE.toml`), "
            "or as a whole fact with `append --json`")
    assert run(runner, url, "events").stdout == before


NOT_UTF8 = "w\udcff"  # how Python reads the byte 0xFF of a command-line argument
NOT_UTF8_ARGS = [
    (["append", "probe_failed", "--service", NOT_UTF8, "--probe", "p", "--at", AT], "--service"),
    (["append", "--json", f'{{"type":"probe_failed","service":"{NOT_UTF8}","probe":"p","at":"{AT}"}}'],
     "--json"),
    (["events", "--service", NOT_UTF8], "--service"),
    (["events", f"--since={NOT_UTF8}"], "--since"),
    (["report", "--contract", NOT_UTF8, "--month", "2026-10"], "--contract"),
    (["audit", "--contract", "c1", "--month", "2026-10", "--as-of", NOT_UTF8], "--as-of"),
]


def test_an_argument_that_is_not_utf8_is_named(runner: CliRunner, url: str) -> None:
    # It was `error: UnicodeEncodeError: 'utf-8' codec can't encode ...`, exit 1, naming nothing.
    before = run(runner, url, "events").stdout
    for args, named in NOT_UTF8_ARGS:
        result = runner.invoke(cli, ["--store", url, *args])
        assert result.exit_code == 2, args
        assert one_line_error(result) == f"error: {named}: not valid UTF-8 text"
    assert run(runner, url, "events").stdout == before



def _from(month: str, cid: str = "c1") -> str:
    return POLICY.replace('"c1"', f'"{cid}"').replace('"100.00"', f'"100.00"\neffective_from = "{month}"')


def test_what_the_store_refuses_in_a_policy_names_the_file(runner: CliRunner, url: str,
                                                           tmp_path: Path) -> None:
    # The file's own checks named it (`p.toml: field ...`); the checks against the store did not.
    policy = tmp_path / "p.toml"
    policy.write_text(_from("2026-10"))
    assert run(runner, url, "contract", "amend", str(policy)).exit_code == 0
    before = run(runner, url, "events").stdout
    later = ("field `contract.effective_from`: 2026-09 is not after 2026-10, from which version 2 is in "
             "force: each amendment starts a later month")
    cases = [
        (["register"], POLICY, 2,
         "contract `c1` is already registered (version 2); use `ledger contract amend`"),
        (["amend"], _from("2026-11", "c9"), 1, "contract `c9` is not registered; register it first"),
        (["validate"], _from("2026-11", "c9"), 1, "contract `c9` is not registered; register it first"),
        (["amend"], POLICY, 2, 'field `contract.effective_from`: required to amend a contract ("YYYY-MM")'),
        (["amend"], _from("2026-09"), 2, later),
        (["validate"], _from("2026-09"), 2, later),
    ]
    for command, text, code, message in cases:
        policy.write_text(text)
        result = runner.invoke(cli, ["--store", url, "contract", *command, str(policy)])
        assert result.exit_code == code, (command, result.stderr)
        assert one_line_error(result) == f"error: {policy}: {message}"
    assert run(runner, url, "events").stdout == before


BOM = b"\xef\xbb\xbf"
BOM_JSON = ("a UTF-8 byte order mark (U+FEFF) at the start, which is not JSON; "
            "save as UTF-8 without a BOM")


def test_a_byte_order_mark_is_refused_and_named(runner: CliRunner, url: str, tmp_path: Path) -> None:
    # It was "not valid JSON: JSON is malformed: invalid character (byte 0)" / "not valid TOML:
    # Invalid statement (at line 1, column 1)": placed, but not saying what the character was.
    before = run(runner, url, "events").stdout
    line = f'{{"type":"probe_failed","service":"web","probe":"q","at":"{AT}"}}\n'.encode()
    many = b"".join(f'{{"type":"probe_failed","service":"web","probe":"q{i}","at":"{AT}"}}\n'.encode()
                    for i in range(60_000))  # over 4 MB: read and checked by a child process
    for data, where in [(BOM + line, "line 1"), (BOM + many, "line 1"), (line + BOM + line, "line 2"),
                        (BOM, "line 1")]:
        f = tmp_path / "bom.ndjson"
        f.write_bytes(data)
        for args, stdin in [([str(f)], None), (["-"], data)]:
            result = runner.invoke(cli, ["--store", url, "import", *args], input=stdin)
            assert result.exit_code == 2
            assert one_line_error(result) == f"error: {where}: {BOM_JSON}"
    result = runner.invoke(cli, ["--store", url, "append", "--json", (BOM + line).decode()])
    assert (result.exit_code, one_line_error(result)) == (2, f"error: {BOM_JSON}")
    kuma = tmp_path / "kuma.json"
    kuma.write_bytes(BOM + b'{"heartbeat":{"status":0}}')
    result = runner.invoke(cli, ["--store", url, "import", "--from", "uptime-kuma", str(kuma)])
    assert (result.exit_code, one_line_error(result)) == (2, f"error: uptime-kuma: {BOM_JSON}")
    policy = tmp_path / "c3.toml"
    policy.write_bytes(BOM + POLICY.replace('"c1"', '"c3"').encode())
    for verb in ("register", "validate"):
        result = runner.invoke(cli, ["--store", url, "contract", verb, str(policy)])
        assert (result.exit_code, one_line_error(result)) == (
            2, f"error: {policy}: line 1: {BOM_JSON.replace('JSON', 'TOML')}")
    labels = tmp_path / "labels.toml"
    labels.write_bytes(BOM + b'service = "job"\n')
    result = runner.invoke(cli, ["--store", url, "import", "--from", "uptime-kuma", "--map", str(labels),
                                 str(kuma)])
    assert one_line_error(result).startswith(f"error: --map {labels}: line 1: a UTF-8 byte order mark")
    assert run(runner, url, "events").stdout == before
    # Only its spelling at the start is refused: U+FEFF inside a string is text like any other.
    inside = f'{{"type":"probe_failed","service":"web","probe":"\ufeffq","at":"{AT}"}}'
    assert run(runner, url, "append", "--json", inside).exit_code == 0


def test_a_support_span_spelled_otherwise_is_refused(runner: CliRunner, url: str, tmp_path: Path) -> None:
    before = run(runner, url, "events").stdout
    support = ('\n[support]\nhours = ["Mon 08:00 -Fri 17:00"]\n'
               'targets = [{ severity = "s1", first_response = "1h" }]\n')
    policy = tmp_path / "c4.toml"
    policy.write_text(POLICY.replace('"c1"', '"c4"') + support)
    message = ('field `support.hours[0]`: a span across days is written "Mon 08:00 - Fri 17:00" '
               "(one space each side of the dash), got 'Mon 08:00 -Fri 17:00'")
    for verb in ("register", "validate"):
        result = runner.invoke(cli, ["--store", url, "contract", verb, str(policy)])
        assert (result.exit_code, one_line_error(result)) == (2, f"error: {policy}: {message}")
    amended = tmp_path / "c1.toml"
    amended.write_text(_from("2026-11") + support)
    result = runner.invoke(cli, ["--store", url, "contract", "amend", str(amended)])
    assert (result.exit_code, one_line_error(result)) == (2, f"error: {amended}: {message}")
    assert run(runner, url, "events").stdout == before
    policy.write_text(policy.read_text().replace(" -Fri", " - Fri"))
    assert run(runner, url, "contract", "register", str(policy)).exit_code == 0


def test_an_error_echoing_a_long_value_is_shortened(runner: CliRunner, url: str, tmp_path: Path) -> None:
    # A 10,000-character id was echoed whole: 125 lines of an 80-column terminal for one error.
    long = "x" * 10_000
    result = runner.invoke(cli, ["--store", url, "report", "--contract", long, "--month", "2026-10"])
    line = one_line_error(result)
    assert result.exit_code == 1
    assert line.startswith("error: contract `xxx")
    assert line.endswith("xxx` is not registered")
    assert "...[9,129 of 10,029 characters left out]..." in line
    assert len(line) < 1_100
    f = tmp_path / "long.ndjson"
    f.write_text(f'{{"type":"{long}"}}\n')
    result = runner.invoke(cli, ["--store", url, "import", str(f)])
    assert result.exit_code == 2
    assert one_line_error(result).startswith("error: line 1: field `type`: unknown event type 'xxx")
    # A message that echoes a name the ledger accepts (at most 512 characters) stays whole.
    name = "n" * 512
    result = runner.invoke(cli, ["--store", url, "report", "--contract", name, "--month", "2026-10"])
    assert one_line_error(result) == f"error: contract `{name}` is not registered"
