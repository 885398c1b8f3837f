"""The report tables' rows: a report or a failed month as one backend's column types.

The view's port takes rows (``ledger.persistence.port.ViewRows``), not reports:
persistence does not import the projection's types.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, NamedTuple

import msgspec

from ledger.errors import one_line
from ledger.persistence.port import Pair, ViewRows
from projections.model import Report


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


def view_rows(items: Iterable[Report | Failed], *, text: bool) -> ViewRows:
    """The view's rows for reports and failed months, in the column types of a ``text`` view or not."""
    reports, failed = split(items)
    monthly, intervals, credits = rows(reports, text=text)
    return ViewRows(monthly, intervals, credits, [(f.contract, f.month, f.position, f.error) for f in failed])


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


class Failed(msgspec.Struct, frozen=True, array_like=True):
    """A contract-month the fold could not evaluate: at which position, and the error as one line."""

    contract: str
    month: str
    position: int
    error: str


ERROR_CHARS: Final = 500  # of a failure's message kept in the view: enough for the cause, not a dump


def failure(pair: Pair, position: int, exc: BaseException) -> Failed:
    """``exc`` as the record of ``pair`` failing at ``position``."""
    text = one_line(f"{type(exc).__name__}: {exc}")
    if len(text) > ERROR_CHARS:
        text = text[: ERROR_CHARS - 3] + "..."
    return Failed(pair[0], pair[1], position, text)


def split(items: Iterable[Report | Failed]) -> tuple[list[Report], list[Failed]]:
    reports: list[Report] = []
    failed: list[Failed] = []
    for item in items:
        if isinstance(item, Failed):
            failed.append(item)
        else:
            reports.append(item)
    return reports, failed

