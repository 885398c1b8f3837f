"""Section 8 from outside, beyond test_output_escaping.py: support CSV and HTML pages, on both stores.

Ids, severities and free text are whatever a customer's ticketing system or a policy
writer typed: a cell may start a spreadsheet formula, a string may hold a right-to-left
override. The CSV of `support` keeps every such cell from being a formula, as the CSV
of `report` does; an HTML page shows a bidi control escaped, as the terminal outputs
do, instead of letting it reverse the rest of its line (figures included).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli

EXAMPLES = Path(__file__).resolve().parents[2] / "ledger" / "examples"
CONTRACT = '=HYPERLINK("http://evil.example","x")'
RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: what follows it on its line is drawn reversed
BIDI = {RLO, "\u2066", "\u2067", "\u2068", "\u2069", "\u202a", "\u202b", "\u202c", "\u202d", "\u200e",
        "\u200f", "\u061c"}

POLICY = f"""
[contract]
id = {json.dumps(CONTRACT)}
customer = "Evil {RLO}proC <script>alert(1)</script>"
service = "bi"
timezone = "America/Toronto"
currency = "CAD"
monthly_fee = "500.00"

[availability]
target = "99.95"
probes = ["http"]
excludable = ["third_party"]

[support]
hours = ["Mon 05:00 - Fri 16:00"]
targets = [
  {{ severity = "-level1", mean_first_response = "15m" }},
  {{ severity = "@level2", first_response = "1 business day" }},
]
"""

FACTS = [
    {"type": "ticket_opened", "contract": CONTRACT, "ticket": "=1+1", "at": "2026-10-05T10:00:00-04:00",
     "severity": "-level1", "title": f"<script>x</script> {RLO}00.0021"},
    {"type": "ticket_opened", "contract": CONTRACT, "ticket": "+cmd|' /C calc'!A0",
     "at": "2026-10-06T10:00:00-04:00", "severity": "@level2"},
    {"type": "ticket_responded", "ticket": "+cmd|' /C calc'!A0", "at": "2026-10-06T11:00:00-04:00"},
    {"type": "probe_failed", "service": "bi", "probe": "http", "at": "2026-10-07T14:00:00Z",
     "detail": f"{RLO}nwod"},
    {"type": "probe_recovered", "service": "bi", "probe": "http", "at": "2026-10-07T14:30:00Z"},
    {"type": "exclusion_declared", "service": "bi", "exclusion": f"x-{RLO}1", "category": "third_party",
     "starts_at": "2026-10-07T14:10:00Z", "ends_at": "2026-10-07T14:20:00Z",
     "reason": f"cloud {RLO}EUR 00.0021 \"quoted\" 'single' </title><svg onload=alert(1)>"},
]


def run(url: str, *args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli, ["--store", url, *args], input=stdin, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.fixture
def url(store_url: str, tmp_path: Path) -> str:
    policy = tmp_path / "hostile.toml"
    policy.write_text(POLICY, encoding="utf-8")
    run(store_url, "contract", "register", str(policy))
    run(store_url, "contract", "register", str(EXAMPLES / "sla-a.toml"))
    run(store_url, "import", "-", stdin="".join(json.dumps(f) + "\n" for f in FACTS))
    return store_url


FORMULA = ("=", "+", "-", "@", "\t", "\r")


def test_support_csv_starts_no_formula(url: str) -> None:
    every = run(url, "support", "--month", "2026-10", "--format", "csv")
    one = run(url, "support", "--contract", CONTRACT, "--month", "2026-10", "--format", "csv")
    assert one == every.split("\n", 1)[0] + "\n" + "".join(
        line + "\n" for line in every.splitlines()[1:] if line.startswith("\"'=HYPERLINK"))
    rows = list(csv.reader(io.StringIO(every)))
    assert rows[0][:4] == ["contract", "month", "ticket", "severity"]
    assert [r[2] for r in rows[1:]] == ["'=1+1", "'+cmd|' /C calc'!A0"]
    assert {r[0] for r in rows[1:]} == {"'" + CONTRACT}
    assert [r[3] for r in rows[1:]] == ["'-level1", "'@level2"]
    for row in rows[1:]:
        assert not any(cell.startswith(FORMULA) for cell in row), row
    # The report's CSV of every contract, its header first, the same way.
    report = list(csv.reader(io.StringIO(run(url, "report", "--month", "2026-10", "--format", "csv"))))
    assert report[0][0] == "contract"
    assert [r[0] for r in report[1:]] == ["'" + CONTRACT, "sla-a-2026"]


@pytest.mark.parametrize("command", ["report", "audit", "support"])
def test_pages_show_bidi_controls_escaped(url: str, command: str) -> None:
    page = run(url, command, "--contract", CONTRACT, "--month", "2026-10", "--format", "html")
    assert not BIDI & set(page)
    assert "\\u202e" in page  # shown, not dropped: the reader sees the text was tampered with
    assert "<script" not in page
    assert "<svg onload" not in page
    if command != "support":
        data = json.loads(run(url, command, "--contract", CONTRACT, "--month", "2026-10", "--format", "json"))
        intervals = (data["report"] if command == "audit" else data)["intervals"]
        assert [i["kind"] for i in intervals] == ["downtime", "excused", "downtime"]
        assert RLO in intervals[1]["reason"]  # the JSON keeps the text exact
        escaped = intervals[1]["reason"].replace(RLO, "\\u202e")
        assert escaped.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace(
            '"', "&#34;").replace("'", "&#39;") in page
