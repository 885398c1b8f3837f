"""The report tables' rows: a report, a support report or a failed month as one backend's column types.

The view's port takes rows (``ledger.persistence.port.ViewRows``), not reports:
persistence does not import the projection's types.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, NamedTuple

import msgspec

from ledger.errors import one_line
from ledger.persistence.port import Pair
from ledger.persistence.rows import ViewRows
from projections.model import Report

if TYPE_CHECKING:
    from projections.support_model import SupportReport


def _utc(instant: datetime) -> datetime:
    return instant.astimezone(UTC)


def _iso(instant: datetime) -> str:
    # RFC 3339 in UTC ("...Z"): sorts as text, and an offset change at DST cannot reorder it.
    return msgspec.json.encode(_utc(instant)).decode()[1:-1]


class Rows(NamedTuple):
    """The three tables' rows for a set of reports, in one backend's column types."""

    monthly: list[tuple[Any, ...]]
    intervals: list[tuple[Any, ...]]
    credits: list[tuple[Any, ...]]


def view_rows(items: Iterable[Item], *, text: bool) -> ViewRows:
    """The view's rows for reports, support rows and failed months, in a ``text`` view's types or not."""
    reports: list[Report] = []
    tickets: list[tuple[Any, ...]] = []
    targets: list[tuple[Any, ...]] = []
    failed: list[Failed] = []
    for item in items:
        if isinstance(item, Report):
            reports.append(item)
        elif isinstance(item, SupportRows):
            if text:
                tickets.extend(tuple(_text(v) for v in row) for row in item.tickets)
                targets.extend(tuple(_text(v) for v in row) for row in item.targets)
            else:
                tickets.extend(item.tickets)
                targets.extend(item.targets)
        else:
            failed.append(item)
    monthly, intervals, credits = rows(reports, text=text)
    return ViewRows(monthly, intervals, credits, [(f.contract, f.month, f.position, f.error) for f in failed],
                    tickets, targets)


def rows(reports: Iterable[Report], *, text: bool) -> Rows:
    """Rows for the view; ``text``: SQLite (decimals, instants and booleans as text/integers)."""

    def dec(value: Decimal) -> str | Decimal:
        return str(value) if text else value

    def flag(value: bool) -> int | bool:
        return int(value) if text else value

    def at(value: datetime) -> str | datetime:
        return _iso(value) if text else _utc(value)

    out = Rows([], [], [])
    for r in reports:
        out.monthly.append((
            r.contract, r.month, r.policy_version, r.timezone,
            dec(r.total_seconds), dec(r.outage_seconds), dec(r.maintenance_seconds),
            dec(r.excused_seconds), dec(r.downtime_seconds),
            r.availability_percent, r.target_percent, flag(r.target_met), r.as_of_position, r.digest,
        ))  # fmt: skip
        for seq, i in enumerate(r.intervals, 1):
            out.intervals.append((
                r.contract, r.month, seq, at(i.start), at(i.end), dec(i.seconds), i.kind, i.reason,
                " ".join(str(p) for p in i.events),
            ))  # fmt: skip
        c = r.credit
        out.credits.append((
            r.contract, r.month, c.percent, c.amount, c.long_outage_amount, c.currency, c.claim,
            flag(c.payable),
        ))  # fmt: skip
    return out


# The columns of report_support_tickets and report_support_targets (docs/reporting.md), natively typed.
TicketRow = tuple[str, str, int, str, str, str, datetime, datetime | None, str, datetime | None, Decimal, str,
                  str, int, int, str]
TargetRow = tuple[str, str, int, str, str, str, int, int | None, int | None, int | None, str | None,
                  bool | None, int, int, str]


class SupportRows(msgspec.Struct, frozen=True, array_like=True):
    """A contract-month's support report as the two tables' rows (instants in UTC, exact decimals).

    Rows, not the report, travel from a rebuild's workers: the report's targets are a union
    of two structs, which msgpack cannot decode untagged.
    """

    contract: str
    month: str
    tickets: list[TicketRow]
    targets: list[TargetRow]


def support_rows(r: SupportReport) -> SupportRows:
    """The rows of one support report: a ticket per row in opening order, a target per row in the policy's."""
    from projections.support_model import MeanTarget  # deferred: a ledger without [support] never needs it

    tail = (r.policy_version, r.as_of_position, r.digest)
    tickets: list[TicketRow] = [
        (r.contract, r.month, seq, t.ticket, t.severity, t.kind, _utc(t.opened_at),
         _utc(t.responded_at) if t.responded_at is not None else None, t.target,
         _utc(t.deadline) if t.deadline is not None else None, t.response_seconds, t.status,
         " ".join(str(p) for p in t.events), *tail)
        for seq, t in enumerate(r.tickets, 1)
    ]
    targets: list[TargetRow] = []
    for seq, g in enumerate(r.targets, 1):
        if isinstance(g, MeanTarget):
            targets.append((r.contract, r.month, seq, g.severity, g.target, g.kind, g.tickets,
                            None, None, None, g.mean_seconds, g.met, *tail))
        else:
            targets.append((r.contract, r.month, seq, g.severity, g.target, g.kind, g.tickets,
                            g.met, g.breached, g.pending, None, None, *tail))
    return SupportRows(r.contract, r.month, tickets, targets)


def _text(value: Any) -> Any:
    """A value as a ``text`` view holds it: instants as RFC 3339 UTC text, decimals as text, flags 0/1."""
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


class Failed(msgspec.Struct, frozen=True, array_like=True):
    """A contract-month the fold could not evaluate: at which position, and the error as one line."""

    contract: str
    month: str
    position: int
    error: str


Item = Report | SupportRows | Failed  # what the projection computes for a contract-month


ERROR_CHARS: Final = 500  # of a failure's message kept in the view: enough for the cause, not a dump


def failure(pair: Pair, position: int, exc: BaseException) -> Failed:
    """``exc`` as the record of ``pair`` failing at ``position``."""
    text = one_line(f"{type(exc).__name__}: {exc}")
    if len(text) > ERROR_CHARS:
        text = text[: ERROR_CHARS - 3] + "..."
    return Failed(pair[0], pair[1], position, text)


def split(items: Iterable[Item]) -> tuple[list[Report], list[Failed], list[SupportRows]]:
    reports: list[Report] = []
    failed: list[Failed] = []
    support: list[SupportRows] = []
    for item in items:
        if isinstance(item, Failed):
            failed.append(item)
        elif isinstance(item, SupportRows):
            support.append(item)
        else:
            reports.append(item)
    return reports, failed, support

