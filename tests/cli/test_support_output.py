"""``ledger support`` in every format, for one contract, several or all (INTERFACE.md sections 6 and 8).

Several contracts in one call are the single reports' bytes put together (json: an
array of them; ndjson: one a line; csv: one header; table: one after another), at
the head or at a replay point, on both stores, and the same bytes on both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.demo.run import run_demo
from cli.main import cli
from cli.support import CSV_HEADER
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.policy_check import load_policy
from tests.conftest import StepClock
from tests.lines import import_lines

DOCS = Path(__file__).resolve().parents[2] / "docs" / "examples"
MONTH = "2026-10"

# Seed D's support clause on the demo's seed-D service: a mean target, engagement, recovery.
SUPPORT_D = b"""
[contract]
id = "sup-d-2026"
customer = "Better Impact customer"
service = "better-impact"
timezone = "America/Toronto"
currency = "CAD"
monthly_fee = "500.00"

[availability]
target = "99.95"
probes = ["http"]

[support]
hours = ["Mon 05:00 - Fri 16:00"]
targets = [
  { severity = "level1", mean_first_response = "15m" },
  { severity = "level2", first_response = "1 business day" },
]
engagement = { level = "level3", within = "10m" }
recovery = { max_data_loss = "24h" }
"""

SUPPORT_D_FACTS = [
    {"type": "ticket_opened", "contract": "sup-d-2026", "ticket": "D-1", "at": "2026-10-05T10:00:00-04:00",
     "severity": "level1", "title": "Volunteers cannot log hours"},
    {"type": "ticket_responded", "ticket": "D-1", "at": "2026-10-05T10:12:00-04:00"},
    {"type": "ticket_opened", "contract": "sup-d-2026", "ticket": "D-2", "at": "2026-10-09T15:30:00-04:00",
     "severity": "level1"},
    {"type": "ticket_responded", "ticket": "D-2", "at": "2026-10-12T05:40:00-04:00"},
    {"type": "ticket_opened", "contract": "sup-d-2026", "ticket": "D-3", "at": "2026-10-14T11:00:00-04:00",
     "severity": "level2"},
    {"type": "recovery_performed", "service": "better-impact", "recovery": "r-1",
     "at": "2026-10-20T03:00:00-04:00", "restored_to": "2026-10-19T01:00:00-04:00"},
]


def fill(led: Ledger) -> int:
    """The demo month, seed B amended with its support clause and tickets, sup-d; returns a mid position."""
    run_demo(led)
    led.amend_contract(load_policy((DOCS / "sla-b-support.toml").read_bytes()))
    middle = led.recorder.last_position()
    import_lines(led, (DOCS / "sla-b-tickets-2026-10.ndjson").read_bytes().splitlines())
    led.register_contract(load_policy(SUPPORT_D))
    import_lines(led, [json.dumps(f) for f in SUPPORT_D_FACTS])
    return middle


@pytest.fixture
def filled(store_url: str) -> tuple[str, int]:
    led = open_ledger(store_url, clock=StepClock())
    try:
        middle = fill(led)
    finally:
        led.close()
    return store_url, middle


def invoke(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--store", url, "support", "--month", MONTH, *args])


def out(url: str, *args: str) -> str:
    result = invoke(url, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def contracts(url: str) -> list[str]:
    listed = CliRunner().invoke(cli, ["--store", url, "contract", "list", "--format", "json"])
    return [c["contract"] for c in json.loads(listed.stdout)]


def singles(url: str, ids: list[str], fmt: str, *point: str) -> list[str]:
    return [out(url, "--contract", cid, "--format", fmt, *point) for cid in ids]


def check_many(url: str, ids: list[str], chosen: tuple[str, ...], *point: str) -> None:
    """Every format of several contracts is the single reports' bytes put together."""
    json_one = singles(url, ids, "json", *point)
    assert out(url, *chosen, "--format", "json", *point) == "[" + ",".join(s[:-1] for s in json_one) + "]\n"
    assert out(url, *chosen, "--format", "ndjson", *point) == "".join(json_one)
    header = ",".join(CSV_HEADER) + "\n"
    csv_one = singles(url, ids, "csv", *point)
    assert all(s.startswith(header) for s in csv_one)
    assert out(url, *chosen, "--format", "csv", *point) == header + "".join(s[len(header):] for s in csv_one)
    assert out(url, *chosen, *point) == "\n".join(singles(url, ids, "table", *point))


def test_every_format_with_and_without_contract(filled: tuple[str, int]) -> None:
    url, middle = filled
    ids = contracts(url)
    assert ids == sorted(ids)
    assert ids == ["sla-a-2026", "sla-b-2026", "sla-c-en-2026", "sla-c-fr-2026", "sla-d-2026", "sup-d-2026"]
    check_many(url, ids, ())
    reports = [json.loads(line) for line in out(url, "--format", "ndjson").splitlines()]
    assert [r["contract"] for r in reports] == ids
    # The demo records B's month of tickets (docs/examples' ndjson adds nothing), C's and D's.
    assert [len(r["tickets"]) for r in reports] == [0, 8, 3, 3, 5, 3]
    seed_b = {t["ticket"]: t for t in reports[1]["tickets"]}  # as docs/examples/README.md works it out
    statuses = ["met", "met", "breached", "met", "met", "breached", "met", "pending"]
    assert [t["status"] for t in seed_b.values()] == statuses
    assert seed_b["T-2610-03"]["deadline"] == "2026-10-07T10:00:00+02:00"
    assert seed_b["T-2610-04"]["deadline"] == "2026-10-12T09:00:00+02:00"
    assert (seed_b["T-2610-06"]["severity"], seed_b["T-2610-06"]["deadline"]) == (
        "production_down", "2026-10-20T11:00:00+02:00")
    assert seed_b["T-2610-09"]["deadline"] == "2026-11-02T14:00:00+01:00"
    assert reports[1]["unknown_severity"] == ["T-2610-07"]
    assert (reports[1]["quota"]["remaining_seconds"], reports[1]["quota"]["warning"]) == (5400, True)
    sup = reports[-1]
    assert [g["kind"] for g in sup["targets"]] == ["mean", "per_ticket"]
    assert sup["recoveries"][0]["recovery"] == "r-1"
    assert sup["engagements"], "the demo's seed-D outages start downtime stretches"
    # --contract repeated: those, deduplicated, in id order; one --contract with ndjson: one line.
    chosen = ("--contract", "sup-d-2026", "--contract", "sla-b-2026", "--contract", "sup-d-2026")
    check_many(url, ["sla-b-2026", "sup-d-2026"], chosen)
    assert out(url, "--contract", "sup-d-2026", "--format", "ndjson") == out(
        url, "--contract", "sup-d-2026", "--format", "json")
    # At a replay point: the contracts registered by then, each replayed there.
    point = ("--position", str(middle))
    check_many(url, ids[:-1], (), *point)
    then = json.loads(out(url, "--format", "json", *point))  # the demo's tickets, before sup-d's
    assert [len(r["tickets"]) for r in then] == [0, 8, 3, 3, 5]
    listed = CliRunner().invoke(cli, ["--store", url, "events", "--after-position", str(middle - 1)]).stdout
    as_of = json.loads(listed.splitlines()[0])["recorded_at"]  # the next import came a second later
    check_many(url, ids[:-1], (), "--as-of", as_of)
    assert out(url, "--format", "ndjson", "--as-of", as_of) == out(url, "--format", "ndjson", *point)


def test_html_is_one_contract_page(filled: tuple[str, int]) -> None:
    url, _ = filled
    page = out(url, "--contract", "sup-d-2026", "--format", "html")
    report = json.loads(out(url, "--contract", "sup-d-2026", "--format", "json"))
    assert page.startswith("<!DOCTYPE html>")
    assert f'data-figure="digest">{report["digest"]}<' in page
    for t in report["tickets"]:
        assert f'data-ticket="{t["ticket"]}" data-severity="{t["severity"]}"' in page
    assert 'class="recovery" data-recovery="r-1"' in page
    assert page.count('class="engagement"') == len(report["engagements"])
    bare = out(url, "--contract", "sla-a-2026", "--format", "html")  # no [support], no ticket
    assert "No support clock and no ticket: nothing to draw." in bare
    assert "<svg" not in bare
    assert "the policy promises nothing about support" in bare
    for args in ((), ("--contract", "sla-b-2026", "--contract", "sup-d-2026")):
        result = invoke(url, *args, "--format", "html")
        assert result.exit_code == 2
        assert result.stderr == "error: --format html: give exactly one --contract\n"


def test_bad_and_unknown(filled: tuple[str, int]) -> None:
    url, _ = filled
    result = invoke(url, "--contract", "sla-b-2026", "--contract", "nope", "--format", "ndjson")
    assert result.exit_code == 1
    assert "nope" in result.stderr
    assert result.stdout == ""
    result = invoke(url, "--format", "xml")
    assert result.exit_code == 2


def test_sqlite_and_postgres_print_the_same_bytes(sqlite_url: str, pg_url: str) -> None:
    got = []
    for url in (sqlite_url, pg_url):
        led = open_ledger(url, clock=StepClock())
        try:
            middle = fill(led)
        finally:
            led.close()
        got.append([out(url, "--format", fmt, *point)
                    for fmt in ("table", "json", "csv", "ndjson")
                    for point in ((), ("--position", str(middle)))]
                   + [out(url, "--contract", c, "--format", "html") for c in ("sla-b-2026", "sup-d-2026")])
    assert got[0] == got[1]


def test_the_table_explains_each_ticket_and_the_json_does_not(filled: tuple[str, int]) -> None:
    # docs/examples/README.md's T-2610-04: opened Saturday 10 October 11:00 Zurich, the clock opens
    # on Monday 12th at 08:00, 1 h of open time: due 09:00; answered 08:20, 20 min: met.
    url, _ = filled
    table = out(url, "--contract", "sla-b-2026").splitlines()
    i = next(n for n, line in enumerate(table) if line.startswith("  T-2610-04 "))
    assert table[i + 1] == ("      opened Sat 10 Oct 11:00, clock closed until Mon 12 Oct 08:00, "
                            "1h of open time -> Mon 12 Oct 09:00; "
                            "answered Mon 12 Oct 08:20 after 20m of open time: met")
    explained = [line for line in table if line.startswith("      opened ")]
    assert len(explained) == 8  # one under each of the month's tickets (T-2610-07's severity is unknown)
    assert explained[-1].endswith("no response recorded, 3h of open time so far: pending")
    # Section 6.3's JSON keeps its fields: no explanation in it.
    report = json.loads(out(url, "--contract", "sla-b-2026", "--format", "json"))
    assert list(report["tickets"][0]) == ["ticket", "severity", "kind", "opened_at", "responded_at", "target",
                                          "deadline", "response_seconds", "status", "events"]
    html = out(url, "--contract", "sla-b-2026", "--format", "html")
    assert html.count('<tr class="why"') == 8
    assert ("clock closed until Mon 12 Oct 08:00, 1h of open time -&gt; Mon 12 Oct 09:00; "
            "answered Mon 12 Oct 08:20 after 20m of open time: met") in html
