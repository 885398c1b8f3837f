"""A reference model of INTERFACE.md section 6 (support figures), written from the spec text alone.

Independent of the ledger's code on purpose: only the standard library, ``zoneinfo``, ``Decimal``
and the ``holidays`` package (the spec's source of public holidays). Open time is interval
arithmetic over UTC microseconds; every wall-clock bound is read with ``fold=0`` (docs/decisions.md,
issue 18 point 7). Where the spec is silent the model follows docs/decisions.md (issue 18): a
deadline null when the clock never opens within 60 weeks, "N business days" landing while closed
moves to the next open instant, the severity in force is the latest change at or before the first
response or the horizon, the quota's year holds the month's first instant and counts logs up to the
month's end or the year's end.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from fractions import Fraction
from typing import Any, Final
from zoneinfo import ZoneInfo

import holidays as holidays_package

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
US = 1_000_000
WEEK_US = 7 * 86400 * US
HORIZON_WEEKS = 60

Fact = dict[str, Any]


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def to_us(at: datetime) -> int:
    delta = at.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * US + delta.microseconds


def from_us(us: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=us)


def duration_us(text: str) -> int:
    m = re.fullmatch(r"(\d+)(m|h)", text)
    assert m, text
    return int(m.group(1)) * (60 if m.group(2) == "m" else 3600) * US


def business_days(text: str) -> int | None:
    m = re.fullmatch(r"(\d+) business days?", text)
    return int(m.group(1)) if m else None


def wall(day: date, minutes: int, tz: ZoneInfo) -> int:
    """Local ``day`` at ``minutes`` after its midnight (1440: the next midnight), fold=0, in UTC us."""
    day = day + timedelta(days=minutes // 1440)
    minutes %= 1440
    return to_us(datetime(day.year, day.month, day.day, minutes // 60, minutes % 60, tzinfo=tz))


def hhmm(text: str) -> int:
    h, m = text.split(":")
    return int(h) * 60 + int(m)


def day_set(text: str) -> set[int]:
    out: set[int] = set()
    for item in text.split(","):
        if "-" in item:
            a, b = (DAY_NAMES.index(x) for x in item.split("-"))
            d = a
            while True:
                out.add(d)
                if d == b:
                    break
                d = (d + 1) % 7
        else:
            out.add(DAY_NAMES.index(item))
    return out


def union(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def subtract(opens: list[tuple[int, int]], closed: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    closed = union(closed)
    j = 0
    for s, e in opens:
        cur = s
        while j < len(closed) and closed[j][1] <= cur:
            j += 1
        k = j
        while k < len(closed) and closed[k][0] < e:
            cs, ce = closed[k]
            if cs > cur:
                out.append((cur, min(cs, e)))
            cur = max(cur, ce)
            if cur >= e:
                break
            k += 1
        if cur < e:
            out.append((cur, e))
    return out


class Holidays:
    """Public holidays of a country-year: the latest pin seen, else the package (section 6.1)."""

    def __init__(self, pins: list[Fact]) -> None:
        self.pins: dict[tuple[str, int], tuple[int, set[date]]] = {}
        for p in pins:
            key = (p["country"], p["year"])
            if key not in self.pins or self.pins[key][0] < p["position"]:
                self.pins[key] = (p["position"], {date.fromisoformat(d) for d in p["dates"]})

    def dates(self, country: str, year: int) -> set[date]:
        if (country, year) in self.pins:
            return self.pins[(country, year)][1]
        cc, _, sub = country.partition("-")
        return set(holidays_package.country_holidays(cc, subdiv=sub or None, years=year).keys())

    def source(self, country: str, year: int) -> str:
        if (country, year) in self.pins:
            return "pinned"
        return f"holidays {holidays_package.__version__}"

    def between(self, country: str, first: date, last: date) -> set[date]:
        out: set[date] = set()
        for y in range(first.year, last.year + 1):
            out |= {d for d in self.dates(country, y) if first <= d <= last}
        return out


class Clock:
    """Open time of a `[support]` clock between two local dates (section 6.2)."""

    def __init__(self, support: dict[str, Any], tz: ZoneInfo, hol: Holidays, first: date, last: date):
        self.tz, self.support, self.hol = tz, support, hol
        spans: list[tuple[int, int]] = []
        pad_first, pad_last = first - timedelta(days=8), last + timedelta(days=8)
        d = pad_first
        while d <= pad_last:
            for entry in support["hours"]:
                cont = re.fullmatch(r"(\w{3}) (\d\d:\d\d) - (\w{3}) (\d\d:\d\d)", entry)
                if cont:
                    ws, s = DAY_NAMES.index(cont.group(1)), hhmm(cont.group(2))
                    we, e = DAY_NAMES.index(cont.group(3)), hhmm(cont.group(4))
                    if d.weekday() != ws:
                        continue
                    start_w, end_w = ws * 1440 + s, we * 1440 + e
                    if end_w <= start_w:
                        end_w += 7 * 1440
                    end_day = d + timedelta(days=end_w // 1440 - ws)
                    spans.append((wall(d, s, tz), wall(end_day, end_w % 1440, tz)))
                else:
                    days, _, times = entry.partition(" ")
                    if d.weekday() not in day_set(days):
                        continue
                    a, b = times.split("-")
                    spans.append((wall(d, hhmm(a), tz), wall(d, hhmm(b), tz)))
            d += timedelta(days=1)
        closed: list[tuple[int, int]] = []
        self.whole_days: set[date] = set()
        if support.get("holidays"):
            self.whole_days = hol.between(support["holidays"], pad_first, pad_last + timedelta(days=2))
            closed += [(wall(h, 0, tz), wall(h, 1440, tz)) for h in self.whole_days]
        for c in support.get("closures", []):
            m = re.fullmatch(r"(-1 )?(\d\d:\d\d)-(\d\d:\d\d)", c["window"])
            assert m, c
            s, e = hhmm(m.group(2)), hhmm(m.group(3))
            for h in hol.between(c["holidays"], pad_first, pad_last + timedelta(days=2)):
                base = h - timedelta(days=1) if m.group(1) else h
                end_day = base if e > s else base + timedelta(days=1)
                closed.append((wall(base, s, tz), wall(end_day, e, tz)))
        self.lo, self.hi = wall(first, 0, tz), wall(last, 0, tz)
        self.opens = subtract(union(spans), closed)
        self.starts = [s for s, _ in self.opens]

    def between(self, a: int, b: int) -> int:
        total = 0
        i = max(0, bisect.bisect_right(self.starts, a) - 1)
        for s, e in self.opens[i:]:
            if s >= b:
                break
            total += max(0, min(e, b) - max(s, a))
        return total

    def add(self, a: int, dur: int) -> int | None:
        i = max(0, bisect.bisect_right(self.starts, a) - 1)
        left = dur
        limit = a + HORIZON_WEEKS * WEEK_US
        for s, e in self.opens[i:]:
            if s > limit:
                return None
            if e <= a:
                continue
            s = max(s, a)
            if e - s >= left:
                return s + left if s + left <= limit else None
            left -= e - s
        raise AssertionError("model range too short")

    def next_open(self, t: int) -> int | None:
        i = bisect.bisect_right(self.starts, t) - 1
        if i >= 0 and self.opens[i][0] <= t < self.opens[i][1]:
            return t
        if i + 1 < len(self.opens):
            s = self.opens[i + 1][0]
            return s if s <= t + HORIZON_WEEKS * WEEK_US else None
        raise AssertionError("model range too short")

    def add_business_days(self, t: int, n: int) -> int | None:
        start = self.next_open(t)
        if start is None:
            return None
        local = from_us(start).astimezone(self.tz)
        d, minutes = local.date(), local.hour * 60 + local.minute
        rest = local.second * US + local.microsecond
        count = 0
        while count < n:
            d += timedelta(days=1)
            if d.weekday() < 5 and d not in self.whole_days:
                count += 1
        return self.next_open(wall(d, minutes, self.tz) + rest)


def month_bounds(month: str, tz: ZoneInfo) -> tuple[int, int]:
    y, m = (int(x) for x in month.split("-"))
    ny, nm = (y + 1, 1) if m == 12 else (y, m + 1)
    return wall(date(y, m, 1), 0, tz), wall(date(ny, nm, 1), 0, tz)


@dataclass
class Replay:
    position: int  # facts at or before this position are seen
    instant: int | None  # the replay point (us), None without a replay


# Facts that happen at their `at`: one dated after the replay point (recorded ahead of it) had
# not happened yet, as the ledger knew it then (docs/decisions.md, hAW).
DATED: Final = frozenset({"ticket_opened", "ticket_responded", "support_engaged", "recovery_performed",
                          "support_time_logged"})


def known(f: Fact, replay: Replay) -> bool:
    """Whether ``f`` counts at ``replay``: recorded by its position and, if dated, happened by its instant."""
    if f["position"] > replay.position:
        return False
    return replay.instant is None or f["type"] not in DATED or to_us(instant(f["at"])) <= replay.instant


def mean_text(total_us: int, n: int) -> Decimal:
    """The exact mean in seconds when its decimal ends, else cut toward zero at the microsecond."""
    den = Fraction(total_us, US * n).denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    exact = Decimal(total_us) / Decimal(US) / Decimal(n)
    return exact if den == 1 else exact.quantize(Decimal("0.000001"), rounding=ROUND_DOWN)


def support_model(policy: dict[str, Any], facts: list[Fact], month: str, replay: Replay) -> dict[str, Any]:
    """The figures section 6.3 lists, as plain values (instants in us, seconds as Decimal)."""
    contract, support = policy["contract"], policy.get("support")
    ctz = ZoneInfo(contract["timezone"])
    if support is None:  # promises nothing: every ticket of the month has an unknown severity
        return _nothing_promised(contract, facts, month, replay)
    stz = ZoneInfo(support.get("timezone") or contract["timezone"])
    seen = [f for f in facts if known(f, replay)]
    ms, me = month_bounds(month, ctz)
    horizon = me if replay.instant is None else min(me, replay.instant)
    hol = Holidays([f for f in seen if f["type"] == "holidays_pinned"])
    first_local = from_us(ms).astimezone(stz).date()
    clock = Clock(support, stz, hol, first_local - timedelta(days=3),
                  first_local + timedelta(days=HORIZON_WEEKS * 7 + 80))
    c_id = contract["id"]
    targets = {t["severity"]: t for t in support["targets"]}

    opened: dict[str, Fact] = {}
    for f in seen:
        if f["type"] == "ticket_opened" and f["contract"] == c_id and (
                f["ticket"] not in opened
                or to_us(instant(f["at"])) < to_us(instant(opened[f["ticket"]]["at"]))):
            opened[f["ticket"]] = f
    about: dict[str, list[Fact]] = {}
    for f in seen:
        if f["type"] in ("ticket_severity_changed", "ticket_responded", "ticket_classified",
                         "ticket_resolved", "support_time_logged") and f["ticket"] in opened:
            about.setdefault(f["ticket"], []).append(f)

    def kind(ticket: str) -> str:
        k = "account"
        for f in sorted(about.get(ticket, []), key=lambda x: x["position"]):
            if f["type"] == "ticket_classified":
                k = f["kind"]
        return k

    tickets: list[dict[str, Any]] = []
    unknown: list[str] = []
    for tid, o in opened.items():
        at = to_us(instant(o["at"]))
        if not ms <= at < me:
            continue
        rel = about.get(tid, [])
        responses = [to_us(instant(f["at"])) for f in rel if f["type"] == "ticket_responded"]
        resp = min(responses) if responses else None
        point = resp if resp is not None else horizon
        # The latest change at or before the point (decisions.md, issue 18 point 11), else the opening's.
        changes = sorted((to_us(instant(f["at"])), f["severity"]) for f in rel
                         if f["type"] == "ticket_severity_changed" and to_us(instant(f["at"])) <= point)
        sev = changes[-1][1] if changes else o["severity"]
        if sev not in targets:
            unknown.append(tid)
            continue
        rule = targets[sev]
        text = rule.get("first_response") or rule["mean_first_response"]
        bd = business_days(text)
        deadline = clock.add_business_days(at, bd) if bd is not None else clock.add(at, duration_us(text))
        seconds = clock.between(at, point)
        if resp is not None:
            status = "met" if deadline is None or resp <= deadline else "breached"
        else:
            status = "breached" if deadline is not None and deadline < horizon else "pending"
        tickets.append({"ticket": tid, "severity": sev, "kind": kind(tid), "opened_at": at,
                        "responded_at": resp, "target": text, "deadline": deadline,
                        "response_us": seconds, "status": status})
    tickets.sort(key=lambda t: (t["opened_at"], t["ticket"]))

    target_rows: list[dict[str, Any]] = []
    for t in support["targets"]:
        mine = [x for x in tickets if x["severity"] == t["severity"]]
        if t.get("first_response"):
            counts = {s: sum(1 for x in mine if x["status"] == s) for s in ("met", "breached", "pending")}
            target_rows.append({"severity": t["severity"], "target": t["first_response"],
                                "kind": "per_ticket", "tickets": len(mine), **counts})
        else:
            total = sum(x["response_us"] for x in mine)
            mean = mean_text(total, len(mine)) if mine else None
            target_rows.append({"severity": t["severity"], "target": t["mean_first_response"], "kind": "mean",
                                "tickets": len(mine), "mean_seconds": mean,
                                "met": mean is None or mean * US < duration_us(t["mean_first_response"])})

    service = contract["service"]
    engagements = None
    if support.get("engagement"):
        rule = support["engagement"]
        pieces = _downtime(policy, seen, horizon)
        stretches = [s for s, _ in union(pieces) if ms <= s < horizon]
        engaged = sorted(to_us(instant(f["at"])) for f in seen if f["type"] == "support_engaged"
                         and f["service"] == service and f["level"] == rule["level"])
        within = duration_us(rule["within"])
        engagements = []
        for s in stretches:
            later = [e for e in engaged if e >= s]
            if later:
                engagements.append({"downtime_start": s, "engaged_at": later[0], "seconds_us": later[0] - s,
                                    "status": "met" if later[0] - s <= within else "breached"})
            else:
                engagements.append({"downtime_start": s, "engaged_at": None, "seconds_us": horizon - s,
                                    "status": "breached" if s + within < horizon else "pending"})

    recoveries = None
    if support.get("recovery"):
        limit = duration_us(support["recovery"]["max_data_loss"])
        recoveries = []
        for f in seen:
            if f["type"] == "recovery_performed" and f["service"] == service and \
                    ms <= to_us(instant(f["at"])) < me:
                loss = to_us(instant(f["at"])) - to_us(instant(f["restored_to"]))
                recoveries.append({"recovery": f["recovery"], "at": to_us(instant(f["at"])),
                                   "restored_to": to_us(instant(f["restored_to"])), "data_loss_us": loss,
                                   "status": "met" if loss <= limit else "breached"})
        recoveries.sort(key=lambda r: (r["at"], r["recovery"]))

    quota = None
    if support.get("quota"):
        q = support["quota"]
        mm, dd = (int(x) for x in q["year_starts"].split("-"))
        local_first = from_us(ms).astimezone(ctz).date()
        y = local_first.year
        ys = wall(date(y, mm, dd), 0, ctz)
        if ys > ms:
            y -= 1
            ys = wall(date(y, mm, dd), 0, ctz)
        ye = wall(date(y + 1, mm, dd), 0, ctz)
        fee = Decimal(contract["annual_fee"]) if "annual_fee" in contract else \
            Decimal(contract["monthly_fee"]) * 12
        granted = int(fee // Decimal(q["hours_per"])) * 3600 * US
        used = exempt = 0
        for tid in opened:
            for f in about.get(tid, []):
                if f["type"] == "support_time_logged" and ys <= to_us(instant(f["at"])) < min(me, ye):
                    if kind(tid) in q.get("exempt", []):
                        exempt += f["seconds"] * US
                    else:
                        used += f["seconds"] * US
        warn = duration_us(q["warn_below"]) if q.get("warn_below") else 0
        quota = {"year_start": ys, "year_end": ye, "granted_us": granted, "used_us": used,
                 "exempt_us": exempt, "remaining_us": granted - used, "warning": granted - used < warn}

    return {"tickets": tickets, "targets": target_rows, "unknown_severity": sorted(unknown),
            "engagements": engagements, "recoveries": recoveries, "quota": quota, "holidays": hol,
            "as_of_position": replay.position, "horizon": horizon, "month": month,
            "timezone": contract["timezone"], "support_zone": stz,
            "countries": sorted({support.get("holidays")} - {None}
                                | {c["holidays"] for c in support.get("closures", [])})}


def _nothing_promised(contract: dict[str, Any], facts: list[Fact], month: str,
                      replay: Replay) -> dict[str, Any]:
    zone = ZoneInfo(contract["timezone"])
    ms, me = month_bounds(month, zone)
    opened: dict[str, int] = {}
    for f in facts:
        if known(f, replay) and f["type"] == "ticket_opened" and f["contract"] == contract["id"]:
            at = to_us(instant(f["at"]))
            opened[f["ticket"]] = min(opened.get(f["ticket"], at), at)
    return {"tickets": [], "targets": [], "engagements": None, "recoveries": None, "quota": None,
            "unknown_severity": sorted(t for t, at in opened.items() if ms <= at < me),
            "holidays": Holidays([]), "as_of_position": replay.position, "month": month,
            "timezone": contract["timezone"], "support_zone": zone, "countries": []}


def _outage(policy: dict[str, Any], seen: list[Fact], horizon: int) -> list[tuple[int, int]]:
    """Outage of the contract's service (section 2) from probes and outage incidents; nothing excused."""
    service = policy["contract"]["service"]
    probes = policy["availability"]["probes"]
    rule = policy["availability"]["outage_when"]
    per_probe: dict[str, list[tuple[int, int]]] = {}
    for p in probes:
        evs = sorted((to_us(instant(f["at"])), 0 if f["type"] == "probe_failed" else 1) for f in seen
                      if f["type"] in ("probe_failed", "probe_recovered") and f["service"] == service
                      and f["probe"] == p)
        down_since: int | None = None
        spans: list[tuple[int, int]] = []
        for t, what in evs:
            if what == 0 and down_since is None:
                down_since = t
            elif what == 1 and down_since is not None:
                spans.append((down_since, t))
                down_since = None
        if down_since is not None and down_since < horizon:
            spans.append((down_since, horizon))
        per_probe[p] = spans
    need = 1 if rule == "any" else len(probes) if rule == "all" else int(rule)
    edges: list[tuple[int, int]] = []
    for spans in per_probe.values():
        for s, e in spans:
            if e > s:
                edges += [(s, 1), (e, -1)]
    out: list[tuple[int, int]] = []
    level, since = 0, 0
    for t, d in sorted(edges, key=lambda x: (x[0], x[1])):
        before = level
        level += d
        if before < need <= level:
            since = t
        elif level < need <= before and t > since:
            out.append((since, t))
    incidents: dict[str, list[tuple[int, int]]] = {}
    opened: dict[str, int] = {}
    for f in sorted((f for f in seen if f["type"] in ("incident_opened", "incident_resolved")),
                    key=lambda f: (to_us(instant(f["at"])), f["type"] != "incident_opened")):
        t = to_us(instant(f["at"]))
        if f["type"] == "incident_opened":
            if f["service"] == service and f["impact"] == "outage" and f["incident"] not in opened:
                opened[f["incident"]] = t
        elif f["incident"] in opened:
            incidents.setdefault(f["incident"], []).append((opened.pop(f["incident"]), t))
    for inc, t in opened.items():
        if t < horizon:
            incidents.setdefault(inc, []).append((t, horizon))
    for spans in incidents.values():
        out += spans
    return out


def _downtime(policy: dict[str, Any], seen: list[Fact], horizon: int) -> list[tuple[int, int]]:
    """D = outage - M - excused (section 2), for a policy whose business hours never matter."""
    service = policy["contract"]["service"]
    maintenance = policy.get("maintenance")
    cancelled = {f["maintenance"] for f in seen if f["type"] == "maintenance_cancelled"}
    revoked = {f["ref"] for f in seen if f["type"] == "exclusion_revoked"}
    off: list[tuple[int, int]] = []
    for f in seen:
        if f["type"] == "maintenance_announced" and maintenance and f["service"] == service \
                and f["maintenance"] not in cancelled:
            announced, starts = to_us(instant(f["announced_at"])), to_us(instant(f["starts_at"]))
            conforming = starts - announced >= duration_us(maintenance["min_notice"])
            if conforming or maintenance["nonconforming"] == "emergency":
                off.append((max(starts, announced), to_us(instant(f["ends_at"]))))
        excludable = "force_majeure" in policy["availability"]["excludable"]
        if f["type"] == "force_majeure_declared" and f["service"] == service \
                and f["declaration"] not in revoked and excludable:
            off.append((to_us(instant(f["starts_at"])), to_us(instant(f["ends_at"]))))
    return subtract(union(_outage(policy, seen, horizon)), off)
