"""The HTML pages (INTERFACE.md section 8) in a real headless Chromium: drawn, true to the JSON, inert."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.demo.run import run_demo
from cli.main import cli
from ledger.bootstrap import open_ledger
from tests.browser.conftest import Browser
from tests.browser.pages import Node, colour_counts, parse, png_pixels
from tests.conftest import StepClock

EXAMPLES = Path(__file__).resolve().parents[2] / "ledger" / "examples"


def run(url: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--store", url, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo month (seeds A to D, October 2026) on SQLite."""
    url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
    led = open_ledger(url, clock=StepClock())
    try:
        run_demo(led)
    finally:
        led.close()
    return url


def page(tmp_path: Path, url: str, *args: str) -> tuple[Path, dict[str, object]]:
    """The HTML page of a report or audit command, written to a file, and the same command's JSON."""
    html = run(url, *args, "--format", "html")
    out = tmp_path / f"{args[0]}.html"
    out.write_text(html, encoding="utf-8")
    return out, json.loads(run(url, *args, "--format", "json"))


def figures(dom: Node) -> dict[str, str]:
    return {n.attrs["data-figure"]: n.attrs.get("data-value", n.text()) for n in dom.find(None)
            if "data-figure" in n.attrs and n.tag != "tr"}


def check_matches_json(dom: Node, report: dict[str, object]) -> None:
    """Marks, table rows and figures of the page are the JSON report's, one for one."""
    intervals = report["intervals"]
    assert isinstance(intervals, list)
    want = [(i["kind"], i["start"], i["end"], str(i["seconds"])) for i in intervals]
    marks = dom.find("g", class_="mark")
    assert [(m.attrs["data-kind"], m.attrs["data-start"], m.attrs["data-end"], m.attrs["data-seconds"])
            for m in marks] == want
    for m, i in zip(marks, intervals, strict=True):
        assert m.find("rect"), "a mark is drawn"
        assert i["reason"] in m.find("title")[0].text()  # the reason is the mark's tooltip
    rows = dom.find("table", class_="intervals")[0].find("tr")[1:] if intervals else []
    assert [(r.attrs["data-kind"], r.attrs["data-start"], r.attrs["data-end"], r.attrs["data-seconds"])
            for r in rows] == want
    assert [r.attrs["data-events"] for r in rows] == [" ".join(map(str, i["events"])) for i in intervals]
    got = figures(dom)
    credit = report["credit"]
    assert isinstance(credit, dict)
    for key in ("availability_percent", "target_percent", "policy_version", "as_of_position", "digest"):
        assert got[key] == str(report[key]), key
    for key in ("total_seconds", "outage_seconds", "maintenance_seconds", "excused_seconds"):
        assert got[key] == str(report[key]), key
    assert got["downtime_seconds"] == str(report["downtime_seconds"])
    assert got["target_met"] == json.dumps(report["target_met"])
    assert got["credit_payable"] == json.dumps(credit["payable"])
    for key in ("amount", "percent", "currency", "claim"):
        assert got[f"credit_{key}"] == credit[key]


def check_links(dom: Node) -> None:
    """No external resource: every link is an anchor of the page itself, and it exists."""
    ids = {n.attrs["id"] for n in dom.find(None) if "id" in n.attrs}
    for n in dom.find(None):
        assert "src" not in n.attrs, n
        if "href" in n.attrs:
            assert n.attrs["href"].startswith("#"), n.attrs["href"]
            assert n.attrs["href"][1:] in ids, n.attrs["href"]


def check_drawn(browser: Browser, html: Path, tmp_path: Path) -> None:
    """The screenshot is not blank, and the downtime red is on it."""
    shot = browser.screenshot(html, tmp_path / "shot.png", (1100, 1000))
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1100, 1000)
    other, red = colour_counts(rows)
    assert other > width * height // 20, "the page is (almost) blank"
    assert red > 50, "no downtime drawn"


def test_report_page_seed_a(browser: Browser, demo_url: str, tmp_path: Path) -> None:
    html, report = page(tmp_path, demo_url, "report", "--contract", "sla-a-2026", "--month", "2026-10")
    dom = parse(browser.dom(html))
    check_matches_json(dom, report)
    check_links(dom)
    assert not dom.find("script")
    # The claim deadline (3 days into November, Paris) is marked on the timeline.
    assert [d.attrs["data-at"] for d in dom.find("g", class_="deadline")] == ["2026-11-04T00:00:00+01:00"]
    # The force majeure window is drawn behind the excused outage, the maintenance windows behind theirs.
    bands = {(b.attrs["data-kind"], b.attrs["data-ref"]) for b in dom.find("g", class_="band")}
    assert ("excused", "workspace-2026-10-fm-1") in bands
    assert ("maintenance", "workspace-2026-10-mnt-1") in bands
    check_drawn(browser, html, tmp_path)


def test_audit_page_seed_b_dst(browser: Browser, demo_url: str, tmp_path: Path) -> None:
    html, audit = page(tmp_path, demo_url, "audit", "--contract", "sla-b-2026", "--month", "2026-10",
                       "--position", "300")
    dom = parse(browser.dom(html))
    report = audit["report"]
    assert isinstance(report, dict)
    check_matches_json(dom, report)
    check_links(dom)
    # One row per local day of October in Zurich; the 25th has 25 hours, the clocks go back at 03:00.
    days = dom.find("g", class_="day")
    assert len(days) == 31
    assert {d.attrs["data-date"]: d.attrs["data-hours"] for d in days if d.attrs["data-hours"] != "24"} == {
        "2026-10-25": "25"}
    assert "03:00 → 02:00" in dom.find("g", data_date="2026-10-25")[0].text()
    # Every step, linked to each fact behind it; every cited fact listed as recorded.
    explanation = audit["explanation"]
    assert isinstance(explanation, dict)
    steps = dom.find("tr", class_="step")
    assert [s.attrs["data-figure"] for s in steps] == [s["figure"] for s in explanation["steps"]]
    for s, want in zip(steps, explanation["steps"], strict=True):
        assert [a.attrs["href"] for a in s.find("a")] == [f"#e{p}" for p in want["events"]]
    facts = {int(f.attrs["data-position"]): f for f in dom.find("li", class_="fact")}
    cited = {p for i in report["intervals"] for p in i["events"]}
    assert cited <= set(facts)
    assert max(facts) <= 300  # the replay sees nothing recorded after its point
    exported = {json.loads(line)["position"]: line for line in run(demo_url, "events").splitlines()}
    for p, f in facts.items():
        assert f.find("code")[0].text() == exported[p]
    check_drawn(browser, html, tmp_path)


HOSTILE_TITLE = "<script>document.title='pwned-title'</script>"
HOSTILE_REASON = "<img src=x onerror=\"document.title='pwned-reason'\"> storm"
HOSTILE_ID = "fm-<b onmouseover=alert(1)>x</b>"


def test_text_from_facts_is_text_never_markup(browser: Browser, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    run(url, "contract", "register", str(EXAMPLES / "sla-a.toml"))
    lines = [
        {"type": "incident_opened", "service": "workspace", "incident": "i-1", "impact": "outage",
         "at": "2026-10-10T10:00:00Z", "title": HOSTILE_TITLE},
        {"type": "incident_resolved", "incident": "i-1", "at": "2026-10-10T11:00:00Z"},
        # A right-to-left override would draw the rest of its line reversed: shown escaped instead.
        {"type": "incident_opened", "service": "workspace", "incident": "i-\u202e2", "impact": "outage",
         "at": "2026-10-11T10:00:00Z", "title": "\u202e00.0021 EUR"},
        {"type": "force_majeure_declared", "service": "workspace", "declaration": HOSTILE_ID,
         "starts_at": "2026-10-10T10:30:00Z", "ends_at": "2026-10-10T12:00:00Z", "reason": HOSTILE_REASON},
    ]
    feed = tmp_path / "hostile.ndjson"
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run(url, "import", str(feed))
    for command in ("report", "audit"):
        html, _ = page(tmp_path, url, command, "--contract", "sla-a-2026", "--month", "2026-10")
        raw = html.read_text()
        assert "<script" not in raw
        assert "<img" not in raw
        assert "<b " not in raw
        dom = parse(browser.dom(html))
        assert not dom.find("script")
        assert not dom.find("img")
        assert not dom.find("b")
        assert not [n for n in dom.find(None) if any(k.startswith("on") for k in n.attrs)]
        title = dom.find("title")[0].text()
        assert title == f"{command.title()} sla-a-2026 2026-10", "a script ran"
        text = dom.text()
        assert HOSTILE_REASON in text
        assert HOSTILE_ID in text
        assert "\u202e" not in text
        assert "incident i-\\u202e2" in text
        if command == "audit":
            assert HOSTILE_TITLE in text or json.dumps(HOSTILE_TITLE)[1:-1] in text
        excused = dom.find("g", class_="mark", data_kind="excused")
        assert len(excused) == 1
        assert HOSTILE_REASON in excused[0].find("title")[0].text()
