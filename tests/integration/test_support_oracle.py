"""`ledger support` against an independent model of INTERFACE.md section 6 (tests/oracle_support.py).

Random policies (support zones with DST, `DAYS HH:MM-HH:MM` and continuous weekly spans, `24:00`,
whole-day holidays, closures past midnight and from the day before, per-ticket, business-day and
mean targets, engagement, recovery, quota, maintenance and force majeure, a version 2 from another
month, no `[support]` at all) and random facts (severity changes before and after the response,
several responses, late responses recorded later, classifications, time logged, unknown tickets,
another contract's tickets, downtime, engagements, recoveries, pins recorded part-way and by
`calendar pin`) go through the real CLI (`init`, `contract register`/`amend`, `import`, `events`,
`support --format json` at the head, `--position` and `--as-of`, `support --month`, `calendar
show`) on SQLite and PostgreSQL; every figure is compared with the model's, and the two stores'
JSON with each other. `SUPPORT_ORACLE_EXAMPLES` raises the number of examples.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import cli
from tests.oracle_support import US, Holidays, Replay, from_us, instant, month_bounds, support_model, to_us
from tests.pgserver import DatabasePool

EXAMPLES = int(os.environ.get("SUPPORT_ORACLE_EXAMPLES", "4"))
C, SERVICE = "c-1", "svc"
ZONES = ("Europe/Zurich", "America/Toronto", "Australia/Sydney", "UTC", "Europe/London", "America/New_York")
MONTHS = ("2025-03", "2025-10", "2025-11", "2025-12", "2026-01", "2026-03", "2026-04", "2026-10")
COUNTRIES = ("CH", "CA", "CA-ON", "GB", "AU", "FR", "US")
SEVERITIES = ("s1", "s2", "s3", "s4")
KINDS = ("account", "bug", "global_issue")
LATEST = datetime(2026, 12, 5, tzinfo=UTC)  # recorded_at may not be later than the import's own instant
Q = 15 * 60 * US  # facts fall on a quarter-hour grid, so they meet span bounds and deadlines exactly


@dataclass
class Case:
    policy: dict[str, Any]
    month: str
    facts: list[dict[str, Any]]
    registered_here: bool  # `contract register` on the store under test, else the contract fact imported
    pin: tuple[str, int] | None = None  # `ledger calendar pin` of that country from that year, at the end
    contract_at: int = 0  # how many facts are recorded before the contract (when imported)
    no_support: bool = False  # the policy registered has no [support]: it promises nothing
    amended: tuple[str, dict[str, Any]] | None = None  # (effective_from, [support]) of a version 2
    replays: list[tuple[str, int]] = field(default_factory=list)  # ("position", i) / ("as_of", index)


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return str(v)


def policy_toml(policy: dict[str, Any]) -> str:
    out = []
    for section in ("contract", "availability", "maintenance", "support"):
        if section not in policy:
            continue
        out.append(f"[{section}]")
        out += [f"{k} = {_toml_value(v)}" for k, v in policy[section].items()]
    return "\n".join(out) + "\n"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


DAY = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# Wall-clock bounds: any quarter hour, often the hours daylight saving skips or repeats.
MINUTES = st.one_of(st.integers(0, 95).map(lambda q: q * 15), st.sampled_from([60, 90, 120, 150, 180]))


@st.composite
def hours_entry(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        a, b = draw(st.integers(0, 6)), draw(st.integers(0, 6))
        s, e = draw(MINUTES), draw(MINUTES)
        if (a, s) == (b, e):
            e = (e + 60) % 1440
        return f"{DAY[a]} {_hhmm(s)} - {DAY[b]} {_hhmm(e)}"
    days = draw(st.sampled_from(["Mon-Fri", "Mon", "Sat,Sun", "Sat-Mon", "Tue,Thu", "Mon-Sun",
                                 "Wed-Fri,Sun"]))
    s = min(draw(MINUTES), 1425)
    e = draw(st.one_of(st.integers(s // 15 + 1, 96).map(lambda q: q * 15),
                       st.sampled_from([1440, min(s + 60, 1440)])))
    return f"{days} {_hhmm(s)}-{'24:00' if e == 1440 else _hhmm(e)}"


@st.composite
def durations(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(["15m", "30m", "45m", "90m", "1h", "2h", "4h", "8h"]))


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    ctz = draw(st.sampled_from(ZONES))
    contract: dict[str, Any] = {"id": C, "customer": "Oracle SA", "service": SERVICE, "timezone": ctz,
                                "currency": "EUR"}
    if draw(st.booleans()):
        contract["annual_fee"] = draw(st.sampled_from(["6500.00", "12000.00", "999.99", "25000.00"]))
    else:
        contract["monthly_fee"] = draw(st.sampled_from(["500.00", "1200.00", "83.33"]))
    availability = {"target": "99.9", "formula": "downtime_over_total", "outage_when": "any",
                    "probes": ["p"], "excludable": draw(st.sampled_from([[], ["force_majeure"]]))}
    support: dict[str, Any] = {}
    if draw(st.booleans()):
        support["timezone"] = draw(st.sampled_from(ZONES))
    support["hours"] = draw(st.one_of(st.lists(hours_entry(), min_size=1, max_size=3),
                                      st.just(["Mon-Sun 00:00-24:00"])))
    if draw(st.booleans()):
        support["holidays"] = draw(st.sampled_from(COUNTRIES))
    support["closures"] = draw(st.lists(st.builds(
        lambda cc, prefix, s, e: {"holidays": cc, "window": f"{prefix}{_hhmm(s)}-{_hhmm(e)}"},
        st.sampled_from(COUNTRIES), st.sampled_from(["", "-1 "]), MINUTES, st.one_of(MINUTES, st.just(1440))),
        max_size=2))
    sevs = draw(st.lists(st.sampled_from(SEVERITIES), min_size=1, max_size=4, unique=True))
    targets = []
    for sev in sevs:
        how = draw(st.sampled_from(["open", "open", "bd", "mean"]))
        if how == "bd":
            n = draw(st.integers(1, 3))
            targets.append({"severity": sev, "first_response": f"{n} business day{'s' if n > 1 else ''}"})
        else:
            targets.append({"severity": sev, ("first_response" if how == "open" else "mean_first_response"):
                            draw(durations())})
    support["targets"] = targets
    if draw(st.booleans()):
        support["engagement"] = {"level": "L3", "within": draw(st.sampled_from(["10m", "30m", "1h"]))}
    if draw(st.booleans()):
        support["recovery"] = {"max_data_loss": draw(st.sampled_from(["1h", "24h", "90m"]))}
    if draw(st.booleans()):
        quota: dict[str, Any] = {"hours_per": draw(st.sampled_from(["1000", "1500", "333.33"])),
                                 "year_starts": draw(st.sampled_from(["01-01", "03-15", "10-01", "11-20"]))}
        if draw(st.booleans()):
            quota["exempt"] = draw(st.lists(st.sampled_from(["bug", "global_issue"]), unique=True))
        if draw(st.booleans()):
            quota["warn_below"] = draw(st.sampled_from(["2h", "30m", "100h"]))
        support["quota"] = quota
    policy = {"contract": contract, "availability": availability, "support": support}
    if draw(st.booleans()):
        policy["maintenance"] = {"min_notice": "24h", "outside_business_hours": False,
                                 "nonconforming": draw(st.sampled_from(["downtime", "emergency"]))}
    return policy


def _iso(us: int, tz: str) -> str:
    return from_us(us).astimezone(ZoneInfo(tz)).isoformat()


def _quarters(policy: dict[str, Any], severity: str) -> int:
    """Quarter hours of the severity's target (a business day: 96), 4 for an unknown severity."""
    rule = next((r for r in policy["support"]["targets"] if r["severity"] == severity), {})
    text = rule.get("first_response") or rule.get("mean_first_response") or "1h"
    if text.endswith("h"):
        return int(text[:-1]) * 4
    if text.endswith("m"):
        return int(text[:-1]) // 15
    return int(text.split()[0]) * 96


def _transitions(ms: int, me: int, policy: dict[str, Any]) -> list[int]:
    """The instants in the month at which the contract's or the support clock's zone changes offset."""
    own = policy["contract"]["timezone"]
    zones = {own, policy["support"].get("timezone") or own}
    out = []
    for name in zones:
        tz = ZoneInfo(name)
        t = ms - ms % (3600 * US)
        while t < me:
            if from_us(t).astimezone(tz).utcoffset() != from_us(t + 3600 * US).astimezone(tz).utcoffset():
                out.append(t + 3600 * US)
            t += 3600 * US
    return sorted(out)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    policy = draw(policies())
    month = draw(st.sampled_from(MONTHS))
    ms, me = month_bounds(month, ZoneInfo(policy["contract"]["timezone"]))
    span = (me - ms) // Q
    zone = draw(st.sampled_from(ZONES))  # the offset the facts are written in

    shifts = _transitions(ms, me, policy)

    def when(lo: int = -3 * 96, hi: int = 3 * 96) -> int:
        if shifts and not draw(st.integers(0, 3)):  # near a daylight-saving change
            return draw(st.sampled_from(shifts)) + draw(st.integers(-2 * 96, 2 * 96)) * Q
        return ms + draw(st.integers(lo, span + hi)) * Q

    facts: list[tuple[int, dict[str, Any]]] = []  # (instant it happened, fact)

    def add(at_us: int | None, fact: dict[str, Any]) -> None:
        facts.append((at_us if at_us is not None else when(), fact))

    names = [t["severity"] for t in policy["support"]["targets"]] + ["unknown"]
    due: list[int] = []  # instants at which a ticket's target time would be up on a clock always open
    within = int(policy["support"].get("engagement", {}).get("within", "10m")[:-1]) * \
        (60 if policy["support"].get("engagement", {}).get("within", "10m")[-1] == "h" else 1)
    for i in range(draw(st.integers(0, 7))):
        tid = f"T-{i}"
        opened = when(-96, 96) + draw(st.sampled_from([0, 0, 0, 0, 7 * US + 123_456]))
        contract = C if draw(st.integers(0, 9)) else "c-other"
        add(opened, {"type": "ticket_opened", "contract": contract, "ticket": tid, "at": _iso(opened, zone),
                     "severity": draw(st.sampled_from(names)),
                     **({"title": "Ça ne marche pas \u2014 <b>"} if draw(st.booleans()) else {})})
        if contract == C and not draw(st.integers(0, 7)):  # opened again: the earliest counts
            again = opened + draw(st.integers(-96, 96)) * Q
            add(again, {"type": "ticket_opened", "contract": C, "ticket": tid, "at": _iso(again, zone),
                        "severity": facts[-1][1]["severity"]})
            opened = min(opened, again)
        # changes at distinct instants: from the opening's on, and now and then one dated before it
        for k in draw(st.lists(st.integers(-4, 4 * 96 * 5), max_size=2, unique=True)):
            t = opened + k * Q
            add(t, {"type": "ticket_severity_changed", "ticket": tid, "at": _iso(t, zone),
                    "severity": draw(st.sampled_from(names))})
        exact_q = _quarters(policy, facts[-1][1]["severity"])
        due.append(opened + exact_q * Q)
        for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):  # now and then just when the time is up
            k = draw(st.sampled_from([0, 1, 2, 4, 8, 16, 40, 100, 300, 1000, 2900, exact_q, exact_q]))
            t = opened + k * Q
            t += draw(st.sampled_from([0, 0, Q, -Q, 59 * US + 999_999])) if t > opened + Q else 0
            add(t, {"type": "ticket_responded", "ticket": tid, "at": _iso(t, zone)})
        if draw(st.booleans()):  # closing a ticket changes no figure
            t = opened + draw(st.integers(0, 96 * 5)) * Q
            add(t, {"type": "ticket_resolved", "ticket": tid, "at": _iso(t, zone)})
        for _ in range(draw(st.integers(0, 2))):
            add(None, {"type": "ticket_classified", "ticket": tid, "kind": draw(st.sampled_from(KINDS))})
        for _ in range(draw(st.integers(0, 2))):
            t = opened + draw(st.integers(0, 96 * 40)) * Q - draw(st.sampled_from([0, 0, 96 * 200])) * Q
            add(t, {"type": "support_time_logged", "ticket": tid, "at": _iso(t, zone),
                    "seconds": draw(st.integers(1, 40)) * 900})
    if draw(st.booleans()):  # a ticket never opened
        t = when()
        add(t, {"type": "ticket_responded", "ticket": "T-ghost", "at": _iso(t, zone)})
        add(t, {"type": "support_time_logged", "ticket": "T-ghost", "at": _iso(t, zone), "seconds": 3600})
    for _ in range(draw(st.integers(0, 3))):  # probe p (the policy's) and q (ignored)
        s = when()
        e = s + draw(st.integers(1, 96 * 3)) * Q
        probe = draw(st.sampled_from(["p", "p", "q"]))
        add(s, {"type": "probe_failed", "service": SERVICE, "probe": probe, "at": _iso(s, zone)})
        if draw(st.booleans()):  # engineers engaged soon after (or not soon enough)
            t = s + draw(st.sampled_from([0, 5, within, within, within + 1, 30])) * 60 * US
            add(t, {"type": "support_engaged", "service": SERVICE,
                    "level": draw(st.sampled_from(["L3", "L3", "L1"])), "at": _iso(t, zone)})
        if draw(st.integers(0, 4)):
            add(e, {"type": "probe_recovered", "service": SERVICE, "probe": probe, "at": _iso(e, zone)})
    if draw(st.booleans()):
        s = when()
        add(s, {"type": "incident_opened", "service": SERVICE, "incident": "inc-1", "at": _iso(s, zone),
                "impact": "outage"})
        e = s + draw(st.integers(1, 96)) * Q
        add(e, {"type": "incident_resolved", "incident": "inc-1", "at": _iso(e, zone)})
    for i in range(draw(st.integers(0, 2))):  # maintenance and force majeure: outage that is not D
        s = when()
        e = s + draw(st.integers(1, 96)) * Q
        if draw(st.booleans()):
            notice = draw(st.sampled_from([1, 95, 96, 200])) * Q
            add(s - notice, {"type": "maintenance_announced", "service": SERVICE, "maintenance": f"m-{i}",
                             "announced_at": _iso(s - notice, zone), "starts_at": _iso(s, zone),
                             "ends_at": _iso(e, zone)})
            if not draw(st.integers(0, 3)):
                add(s - Q, {"type": "maintenance_cancelled", "maintenance": f"m-{i}",
                            "at": _iso(s - Q, zone)})
        else:
            add(s, {"type": "force_majeure_declared", "service": SERVICE, "declaration": f"fm-{i}",
                    "starts_at": _iso(s, zone), "ends_at": _iso(e, zone), "reason": "storm"})
            if not draw(st.integers(0, 3)):
                add(None, {"type": "exclusion_revoked", "ref": f"fm-{i}", "reason": "not a storm"})
    for _ in range(draw(st.integers(0, 3))):
        t = when() + draw(st.sampled_from([0, 60 * US, 7 * 60 * US]))
        add(t, {"type": "support_engaged", "service": draw(st.sampled_from([SERVICE, SERVICE, "other"])),
                "level": draw(st.sampled_from(["L3", "L3", "L1"])), "at": _iso(t, zone)})
    for i in range(draw(st.integers(0, 3))):
        t = when()
        back = draw(st.integers(1, 8 * 30)) * Q
        add(t, {"type": "recovery_performed", "service": draw(st.sampled_from([SERVICE, SERVICE, "other"])),
                "recovery": f"r-{i}", "at": _iso(t, zone), "restored_to": _iso(t - back, zone)})
    sup = policy["support"]
    countries = sorted({sup.get("holidays")} - {None} | {c["holidays"] for c in sup["closures"]})
    first = from_us(ms).date()
    for _ in range(draw(st.integers(0, 2))):
        cc = draw(st.sampled_from([*countries, "DE"]))  # DE: a pin no clock reads
        year = draw(st.sampled_from([first.year, first.year, first.year + 1]))
        days = draw(st.lists(st.integers(-10, 60), max_size=6, unique=True))
        dates = sorted({(first + timedelta(days=d)).isoformat() for d in days
                        if (first + timedelta(days=d)).year == year})
        add(None, {"type": "holidays_pinned", "country": cc, "year": year, "dates": dates})
    # Recorded in the order they became known: some late (hours, days, months).
    known: list[tuple[int, int, dict[str, Any]]] = []
    for i, (at_us, fact) in enumerate(facts):
        late = draw(st.sampled_from([0, 0, 0, 1, 8, 96, 96 * 20, 96 * 40])) * Q
        known.append((min(at_us + late + US, to_us(LATEST)), i, fact))
    known.sort(key=lambda k: (k[0], k[1]))
    out = []
    for n, (rec, _, fact) in enumerate(known):
        fact = {**fact, "id": f"f{n}"}
        if fact.get("at"):
            assert to_us(instant(fact["at"])) < rec or rec == to_us(LATEST)
        out.append((rec, fact))
    registered_here = draw(st.booleans())
    facts_out = []
    for rec, fact in out:
        if not registered_here:
            fact["recorded_at"] = from_us(rec).isoformat().replace("+00:00", "Z")
        facts_out.append(fact)
    case = Case(policy, month, facts_out, registered_here)
    case.no_support = not draw(st.integers(0, 15))
    if not draw(st.integers(0, 3)):  # a version 2 with other support terms, from this month or another
        y, m = int(month[:4]), int(month[5:])
        shift = draw(st.sampled_from([-1, 0, 1]))
        y, m = (y, m + shift) if 1 <= m + shift <= 12 else (y + shift, (m + shift - 1) % 12 + 1)
        case.amended = (f"{y:04d}-{m:02d}", draw(policies())["support"])
    if not registered_here and draw(st.booleans()):
        case.contract_at = draw(st.integers(0, len(facts_out)))
    if countries and draw(st.booleans()):
        case.pin = (draw(st.sampled_from(countries)), from_us(ms).year + draw(st.sampled_from([-1, 0])))
    n = len(facts_out) + 1
    for _ in range(draw(st.integers(1, 2))):
        case.replays.append(("position", draw(st.integers(1, n))))
    if not registered_here and facts_out:
        for _ in range(draw(st.integers(1, 2))):
            case.replays.append(("as_of", draw(st.integers(0, 3 * len(facts_out)))))
        if draw(st.booleans()):  # a replay point on the quarter-hour grid, as deadlines are
            case.replays.append(("as_of_instant", ms + draw(st.integers(0, span)) * Q))
        if due and draw(st.booleans()):  # just when a ticket's time is up
            case.replays.append(("as_of_instant", draw(st.sampled_from(due))))
    return case


class Cli:
    def __init__(self, url: str) -> None:
        self.url, self.runner = url, CliRunner()

    def __call__(self, *args: str, input: bytes | None = None) -> str:
        out = self.runner.invoke(cli, ["--store", self.url, *args], input=input)
        assert out.exit_code == 0, (args, out.output, out.exception)
        return out.output

    def refused(self, *args: str) -> str | None:
        """None when the command fails in one line without a traceback, else what it did."""
        out = self.runner.invoke(cli, ["--store", self.url, *args])
        if out.exit_code in (1, 2) and len(out.output.strip().splitlines()) == 1 and (
                out.exception is None or isinstance(out.exception, SystemExit)):
            return None
        return f"exit {out.exit_code}: {out.output!r} {out.exception!r}"


def _contract_lines(files: list[Path], tmp: Path, recorded_at: datetime) -> list[str]:
    """The contract's facts as `ledger events` prints them, to import with a recorded_at of ours."""
    scratch = Cli(f"sqlite:///{tmp / 'scratch.db'}")
    scratch("init")
    scratch("contract", "register", str(files[0]))
    for file in files[1:]:
        scratch("contract", "amend", str(file))
    out = []
    for text in scratch("events").splitlines():
        line = json.loads(text)
        line.pop("position")
        line["recorded_at"] = recorded_at.isoformat().replace("+00:00", "Z")
        out.append(json.dumps(line))
    return out


def _in_force(case: Case, policy: dict[str, Any], recorded: list[dict[str, Any]],
              position: int) -> tuple[dict[str, Any], int]:
    """The version in force for the case's month at a replay position (section 3), and its number."""
    amended = next((r["position"] for r in recorded if r["type"] == "contract_amended"), None)
    if case.amended and amended is not None and amended <= position and case.amended[0] <= case.month:
        return {**policy, "support": case.amended[1]}, 2
    return policy, 1


def run_case(case: Case, url: str, tmp: Path, outputs: list[str] | None = None) -> list[str]:
    """Every difference between the store's `ledger support` figures and the model's (outputs: the JSON)."""
    led = Cli(url)
    policy_file = tmp / "policy.toml"
    policy = {k: v for k, v in case.policy.items() if k != "support" or not case.no_support}
    policy_file.write_text(policy_toml(policy))
    files = [policy_file]
    if case.amended:
        files.append(tmp / "amended.toml")
        version2 = {**policy, "contract": {**policy["contract"], "effective_from": case.amended[0]},
                    "support": case.amended[1]}
        files[1].write_text(policy_toml(version2))
    led("init")
    lines = [json.dumps(f) for f in case.facts]
    if case.registered_here:
        led("contract", "register", str(policy_file))
        for file in files[1:]:
            led("contract", "amend", str(file))
    else:
        # registered among the facts (its service's and tickets' facts may come first)
        at = min(case.contract_at, len(case.facts))
        stamp = instant(case.facts[at]["recorded_at"]) if at < len(case.facts) else LATEST
        lines[at:at] = _contract_lines(files, tmp, stamp)
    if lines:
        led("import", "-q", "-", input=("\n".join(lines) + "\n").encode())
    if case.pin:
        country, year = case.pin
        led("calendar", "pin", "--country", country, "--years", f"{year}-{year + 1}")
    recorded = [json.loads(x) for x in led("events").splitlines()]
    by_id = {r["id"]: r for r in recorded}
    facts = []
    for f in case.facts:
        r = by_id[f["id"]]
        facts.append({**f, "position": r["position"], "recorded_at": r["recorded_at"]})
    mine = {f["id"] for f in case.facts}
    facts += [r for r in recorded if r["type"] == "holidays_pinned" and r["id"] not in mine]
    stamps = sorted({to_us(instant(r["recorded_at"])) for r in recorded})
    last = len(recorded)
    problems: list[str] = []
    points: list[tuple[list[str], Replay]] = [([], Replay(last, None))]
    for how, k in case.replays:
        if how == "position":
            pos = min(k, last)
            at = to_us(instant(recorded[pos - 1]["recorded_at"]))
            points.append((["--position", str(pos)], Replay(pos, at)))
        else:
            at = k if how == "as_of_instant" else stamps[min(k // 3, len(stamps) - 1)] + (k % 3 - 1) * US
            at = max(at, stamps[0])
            pos = max(r["position"] for r in recorded if to_us(instant(r["recorded_at"])) <= at)
            points.append((["--as-of", _iso(at, policy["contract"]["timezone"])], Replay(pos, at)))
    heads: list[dict[str, Any]] = []
    registered = next(r["position"] for r in recorded if r["type"] == "contract_registered")
    for args, replay in points:
        if replay.position < registered:  # the contract was not registered yet at that point
            if (what := led.refused("support", "--contract", C, "--month", case.month, *args)) is not None:
                problems.append(f"{' '.join(args)} before the contract: {what}")
            continue
        text = led("support", "--contract", C, "--month", case.month, "--format", "json", *args)
        if outputs is not None:
            outputs.append(text)
        got = json.loads(text)
        heads.append(got)
        in_force, version = _in_force(case, policy, recorded, replay.position)
        want = support_model(in_force, facts, case.month, replay)
        want["policy_version"] = version
        problems += [f"{' '.join(args) or 'head'}: {p}" for p in compare(got, want)]
    every = json.loads(led("support", "--month", case.month, "--format", "json"))
    if every != [heads[0]]:
        problems.append(f"support --month without --contract: {every}")
    hol = Holidays([f for f in facts if f["type"] == "holidays_pinned"])
    sup = policy.get("support", {"closures": []})
    year = int(case.month[:4])
    for country in sorted({sup.get("holidays")} - {None} | {c["holidays"] for c in sup["closures"]}):
        shown = led("calendar", "show", "--country", country, "--year", str(year)).splitlines()
        want_shown = [f"{country} {year}: {hol.source(country, year)}",
                      *sorted(d.isoformat() for d in hol.dates(country, year))]
        if shown != want_shown:
            problems.append(f"calendar show {country} {year}: ledger {shown}, model {want_shown}")
    return problems


def _t(text: str | None) -> int | None:
    return None if text is None else to_us(instant(text))


def _s(value: Any) -> Decimal:
    return Decimal(str(value))


def compare(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def check(what: str, a: Any, b: Any) -> None:
        if a != b:
            out.append(f"{what}: ledger {a!r}, model {b!r}")

    check("as_of_position", got["as_of_position"], want["as_of_position"])
    check("header", (got["contract"], got["month"], got["timezone"], got["policy_version"]),
          (C, want["month"], want["timezone"], want["policy_version"]))
    check("ticket ids", [t["ticket"] for t in got["tickets"]], [t["ticket"] for t in want["tickets"]])
    check("unknown_severity", sorted(got["unknown_severity"]), want["unknown_severity"])
    mine = {t["ticket"]: t for t in want["tickets"]}
    for t in got["tickets"]:
        w = mine.get(t["ticket"])
        if w is None:
            continue
        name = t["ticket"]
        for key in ("severity", "kind", "target", "status"):
            check(f"{name}.{key}", t[key], w[key])
        check(f"{name}.opened_at", _t(t["opened_at"]), w["opened_at"])
        check(f"{name}.responded_at", _t(t["responded_at"]), w["responded_at"])
        check(f"{name}.deadline", _t(t["deadline"]), w["deadline"])
        check(f"{name}.response_seconds", _s(t["response_seconds"]), Decimal(w["response_us"]) / US)
    check("targets", [(x["severity"], x["target"], x["kind"]) for x in got["targets"]],
          [(x["severity"], x["target"], x["kind"]) for x in want["targets"]])
    for g, w in zip(got["targets"], want["targets"], strict=False):
        if w["kind"] == "per_ticket":
            check(f"target {w['severity']}", {k: g.get(k) for k in ("tickets", "met", "breached", "pending")},
                  {k: w[k] for k in ("tickets", "met", "breached", "pending")})
        else:
            check(f"target {w['severity']}.tickets", g["tickets"], w["tickets"])
            check(f"target {w['severity']}.mean_seconds type", type(g["mean_seconds"]),
                  type(None) if w["mean_seconds"] is None else str)
            check(f"target {w['severity']}.mean_seconds",
                  None if g["mean_seconds"] is None else Decimal(g["mean_seconds"]), w["mean_seconds"])
            check(f"target {w['severity']}.met", g["met"], w["met"])
    if want["engagements"] is None:
        check("engagements", got["engagements"], None)
    else:
        check("engagements", [(_t(e["downtime_start"]), _t(e["engaged_at"]), _s(e["seconds"]), e["status"])
                              for e in got["engagements"] or []],
              [(e["downtime_start"], e["engaged_at"], Decimal(e["seconds_us"]) / US, e["status"])
               for e in want["engagements"]])
    if want["recoveries"] is None:
        check("recoveries", got["recoveries"], None)
    else:
        check("recoveries", sorted((r["recovery"], _t(r["at"]), _t(r["restored_to"]),
                                    _s(r["data_loss_seconds"]), r["status"])
                                   for r in got["recoveries"] or []),
              sorted((r["recovery"], r["at"], r["restored_to"], Decimal(r["data_loss_us"]) / US, r["status"])
                     for r in want["recoveries"]))
    if want["quota"] is None:
        check("quota", got["quota"], None)
    elif got["quota"] is None:
        check("quota", None, "a quota")
    else:
        q, w = got["quota"], want["quota"]
        check("quota.year", (_t(q["year_start"]), _t(q["year_end"])), (w["year_start"], w["year_end"]))
        for key in ("granted", "used", "exempt", "remaining"):
            check(f"quota.{key}", _s(q[f"{key}_seconds"]), Decimal(w[f"{key}_us"]) / US)
        check("quota.warning", q["warning"], w["warning"])
    hol: Holidays = want["holidays"]
    listed = {(h["country"], h["year"]) for h in got["holidays"]}
    for h in got["holidays"]:
        check(f"holidays {h['country']} {h['year']}", h["source"], hol.source(h["country"], h["year"]))
        if h["country"] not in want["countries"]:  # the policy has no [calendar]: only the clock's
            out.append(f"holidays: {h['country']} named, not a country of the clock")
    for t in want["tickets"]:  # a ticket's clock looked at the day it was opened
        year = from_us(t["opened_at"]).astimezone(want["support_zone"]).year
        for country in want["countries"]:
            if (country, year) not in listed:
                out.append(f"holidays: {country} {year} not named, ticket {t['ticket']} opened then")
    return out


def check_both(case: Case, pool: DatabasePool) -> list[str]:
    """The case on SQLite and on PostgreSQL: each against the model, and the two outputs byte for byte."""
    with tempfile.TemporaryDirectory() as tmp:
        lite: list[str] = []
        problems = [f"sqlite {p}" for p in run_case(case, f"sqlite:///{tmp}/ledger.db", Path(tmp), lite)]
    with tempfile.TemporaryDirectory() as tmp, pool.database() as url:
        pg: list[str] = []
        problems += [f"postgres {p}" for p in run_case(case, url, Path(tmp), pg)]
    if lite != pg:
        problems.append(f"the stores differ: {lite} against {pg}")
    return problems


@pytest.fixture(scope="module")
def pg_stores(_pg_stores: DatabasePool) -> DatabasePool:
    return _pg_stores


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=cases())
def test_support_figures_equal_the_model_on_both_stores(case: Case, pg_stores: DatabasePool) -> None:
    problems = check_both(case, pg_stores)
    assert not problems, "\n".join(problems[:20])
