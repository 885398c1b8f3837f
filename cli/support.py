"""``ledger support`` and ``ledger calendar pin|show`` (INTERFACE.md section 6.3): parse, one call, render."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import click

from cli.context import Context, month_option, pass_ctx, replay_options, timestamp
from ledger.errors import BadInput
from ledger.text import csv_text, printable
from projections.support_model import MeanTarget, SupportReport, support_json

if TYPE_CHECKING:
    from ledger.application import Ledger

_YEARS = re.compile(r"([0-9]{4})(?:-([0-9]{4}))?")
_COUNTRY = re.compile(r"[A-Z]{2}(?:-[A-Z0-9]{1,3})?")
CSV_HEADER = ("contract", "month", "ticket", "severity", "kind", "opened_at", "responded_at", "target",
              "deadline", "response_seconds", "status", "events")


def _instant(value: str | None) -> datetime | None:
    return timestamp(value, "--as-of")


@click.command()
@click.option("--contract", "contract_ids", multiple=True,
              help="Contract id; repeat for several; none: every registered contract, in id order.")
@click.option("--month", required=True, metavar="YYYY-MM", callback=month_option,
              help="Month, in the contract's time zone.")
@replay_options
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "ndjson", "html"]),
              default="table", show_default=True)
@pass_ctx
def support(ctx: Context, contract_ids: tuple[str, ...], month: str, as_of: str | None, position: int | None,
            fmt: str) -> None:
    """The month's support figures: tickets on support-hours clocks, targets, engagement, recovery, quota.

    With one --contract, that contract's report (json: one object; html: one page).
    Without, or with several: every contract named (or registered) in id order, in
    one call: json an array, ndjson one report a line, csv one header, table the
    single tables one after another (html needs exactly one --contract).
    """
    ledger = ctx.ledger(create=False)
    at = _instant(as_of)
    if len(contract_ids) == 1 and fmt != "ndjson":
        if fmt == "html":
            from cli.support_html import support_page
            from ledger.support_read import support_view

            view = support_view(ledger, contract_ids[0], month, as_of=at, position=position)
            click.echo(support_page(view), nl=False)
            return
        if fmt == "table":
            click.echo(explained_tables(ledger, month, contract_ids, at, position), nl=False)
            return
        from ledger.support_read import support_report

        one = support_report(ledger, contract_ids[0], month, as_of=at, position=position)
        click.echo(many_support([one], fmt, array=False), nl=False)
        return
    if fmt == "html":
        raise BadInput("--format html: give exactly one --contract")
    if fmt == "table":
        click.echo(explained_tables(ledger, month, contract_ids, at, position), nl=False)
        return
    from ledger.monthly import month_support

    click.echo(many_support(month_support(ledger, month, contract_ids, as_of=at, position=position), fmt),
               nl=False)


def explained_tables(ledger: Ledger, month: str, contract_ids: Sequence[str], as_of: datetime | None,
                     position: int | None) -> str:
    """The table of each contract (named, or every one registered), each ticket with its explanation."""
    from ledger.monthly import month_support_explained

    return "\n".join(support_table(r, why) for r, why in
                     month_support_explained(ledger, month, contract_ids, as_of=as_of, position=position))


def many_support(reports: list[SupportReport], fmt: str, *, array: bool = True) -> str:
    """Reports in one format: each is the single report's bytes (json: an array of them unless ``array``)."""
    if fmt == "json":
        body = ",".join(support_json(r).decode() for r in reports)
        return (f"[{body}]" if array else body) + "\n"
    if fmt == "ndjson":
        return "".join(support_json(r).decode() + "\n" for r in reports)
    if fmt == "csv":
        return support_csv(reports)
    return "\n".join(support_table(r) for r in reports)


def support_csv(reports: list[SupportReport]) -> str:
    """One row per ticket, header first; text from facts and policies kept from starting a formula."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in reports:
        for t in r.tickets:
            w.writerow([csv_text(r.contract), r.month, csv_text(t.ticket), csv_text(t.severity), t.kind,
                        t.opened_at.isoformat(), t.responded_at.isoformat() if t.responded_at else "",
                        csv_text(t.target), t.deadline.isoformat() if t.deadline else "",
                        str(t.response_seconds), t.status, " ".join(map(str, t.events))])
    return out.getvalue()


def support_table(r: SupportReport, explanations: Mapping[str, str] | None = None) -> str:
    """The report for people: a line per ticket (its explanation under it), target, stretch, recovery."""
    lines = [f"{r.contract}  {r.month}  ({r.timezone}, policy v{r.policy_version}, as of position "
             f"{r.as_of_position})"]
    lines.append("tickets:" if r.tickets else "tickets: none")
    for t in r.tickets:
        responded = t.responded_at.isoformat() if t.responded_at else "-"
        deadline = t.deadline.isoformat() if t.deadline else "never"
        lines.append(f"  {t.ticket}  {t.severity} ({t.kind})  opened {t.opened_at.isoformat()}  "
                     f"target {t.target} -> {deadline}  responded {responded}  "
                     f"{t.response_seconds} s  {t.status}  [events {' '.join(map(str, t.events))}]")
        if explanations and t.ticket in explanations:
            lines.append(f"      {explanations[t.ticket]}")
    for g in r.targets:
        if isinstance(g, MeanTarget):
            lines.append(f"target {g.severity} mean < {g.target}: {g.tickets} tickets, mean "
                         f"{g.mean_seconds or '-'} s: {'met' if g.met else 'breached'}")
        else:
            lines.append(f"target {g.severity} {g.target}: {g.tickets} tickets, {g.met} met, "
                         f"{g.breached} breached, {g.pending} pending")
    if r.unknown_severity:
        lines.append(f"unknown severity: {', '.join(r.unknown_severity)}")
    for e in r.engagements or ():
        engaged = e.engaged_at.isoformat() if e.engaged_at else "-"
        lines.append(f"downtime from {e.downtime_start.isoformat()}: engaged {engaged} ({e.seconds} s) "
                     f"{e.status}")
    for c in r.recoveries or ():
        lines.append(f"recovery {c.recovery} at {c.at.isoformat()} to {c.restored_to.isoformat()}: "
                     f"{c.data_loss_seconds} s of data lost, {c.status}")
    if r.quota is not None:
        q = r.quota
        lines.append(f"quota {q.year_start.date()}..{q.year_end.date()}: granted {q.granted_seconds} s, "
                     f"used {q.used_seconds} s, exempt {q.exempt_seconds} s, remaining "
                     f"{q.remaining_seconds} s{'  WARNING' if q.warning else ''}")
    for h in r.holidays:
        lines.append(f"holidays {h.country} {h.year}: {h.source}")
    lines.append(f"digest {r.digest}")
    return "".join(printable(line) + "\n" for line in lines)


@click.group()
def calendar() -> None:
    """Public holidays: pin the installed package's dates in the ledger, or show those in force."""


def _country(value: str) -> str:
    if not _COUNTRY.fullmatch(value):
        raise BadInput(f"--country {value!r}: expected a country code like \"CA\" or \"CA-ON\"")
    from ledger.policy import _check_holidays

    _check_holidays(value, "--country")
    return value


@calendar.command()
@click.option("--country", required=True, help='Country code as in policies: "CA", "CA-ON".')
@click.option("--years", required=True, metavar="YYYY-YYYY", help="The years to pin (or one year).")
@pass_ctx
def pin(ctx: Context, country: str, years: str) -> None:
    """Record the installed `holidays` package's dates as holidays_pinned facts; prints their positions."""
    from ledger.calendar import FIRST_YEAR, LAST_YEAR
    from ledger.support_read import pin_facts

    m = _YEARS.fullmatch(years)
    first, last = (int(m.group(1)), int(m.group(2) or m.group(1))) if m else (0, -1)
    if m is None or not FIRST_YEAR <= first <= last <= LAST_YEAR or last - first > 100:
        raise BadInput(f"--years {years!r}: expected YYYY-YYYY, first <= last, at most 101 years, "
                       f"within {FIRST_YEAR}..{LAST_YEAR}")
    result = ctx.ledger(create=True).append_facts(pin_facts(_country(country), first, last))
    if result.appended:
        click.echo(f"{result.first_position}..{result.last_position}")
    if result.skipped:
        click.echo(f"{result.skipped} already recorded", err=True)


@calendar.command()
@click.option("--country", required=True, help='Country code as in policies: "CA", "CA-ON".')
@click.option("--year", required=True, type=int, help="The year.")
@pass_ctx
def show(ctx: Context, country: str, year: int) -> None:
    """The holiday dates in force for a country-year and where they come from."""
    from ledger.support_read import holidays_in_force

    days, source = holidays_in_force(ctx.ledger(create=False), _country(country), year)
    click.echo(f"{country} {year}: {source}")
    for d in days:
        click.echo(d.isoformat())
