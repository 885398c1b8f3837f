"""Rendering of reports, audits and projection status as text, tables and CSV (pure: values in, strings out).

Text that came from facts or policies (ids, titles, reasons, the customer) can
hold anything an old store holds. In tables and text every control, line-breaking
and bidirectional character is shown escaped (``ledger.text.printable``), so no
value can move the cursor, reach the terminal as an escape sequence or break a
row; in CSV such text is also kept from starting a formula (``csv_text``).
JSON is left exact.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Final

import msgspec

from ledger.text import csv_text, printable
from projections.model import Audit, Report

if TYPE_CHECKING:  # the tracked projection's results: annotations only, it is heavy to import
    from projections.tracked import RebuildResult, Status

SUMMARY_FIELDS: Final = (
    "contract", "month", "timezone", "policy_version", "total_seconds", "outage_seconds",
    "maintenance_seconds", "excused_seconds", "downtime_seconds", "availability_percent",
    "target_percent", "target_met", "credit_percent", "credit_amount", "credit_long_outage_amount",
    "credit_currency", "credit_claim", "credit_payable", "as_of_position", "digest",
)
INTERVAL_FIELDS: Final = ("contract", "month", "start", "end", "seconds", "kind", "reason", "events")
# Columns the ledger computes as numbers (or as words it chose): written as they are.
_NUMERIC: Final = frozenset({
    "policy_version", "total_seconds", "outage_seconds", "maintenance_seconds", "excused_seconds",
    "downtime_seconds", "availability_percent", "target_percent", "target_met", "credit_percent",
    "credit_amount", "credit_long_outage_amount", "credit_payable", "as_of_position", "seconds", "events",
})  # fmt: skip


def seconds(value: Decimal) -> str:
    """Seconds as printed in JSON: an integer when whole, else exact decimals."""
    return f"{value.normalize():f}" if value != value.to_integral_value() else str(int(value))


def hms(value: Decimal) -> str:
    """Seconds as "1 h 02 min 03.5 s" for people."""
    whole = int(value)
    frac = value - whole
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    sec = f"{s}" if not frac else f"{Decimal(s) + frac:f}"
    if h:
        return f"{h} h {m:02d} min {sec} s"
    if m:
        return f"{m} min {sec} s"
    return f"{sec} s"


def _ts(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _row(r: Report) -> list[str]:
    c = r.credit
    return [
        r.contract, r.month, r.timezone, str(r.policy_version), seconds(r.total_seconds),
        seconds(r.outage_seconds), seconds(r.maintenance_seconds), seconds(r.excused_seconds),
        seconds(r.downtime_seconds), r.availability_percent, r.target_percent,
        "true" if r.target_met else "false", c.percent, c.amount, c.long_outage_amount, c.currency,
        c.claim, "true" if c.payable else "false", str(r.as_of_position), r.digest,
    ]


def _csv_row(fields: Sequence[str], cells: Sequence[str]) -> list[str]:
    return [c if f in _NUMERIC else csv_text(c) for f, c in zip(fields, cells, strict=True)]


def report_csv(reports: Sequence[Report], *, intervals: bool = False) -> str:
    """One CSV row per contract-month, or with ``intervals`` one row per interval."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    if intervals:
        w.writerow(INTERVAL_FIELDS)
        for r in reports:
            for i in r.intervals:
                w.writerow(_csv_row(INTERVAL_FIELDS, [
                    r.contract, r.month, _ts(i.start), _ts(i.end), seconds(i.seconds), i.kind, i.reason,
                    " ".join(str(e) for e in i.events),
                ]))  # fmt: skip
    else:
        w.writerow(SUMMARY_FIELDS)
        for r in reports:
            w.writerow(_csv_row(SUMMARY_FIELDS, _row(r)))
    return out.getvalue()


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> str:
    rows = [[printable(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)]) + "\n"


def summary_table(reports: Sequence[Report]) -> str:
    """One line per contract-month: availability against target and the credit."""
    headers = ["contract", "month", "availability", "target", "met", "downtime", "maintenance",
               "excused", "credit", "claim", "payable"]
    rows = [
        [r.contract, r.month, r.availability_percent + " %", r.target_percent + " %",
         "yes" if r.target_met else "NO", hms(r.downtime_seconds), hms(r.maintenance_seconds),
         hms(r.excused_seconds), f"{r.credit.amount} {r.credit.currency} ({r.credit.percent} %)",
         r.credit.claim, "yes" if r.credit.payable else "no"]
        for r in reports
    ]
    return _table(headers, rows, right=frozenset({2, 3, 5, 6, 7, 8}))


def report_table(r: Report) -> str:
    """A month report for people: the figures, then every interval with its reason."""
    c = r.credit
    lines = [
        f"Contract {printable(r.contract)}, {r.month} ({printable(r.timezone)}), "
        f"policy version {r.policy_version}",
        "",
        f"  total        {seconds(r.total_seconds):>12} s  {hms(r.total_seconds)}",
        f"  outage       {seconds(r.outage_seconds):>12} s  {hms(r.outage_seconds)}",
        f"  maintenance  {seconds(r.maintenance_seconds):>12} s  {hms(r.maintenance_seconds)}",
        f"  excused      {seconds(r.excused_seconds):>12} s  {hms(r.excused_seconds)}",
        f"  downtime     {seconds(r.downtime_seconds):>12} s  {hms(r.downtime_seconds)}",
        "",
        f"  availability {r.availability_percent} % (target {r.target_percent} %: "
        f"{'met' if r.target_met else 'NOT met'})",
        f"  credit       {c.amount} {printable(c.currency)} ({c.percent} % of the monthly fee"
        f"{', long outage ' + c.long_outage_amount if c.long_outage_amount != '0.00' else ''}); "
        f"claim {c.claim}; {'payable' if c.payable else 'not payable'}",
        *_holiday_lines(r, "  holidays     "),
        f"  as of position {r.as_of_position}; digest {r.digest}",
        "",
    ]
    if r.intervals:
        rows = [[_ts(i.start), _ts(i.end), seconds(i.seconds), i.kind,
                 ",".join(str(e) for e in i.events), i.reason] for i in r.intervals]
        lines.append(_table(["start", "end", "seconds", "kind", "events", "reason"], rows,
                            right=frozenset({2})))
    else:
        lines.append("No outage recorded in this month.\n")
    return "\n".join(lines)


def audit_text(a: Audit) -> str:
    """The auditor's walk-through: every figure in order, with the events behind it."""
    r, e = a.report, a.explanation
    point = (
        f"as recorded up to {_ts(a.as_of)} (position {a.as_of_position})"
        if a.as_of is not None
        else f"as recorded up to position {a.as_of_position}"
    )
    p = printable
    out = [
        f"Audit of contract {p(r.contract)}, month {r.month}, {point}",
        f"Policy version {e.policy_version}; digest {r.digest}",
        *_holiday_lines(r, "Public holidays: "),
        *_checkpoint_lines(r),
        f"Month: {_ts(e.month_start)} to {_ts(e.month_end)} ({p(r.timezone)}); "
        f"open outages run to {_ts(e.horizon)}",
        "",
        "Intervals of outage:",
    ]
    if not r.intervals:
        out.append("  (none)")
    for n, i in enumerate(r.intervals, 1):
        out.append(f"  {n}. {_ts(i.start)} .. {_ts(i.end)}  {seconds(i.seconds)} s  {i.kind.upper()}")
        out.append(f"     because {p(i.reason)}")
        out.append(f"     events: {', '.join(str(p) for p in i.events) or '-'}")
    if e.findings:
        out.append("")
        out.append("Findings:")
        for f in e.findings:
            refs = f" [events {', '.join(str(p) for p in f.events)}]" if f.events else ""
            out.append(f"  - {p(f.kind)} {p(f.ref)}: {p(f.text)}{refs}")
    out.append("")
    out.append("Figures:")
    for s in e.steps:
        refs = f" [events {', '.join(str(p) for p in s.events)}]" if s.events else ""
        out.append(f"  {p(s.figure)} = {p(s.value)}")
        if s.how:
            out.append(f"      {p(s.how)}{refs}")
        elif refs:
            out.append(f"     {refs}")
    return "\n".join(out) + "\n"


def holidays_text(r: Report) -> str:
    """The country-years whose public holidays the figures looked up, with their source ("" if none)."""
    return "; ".join(f"{printable(h.country)} {h.year} ({printable(h.source)})" for h in r.holidays)


def _holiday_lines(r: Report, lead: str) -> list[str]:
    text = holidays_text(r)
    return [lead + text] if text else []


def _checkpoint_lines(r: Report) -> list[str]:
    """The log these figures come from, and how an auditor checks it (INTERFACE.md section 7)."""
    if r.checkpoint is None:
        return []
    c = r.checkpoint
    return [
        f"Log checkpoint: the first {c.size} events, Merkle root {c.root}",
        f"  To check it: `ledger checkpoint --size {c.size}` prints the same root; a checkpoint you",
        f"  hold of a later log (size M) extends it if `ledger proof consistency --from {c.size} --to M`",
        "  verifies against both roots (RFC 9162, a ten-line script: docs/auditors.md).",
    ]


def rebuild_line(r: RebuildResult) -> str:
    """``ledger projections rebuild``'s one line: what was recomputed, how fast, what failed."""
    failed = f"; {r.failed} failed (see `ledger projections status`)" if r.failed else ""
    return (f"rebuilt reporting: {r.pairs} contract-months from {r.events} events "
            f"in {r.seconds:.2f} s ({r.events_per_second:,.0f} events/s){failed}")


def status_json(found: Sequence[Status]) -> str:
    """``ledger projections status --format json``: one object per projection."""
    return msgspec.json.encode([
        {"projection": s.projection, "position": s.position, "head": s.head, "lag": s.lag,
         "failed": s.failed, "failures": [msgspec.structs.asdict(f) for f in s.failures]}
        for s in found
    ]).decode()


def status_text(found: Sequence[Status]) -> str:
    """``ledger projections status``: a tab-separated line per projection, then its failed months."""
    lines: list[str] = []
    for s in found:
        failed = f"\tfailed={s.failed}" if s.failed else ""
        lines.append(f"{s.projection}\tposition={s.position}\thead={s.head}\tlag={s.lag}{failed}")
        for f in s.failures:
            lines.append(f"{s.projection}\tfailed\t{f.contract}\t{f.month}\tposition={f.position}\t{f.error}")
        if s.failed > len(s.failures):
            lines.append(f"{s.projection}\tfailed\t... and {s.failed - len(s.failures)} more")
    return "".join(line + "\n" for line in lines)


def event_fields() -> list[tuple[str, str]]:
    """Each type `ledger append` takes, with its fields (`name?`: optional) as INTERFACE.md writes them."""
    import msgspec

    from ledger.events import FACT_TYPES, OPS_TYPES

    ledger_given = {"position", "recorded_at"}  # the ledger's to give, never the caller's
    return [
        (tag, " ".join(f.encode_name + ("" if f.required else "?")
                       for f in msgspec.structs.fields(FACT_TYPES[tag]) if f.encode_name not in ledger_given))
        for tag in OPS_TYPES
    ]
