"""Worked examples of agreements B, C and D (INTERFACE.md section 6), arithmetic written out, both stores.

Holiday dates are those of the pinned `holidays` package (pyproject.toml); each test
names the dates it relies on, and ``test_package_dates_these_examples_rely_on`` checks them.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

from ledger.application import Ledger
from ledger.calendar import holiday_dates
from ledger.policy_check import load_policy
from ledger.support_read import support_report
from projections.support_model import MeanTarget, PerTicketTarget, SupportReport, support_json
from tests.lines import import_lines

POLICY_B = b"""
[contract]
id = "sla-b"
customer = "Fiduciaire Rochat SA"
service = "biings"
timezone = "Europe/Zurich"
currency = "CHF"
annual_fee = "6500.00"

[availability]
target = "99.5"
probes = ["ping"]

[support]
hours = ["Mon-Fri 08:00-17:00"]
holidays = "CH"
targets = [
  { severity = "production_down", first_response = "1h" },
  { severity = "serious", first_response = "4h" },
  { severity = "moderate", first_response = "1 business day" },
  { severity = "limited", first_response = "2 business days" },
]
quota = { hours_per = "1000", year_starts = "01-01", exempt = ["bug", "global_issue"], warn_below = "2h" }
"""

POLICY_C = b"""
[contract]
id = "sla-c"
customer = "Optimy customer"
service = "optimy"
timezone = "America/Toronto"
currency = "EUR"
annual_fee = "12000.00"

[availability]
target = "99.5"
probes = ["http"]

[support]
hours = ["Mon-Fri 09:00-17:30"]
holidays = "CA"
targets = [
  { severity = "high", first_response = "4h" },
  { severity = "medium", first_response = "1 business day" },
  { severity = "low", first_response = "2 business days" },
]
recovery = { max_data_loss = "24h" }
"""

POLICY_D = b"""
[contract]
id = "sla-d"
customer = "Better Impact customer"
service = "bi"
timezone = "America/Toronto"
currency = "CAD"
monthly_fee = "500.00"

[availability]
target = "99.95"
probes = ["http"]

[support]
hours = ["Mon 05:00 - Fri 16:00"]
closures = [
  { holidays = "CA", window = "09:00-17:00" },
  { holidays = "GB", window = "05:00-09:00" },
  { holidays = "AU", window = "-1 20:00-05:00" },
]
targets = [
  { severity = "level1", mean_first_response = "15m" },
  { severity = "level2", first_response = "1 business day" },
  { severity = "level3", first_response = "2 business days" },
]
engagement = { level = "level3", within = "10m" }
"""


def _load(led: Ledger, policy: bytes, facts: list[dict[str, object]]) -> None:
    led.register_contract(load_policy(policy))
    import_lines(led, [json.dumps(f).encode() for f in facts])


def _both(pair: tuple[Ledger, Ledger], policy: bytes, facts: list[dict[str, object]], contract: str,
          month: str) -> SupportReport:
    """The report from the store under test, checked byte for byte against the second store."""
    a, b = pair
    _load(a, policy, facts)
    _load(b, policy, facts)
    ra, rb = support_report(a, contract, month), support_report(b, contract, month)
    assert support_json(ra) == support_json(rb)
    return ra


def _ticket(contract: str, ticket: str, at: str, severity: str) -> dict[str, object]:
    return {"type": "ticket_opened", "contract": contract, "ticket": ticket, "at": at, "severity": severity}


def _resp(ticket: str, at: str) -> dict[str, object]:
    return {"type": "ticket_responded", "ticket": ticket, "at": at}


def test_package_dates_these_examples_rely_on() -> None:
    assert date(2026, 9, 7) in holiday_dates("CA", 2026)  # Labour Day
    assert date(2026, 10, 12) not in holiday_dates("CA", 2026)  # Thanksgiving: not national here
    for country in ("CA", "GB", "AU"):
        assert date(2026, 4, 3) in holiday_dates(country, 2026)  # Good Friday
    assert date(2026, 4, 6) in holiday_dates("AU", 2026)
    assert date(2026, 4, 6) not in holiday_dates("GB", 2026) | holiday_dates("CA", 2026)
    assert date(2026, 5, 4) in holiday_dates("GB", 2026)  # early May bank holiday
    assert not {date(2026, 10, d) for d in range(1, 32)} & holiday_dates("CH", 2026)


def test_b_across_the_end_of_dst_and_a_weekend(pair: tuple[Ledger, Ledger]) -> None:
    c = "sla-b"
    facts = [
        # T-1, 1 h: Fri 23 Oct 16:30 CEST -> 30 min to 17:00; weekend; DST ends Sun 25 Oct;
        # Mon 26 Oct 08:00 CET + 30 min -> deadline 08:30 CET. Answered 08:29: met, 30 + 29 min.
        _ticket(c, "T-1", "2026-10-23T16:30:00+02:00", "production_down"),
        _resp("T-1", "2026-10-26T08:29:00+01:00"),
        # T-2, 1 business day: opened Fri 18:00 (closed) -> next open Mon 08:00 -> Tue 08:00.
        # Answered Tue 07:59: met; open time: none Fri, 9 h Mon, none Tue before 08:00.
        _ticket(c, "T-2", "2026-10-23T18:00:00+02:00", "moderate"),
        _resp("T-2", "2026-10-27T07:59:00+01:00"),
        # T-3, 1 h: Mon 26 Oct 16:45 -> 15 min, Tue 08:00 + 45 min -> deadline Tue 08:45. Never
        # answered: breached at the horizon (month end). Open time to the horizon: Mon 15 min,
        # Tue..Fri 4 x 9 h = 36 h 15 min = 130500 s.
        _ticket(c, "T-3", "2026-10-26T16:45:00+01:00", "production_down"),
        {"type": "ticket_classified", "ticket": "T-3", "kind": "bug"},
        # T-4: opened as limited, raised to production_down before its response: 1 h applies.
        # Wed 28 Oct 10:00 + 1 h -> 11:00; answered 11:30: breached.
        _ticket(c, "T-4", "2026-10-28T10:00:00+01:00", "limited"),
        {"type": "ticket_severity_changed", "ticket": "T-4", "at": "2026-10-28T10:10:00+01:00",
         "severity": "production_down"},
        _resp("T-4", "2026-10-28T11:30:00+01:00"),
        # T-5: raised after its response: the severity at the response (moderate) applies.
        _ticket(c, "T-5", "2026-10-29T09:00:00+01:00", "moderate"),
        _resp("T-5", "2026-10-29T09:30:00+01:00"),
        {"type": "ticket_severity_changed", "ticket": "T-5", "at": "2026-10-29T10:00:00+01:00",
         "severity": "production_down"},
        # T-6: a severity the policy does not name.
        _ticket(c, "T-6", "2026-10-29T09:00:00+01:00", "urgent"),
        # Quota: CHF 6,500 -> 6 full thousands -> 6 h = 21600 s. 5400 s on an account ticket are
        # drawn, 1800 s on a bug are not; 3600 s in September count (same subscription year).
        {"type": "support_time_logged", "ticket": "T-2", "at": "2026-10-27T09:00:00+01:00", "seconds": 5400},
        {"type": "support_time_logged", "ticket": "T-3", "at": "2026-10-27T10:00:00+01:00", "seconds": 1800},
        _ticket(c, "T-0", "2026-09-10T09:00:00+02:00", "limited"),
        {"type": "support_time_logged", "ticket": "T-0", "at": "2026-09-10T10:00:00+02:00", "seconds": 3600},
        # A response to a ticket never opened changes nothing.
        _resp("T-404", "2026-10-27T09:00:00+01:00"),
    ]
    r = _both(pair, POLICY_B, facts, c, "2026-10")
    got = {t.ticket: t for t in r.tickets}
    assert [t.ticket for t in r.tickets] == ["T-1", "T-2", "T-3", "T-4", "T-5"]
    assert got["T-1"].deadline is not None
    assert got["T-1"].deadline.isoformat() == "2026-10-26T08:30:00+01:00"
    assert (got["T-1"].response_seconds, got["T-1"].status) == (Decimal(3540), "met")
    assert got["T-2"].deadline is not None
    assert got["T-2"].deadline.isoformat() == "2026-10-27T08:00:00+01:00"
    assert (got["T-2"].response_seconds, got["T-2"].status) == (Decimal(9 * 3600), "met")
    assert got["T-3"].deadline is not None
    assert got["T-3"].deadline.isoformat() == "2026-10-27T08:45:00+01:00"
    t3, t4 = got["T-3"], got["T-4"]
    assert (t3.response_seconds, t3.status, t3.kind) == (Decimal(130500), "breached", "bug")
    assert (t4.severity, t4.target, t4.status) == ("production_down", "1h", "breached")
    assert (got["T-5"].severity, got["T-5"].status) == ("moderate", "met")
    assert r.unknown_severity == ("T-6",)
    assert r.targets[0] == PerTicketTarget("production_down", "1h", "per_ticket", 3, 1, 2, 0)
    assert r.targets[2] == PerTicketTarget("moderate", "1 business day", "per_ticket", 2, 2, 0, 0)
    assert r.quota is not None
    assert (r.quota.granted_seconds, r.quota.used_seconds, r.quota.exempt_seconds,
            r.quota.remaining_seconds, r.quota.warning) == (21600, 9000, 1800, 12600, False)
    assert r.quota.year_start.isoformat() == "2026-01-01T00:00:00+01:00"
    assert [(h.country, h.year, h.source) for h in r.holidays] == [("CH", 2026, "holidays 0.109")]
    assert (r.engagements, r.recoveries) == (None, None)


def test_c_recovery_point_and_canadian_holidays(pair: tuple[Ledger, Ledger]) -> None:
    c = "sla-c"
    facts = [
        # High, 4 h: Fri 4 Sep 16:30 EDT -> 1 h to 17:30; Mon 7 Sep Labour Day closed all day;
        # Tue 09:00 + 3 h -> 12:00. Answered 11:59: met; 3600 + 10740 s.
        _ticket(c, "H-1", "2026-09-04T16:30:00-04:00", "high"),
        _resp("H-1", "2026-09-08T11:59:00-04:00"),
        # Medium, 1 business day: Fri 10:00 -> Labour Day is no business day -> Tue 8 Sep 10:00.
        # Answered 10:01: breached.
        _ticket(c, "M-1", "2026-09-04T10:00:00-04:00", "medium"),
        _resp("M-1", "2026-09-08T10:01:00-04:00"),
        # Low, 2 business days: Sat 5 Sep (closed) -> next open Tue 09:00 -> Thu 10 Sep 09:00.
        _ticket(c, "L-1", "2026-09-05T12:00:00-04:00", "low"),
        # Recoveries: 25 h of data lost is over 24 h; exactly 24 h is allowed.
        {"type": "recovery_performed", "service": "optimy", "recovery": "r-1", "at": "2026-09-15T12:00:00Z",
         "restored_to": "2026-09-14T11:00:00Z"},
        {"type": "recovery_performed", "service": "optimy", "recovery": "r-2", "at": "2026-09-20T12:00:00Z",
         "restored_to": "2026-09-19T12:00:00Z"},
        {"type": "recovery_performed", "service": "other", "recovery": "r-3", "at": "2026-09-20T12:00:00Z",
         "restored_to": "2026-09-10T12:00:00Z"},
    ]
    r = _both(pair, POLICY_C, facts, c, "2026-09")
    got = {t.ticket: t for t in r.tickets}
    assert got["H-1"].deadline is not None
    assert got["H-1"].deadline.isoformat() == "2026-09-08T12:00:00-04:00"
    assert (got["H-1"].response_seconds, got["H-1"].status) == (Decimal(14340), "met")
    assert got["M-1"].deadline is not None
    assert got["M-1"].deadline.isoformat() == "2026-09-08T10:00:00-04:00"
    assert got["M-1"].status == "breached"
    assert got["L-1"].deadline is not None
    assert got["L-1"].deadline.isoformat() == "2026-09-10T09:00:00-04:00"
    assert got["L-1"].status == "breached"  # not answered, deadline before the horizon
    assert r.recoveries is not None
    assert [(x.recovery, x.data_loss_seconds, x.status) for x in r.recoveries] == [
        ("r-1", Decimal(90000), "breached"), ("r-2", Decimal(86400), "met")]
    assert [(h.country, h.year) for h in r.holidays] == [("CA", 2026)]
    # Replayed before L-1's deadline passed... as of the facts up to H-1's opening: L-1 unknown yet.
    a = pair[0]
    early = support_report(a, c, "2026-09", position=2)
    assert [t.ticket for t in early.tickets] == ["H-1"]
    assert early.tickets[0].status == "breached"  # no response recorded, its horizon is the month's end


def test_d_good_friday_all_three_closures(pair: tuple[Ledger, Ledger]) -> None:
    c = "sla-d"
    facts = [
        # Level 1 (mean): Thu 2 Apr 19:50 EDT; Good Friday is a CA, GB and AU holiday, so the AU
        # window closes Thu 20:00 -> Fri 05:00, GB Fri 05:00-09:00, CA Fri 09:00-17:00 (the span
        # ends Fri 16:00): 10 min Thursday, then closed to Mon 05:00 (Easter Monday is an AU
        # holiday: Sun 20:00 -> Mon 05:00, closed anyway). Answered Mon 05:05: 600 + 300 = 900 s.
        _ticket(c, "D-1", "2026-04-02T19:50:00-04:00", "level1"),
        _resp("D-1", "2026-04-06T05:05:00-04:00"),
        # Level 1: Tue 7 Apr 10:00, answered 10:16: 960 s. Mean (900 + 960) / 2 = 930 s, not
        # below 900 s (15 min): the mean target is missed.
        _ticket(c, "D-2", "2026-04-07T10:00:00-04:00", "level1"),
        _resp("D-2", "2026-04-07T10:16:00-04:00"),
        # Level 2, 1 business day: Thu 2 Apr 10:00 -> Fri 3 Apr 10:00 (D names no whole-day
        # holidays: Good Friday is a business day), when the CA window has the clock closed ->
        # the next open instant, Mon 6 Apr 05:00. Answered 05:30: breached.
        _ticket(c, "D-3", "2026-04-02T10:00:00-04:00", "level2"),
        _resp("D-3", "2026-04-06T05:30:00-04:00"),
        # Downtime 14:00-15:00Z on 2 Apr, level 3 engaged 8 min in: met. Downtime on 20 Apr
        # 10:00-10:30Z: level 2 at 10:01 does not count, level 3 at 10:12 is 12 min: breached.
        {"type": "probe_failed", "service": "bi", "probe": "http", "at": "2026-04-02T14:00:00Z"},
        {"type": "probe_recovered", "service": "bi", "probe": "http", "at": "2026-04-02T15:00:00Z"},
        {"type": "support_engaged", "service": "bi", "level": "level3", "at": "2026-04-02T14:08:00Z"},
        {"type": "probe_failed", "service": "bi", "probe": "http", "at": "2026-04-20T10:00:00Z"},
        {"type": "probe_recovered", "service": "bi", "probe": "http", "at": "2026-04-20T10:30:00Z"},
        {"type": "support_engaged", "service": "bi", "level": "level2", "at": "2026-04-20T10:01:00Z"},
        {"type": "support_engaged", "service": "bi", "level": "level3", "at": "2026-04-20T10:12:00Z"},
    ]
    r = _both(pair, POLICY_D, facts, c, "2026-04")
    got = {t.ticket: t for t in r.tickets}
    assert (got["D-1"].response_seconds, got["D-2"].response_seconds) == (Decimal(900), Decimal(960))
    assert r.targets[0] == MeanTarget("level1", "15m", "mean", 2, "930", False)
    assert got["D-3"].deadline is not None
    assert got["D-3"].deadline.isoformat() == "2026-04-06T05:00:00-04:00"
    assert got["D-3"].status == "breached"
    assert r.engagements is not None
    assert [(e.seconds, e.status) for e in r.engagements] == [(Decimal(480), "met"),
                                                               (Decimal(720), "breached")]
    assert {(h.country, h.year) for h in r.holidays} == {("CA", 2026), ("GB", 2026), ("AU", 2026)}


def test_d_uk_bank_holiday(pair: tuple[Ledger, Ledger]) -> None:
    c = "sla-d"
    facts = [
        # Mon 4 May 2026, early May bank holiday (GB): closed 05:00-09:00 Eastern. Opened 06:00,
        # answered 09:05: 300 s. Opened 10:00, answered 10:20: 1200 s. Mean 750 s < 900 s: met.
        _ticket(c, "U-1", "2026-05-04T06:00:00-04:00", "level1"),
        _resp("U-1", "2026-05-04T09:05:00-04:00"),
        _ticket(c, "U-2", "2026-05-04T10:00:00-04:00", "level1"),
        _resp("U-2", "2026-05-04T10:20:00-04:00"),
        # One ticket of three: mean (300 + 1200 + 301) / 3 = 600.333... s, cut at the microsecond.
        _ticket(c, "U-3", "2026-05-05T10:00:00-04:00", "level1"),
        _resp("U-3", "2026-05-05T10:05:01-04:00"),
    ]
    r = _both(pair, POLICY_D, facts, c, "2026-05")
    assert [t.response_seconds for t in r.tickets] == [Decimal(300), Decimal(1200), Decimal(301)]
    assert r.targets[0] == MeanTarget("level1", "15m", "mean", 3, "600.333333", True)
    assert r.engagements == ()
