"""The support page (INTERFACE.md sections 6 and 8) in headless Chromium: drawn, true to the JSON, inert."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.demo.run import run_demo
from ledger.bootstrap import open_ledger
from tests.browser.conftest import Browser
from tests.browser.pages import Node, parse, png_pixels
from tests.browser.test_html_pages import check_links, figures, run
from tests.conftest import StepClock

DOCS = Path(__file__).resolve().parents[2] / "docs" / "examples"
MONTH = ("--contract", "sla-b-2026", "--month", "2026-10")


@pytest.fixture(scope="module")
def support_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The demo month, seed B amended with its support clause and a month of tickets (docs/examples)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('support') / 'demo.db'}"
    led = open_ledger(url, clock=StepClock())
    try:
        run_demo(led)
    finally:
        led.close()
    run(url, "contract", "amend", str(DOCS / "sla-b-support.toml"))
    run(url, "import", str(DOCS / "sla-b-tickets-2026-10.ndjson"))
    return url


def support_page(tmp_path: Path, url: str, *args: str) -> tuple[Path, dict[str, Any]]:
    html = run(url, "support", *args, "--format", "html")
    out = tmp_path / "support.html"
    out.write_text(html, encoding="utf-8")
    return out, json.loads(run(url, "support", *args, "--format", "json"))


def _at(value: str | None) -> str:
    return value or ""


def check_matches_json(dom: Node, report: dict[str, Any]) -> None:
    """Ticket rows and marks, targets, quota, holidays and headline figures are the JSON report's."""
    tickets = report["tickets"]
    rows = dom.find("tr", class_="ticket")
    keys = ("ticket", "severity", "kind", "opened", "responded", "target", "deadline", "response-seconds",
            "status", "events")
    assert [tuple(r.attrs[f"data-{k}"] for k in keys) for r in rows] == [
        (t["ticket"], t["severity"], t["kind"], t["opened_at"], _at(t["responded_at"]), t["target"],
         _at(t["deadline"]), json.dumps(t["response_seconds"]), t["status"], " ".join(map(str, t["events"])))
        for t in tickets]
    for r, t in zip(rows, tickets, strict=True):
        assert r.find("span", class_="status")[0].text() == t["status"]
        assert [a.attrs["href"] for a in r.find("a")][1:] == [f"#e{p}" for p in t["events"]]
    marks = dom.find("g", class_="ticket")
    drawn = ("ticket", "status", "opened", "deadline")
    assert [tuple(m.attrs[f"data-{k}"] for k in drawn) for m in marks] == [
        (t["ticket"], t["status"], t["opened_at"], _at(t["deadline"])) for t in tickets]
    for m, t in zip(marks, tickets, strict=True):
        assert m.find("rect", class_="bar"), "each ticket is drawn"
        if t["responded_at"] is not None:
            assert m.attrs["data-end"] == t["responded_at"]
    targets = dom.find("tr", class_="target")
    assert [(g.attrs["data-severity"], g.attrs["data-kind"], int(g.attrs["data-tickets"]))
            for g in targets] == [(g["severity"], g["kind"], g["tickets"]) for g in report["targets"]]
    for g, want in zip(targets, report["targets"], strict=True):
        if want["kind"] == "per_ticket":
            assert [int(g.attrs[f"data-{k}"]) for k in ("met", "breached", "pending")] == [
                want["met"], want["breached"], want["pending"]]
    assert [(h.attrs["data-country"], int(h.attrs["data-year"]), h.attrs["data-source"])
            for h in dom.find("tr", class_="holiday")] == [
        (h["country"], h["year"], h["source"]) for h in report["holidays"]]
    got = figures(dom)
    for key in ("contract", "month", "timezone", "policy_version", "as_of_position", "digest"):
        assert got[key] == str(report[key]), key
    assert got["tickets"] == str(len(tickets))
    for status in ("met", "breached", "pending"):
        assert got[status] == str(sum(1 for t in tickets if t["status"] == status))
    quota = report["quota"]
    if quota is not None:
        for key in ("granted", "used", "exempt", "remaining"):
            assert got[f"quota_{key}_seconds"] == json.dumps(quota[f"{key}_seconds"]), key
        assert got["quota_warning"] == json.dumps(quota["warning"])


def test_support_page_seed_b(browser: Browser, support_url: str, tmp_path: Path) -> None:
    html, report = support_page(tmp_path, support_url, *MONTH)
    dom = parse(browser.dom(html))
    check_matches_json(dom, report)
    check_links(dom)
    assert not dom.find("script")
    # What the example month holds: every status, a late answer after a severity change, the quota warning.
    assert [t["status"] for t in report["tickets"]].count("breached") == 2
    assert report["unknown_severity"] == ["T-2610-07"]
    assert [c.text() for c in dom.find("code", class_="unknown-ticket")] == ["T-2610-07"]
    assert report["quota"]["warning"] is True
    # One row per local day; the support clock is open on weekdays only, never on a Sunday.
    days = {d.attrs["data-date"]: d for d in dom.find("g", class_="day")}
    assert len(days) == 31
    assert days["2026-10-25"].attrs["data-hours"] == "25"
    assert len(days["2026-10-01"].find("rect", class_="open")) == 1
    assert not days["2026-10-04"].find("rect", class_="open")
    # A deadline within the month is marked; the one falling in November is not.
    marks = {m.attrs["data-ticket"]: m for m in dom.find("g", class_="ticket")}
    assert marks["T-2610-03"].find("line", class_="due")
    assert not marks["T-2610-09"].find("line", class_="due")
    # Every cited fact is listed as `ledger events` prints it; the checkpoint names the log of the report.
    exported = {json.loads(line)["position"]: line for line in run(support_url, "events").splitlines()}
    facts = {int(f.attrs["data-position"]): f for f in dom.find("li", class_="fact")}
    assert {p for t in report["tickets"] for p in t["events"]} <= set(facts)
    for p, f in facts.items():
        assert f.find("code")[0].text() == exported[p]
    assert figures(dom)["checkpoint_size"] == str(report["as_of_position"])
    checkpoint = json.loads(run(support_url, "checkpoint", "--size", str(report["as_of_position"])))
    assert figures(dom)["checkpoint_root"] == checkpoint["root"]
    check_drawn(browser, html, tmp_path)


def test_support_page_replayed(browser: Browser, support_url: str, tmp_path: Path) -> None:
    """At a position before the last tickets: the page is that replay's JSON (T-2610-03 not yet answered)."""
    responses = run(support_url, "events", "--type", "ticket_responded").splitlines()
    events = [json.loads(line) for line in responses]
    before = next(e["position"] for e in events if e["ticket"] == "T-2610-03") - 1
    html, report = support_page(tmp_path, support_url, *MONTH, "--position", str(before))
    dom = parse(browser.dom(html))
    check_matches_json(dom, report)
    check_links(dom)
    assert report["as_of_position"] == before
    assert max(int(f.attrs["data-position"]) for f in dom.find("li", class_="fact")) <= before
    assert dom.find("span", data_figure="as_of"), "the replay point is named"
    late = next(t for t in report["tickets"] if t["ticket"] == "T-2610-03")
    assert late["responded_at"] is None
    assert late["status"] == "breached"
    row = dom.find("tr", data_ticket="T-2610-03")[0]
    assert row.attrs["data-responded"] == ""
    assert "none" in row.text()


def check_drawn(browser: Browser, html: Path, tmp_path: Path) -> None:
    """The screenshot is not blank; the open hours' green and the late tickets' red are on it."""
    shot = browser.screenshot(html, tmp_path / "shot.png", (1100, 1000))
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1100, 1000)
    counts = {"other": 0, "open": 0, "late": 0, "met": 0}
    near = {"open": (0xD8, 0xEE, 0xDB), "late": (0xC6, 0x28, 0x28), "met": (0x2E, 0x7D, 0x32)}
    for r in rows:
        for i in range(0, len(r), 3):
            px = r[i], r[i + 1], r[i + 2]
            if px == (255, 255, 255):
                continue
            counts["other"] += 1
            for name, c in near.items():
                if all(abs(a - b) < 10 for a, b in zip(px, c, strict=True)):
                    counts[name] += 1
    assert counts["other"] > width * height // 20, "the page is (almost) blank"
    assert counts["open"] > 2000, "no open hours drawn"
    assert counts["late"] > 100, counts
    assert counts["met"] > 100, counts


HOSTILE_TICKET = "T-<img src=x onerror=\"document.title='pwned-ticket'\">"
HOSTILE_TITLE = "<script>document.title='pwned-title'</script>"
HOSTILE_SEVERITY = "<svg onload=\"document.title='pwned-severity'\">"


def test_text_from_facts_is_text_never_markup(browser: Browser, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hostile.db'}"
    policy = tmp_path / "sla-b.toml"  # the support example as a first version (no effective_from)
    policy.write_text((DOCS / "sla-b-support.toml").read_text().replace('effective_from = "2026-10"\n', ""))
    run(url, "contract", "register", str(policy))
    lines = [
        {"type": "ticket_opened", "contract": "sla-b-2026", "ticket": HOSTILE_TICKET,
         "at": "2026-10-06T09:00:00+02:00", "severity": "production_down", "title": HOSTILE_TITLE},
        {"type": "ticket_responded", "ticket": HOSTILE_TICKET, "at": "2026-10-06T11:00:00+02:00"},
        {"type": "ticket_opened", "contract": "sla-b-2026", "ticket": "T-2",
         "at": "2026-10-07T09:00:00+02:00", "severity": HOSTILE_SEVERITY, "title": HOSTILE_TITLE},
    ]
    feed = tmp_path / "hostile.ndjson"
    feed.write_text("".join(json.dumps(line) + "\n" for line in lines))
    run(url, "import", str(feed))
    html, report = support_page(tmp_path, url, *MONTH)
    raw = html.read_text()
    for tag in ("<script", "<img", "<svg onload"):
        assert tag not in raw
    dom = parse(browser.dom(html))
    check_matches_json(dom, report)
    assert not dom.find("script")
    assert not dom.find("img")
    assert len(dom.find("svg")) == 1  # the strip, and no other
    assert not [n for n in dom.find(None) if any(k.startswith("on") for k in n.attrs)]
    assert dom.find("title")[0].text() == "Support sla-b-2026 2026-10", "a script ran"
    text = dom.text()
    assert HOSTILE_TICKET in text
    assert report["unknown_severity"] == ["T-2"]
    assert json.dumps(HOSTILE_TITLE)[1:-1] in text  # in the facts listed, as recorded
    assert dom.find("tr", class_="ticket")[0].attrs["data-ticket"] == HOSTILE_TICKET
    assert HOSTILE_TICKET in dom.find("g", class_="ticket")[0].find("title")[0].text()
