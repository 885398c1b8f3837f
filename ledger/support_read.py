"""Reading a contract-month's support facts through the key index, and the ``ledger support`` use cases
(the report, and the view its HTML page draws).

Kept apart from ``ledger.application`` (one function each, taking the ``Ledger``). A
contract-month reads the tickets opened in the UTC months it touches (``u:``), the
time logged in the UTC months of its subscription year up to the month's end (``q:``,
with logs recorded before their ticket), every fact about those tickets (``t:``), the
service's facts (``s:``, for downtime stretches, engagements and recoveries) and the
pins of the countries its support clock names (``h:``): the month and the quota year,
not the contract's history. A contract whose tickets a store written before
month-bounded reads holds under ``o:<contract>`` is read whole, as then.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Final, NamedTuple

import msgspec

from ledger.application import Ledger
from ledger.calendar import check_month, month_bounds
from ledger.contracts import ContractVersion, in_force
from ledger.events import HolidaysPinned, Recorded
from ledger.month_read import versions_upto
from ledger.persistence.keys import (
    holidays_key,
    logged_key,
    opened_key,
    reference_key,
    ticket_key,
    tickets_key,
    utc_months,
)
from ledger.persistence.port import LedgerRecorder
from ledger.policy import Policy, SupportSection, resolve
from ledger.runtime import paused_gc
from ledger.support_hours import package_holidays, package_version
from projections.support_index import support_countries
from projections.support_model import SupportReport

if TYPE_CHECKING:
    from projections.model import LogCheckpoint


def _support_records(ledger: Ledger, contract: str, month: str,
                     upto: int) -> tuple[ContractVersion, Policy, list[Recorded], list[Recorded]]:
    """The version and policy in force, the service's facts and pins, and the ticket facts."""
    rec = ledger.recorder
    version = in_force(versions_upto(rec, contract, upto), month)
    policy = resolve(version.policy)
    service = version.policy.contract.service
    own = ledger.service_records([service], [contract], upto)
    tickets = ticket_records(rec, policy, month, upto)
    # The calendar's country too: the downtime stretches come from the availability fold,
    # whose maintenance verdicts read its pinned holidays.
    countries = set(support_countries(version.policy))
    if version.policy.calendar is not None and version.policy.calendar.holidays is not None:
        countries.add(version.policy.calendar.holidays)
    pins = [holidays_key(c) for c in sorted(countries)]
    pinned = list(rec.read_keyed(pins, upto)) if pins else []
    return version, policy, _by_position([*own, *pinned]), tickets


def ticket_records(recorder: LedgerRecorder, policy: Policy, month: str, upto: int) -> list[Recorded]:
    """The ticket facts a contract-month's support figures can depend on, up to ``upto``, by position.

    The tickets opened in the UTC months the month touches, the tickets with time logged
    in the UTC months of the quota year up to the month's end, and every fact about them;
    the fold keeps what is its own (``projections.support``). The contract's history
    before that is not read, unless a store written before holds its tickets the earlier way.
    """
    from projections.support import year_bounds  # deferred: the fold is heavy to import

    contract = policy.contract_id
    legacy = list(recorder.read_keyed([tickets_key(contract)], upto))
    if legacy:  # a store written before month-bounded reads: the contract's whole history
        opened = [*legacy, *recorder.read_key_prefix(opened_key(contract, ""), upto)]
        refs = sorted({key for r in opened if (key := reference_key(r.fact)) is not None})
        return _by_position([*opened, *(recorder.read_keyed(refs, upto) if refs else ())])
    ms, me = month_bounds(month, policy.timezone)
    keys = [opened_key(contract, m) for m in utc_months(ms, me)]
    if policy.support is not None and policy.support.quota is not None:
        ys, ye = year_bounds(policy, ms)
        for m in utc_months(ys, min(me, ye)):
            keys += [logged_key(contract, m), logged_key(None, m)]
    # Only the tickets these facts name: a decoder that reads nothing else of them.
    tickets = sorted({ticket_key(_TICKET_OF.decode(state)[2].ticket)
                      for _, state in recorder.read_keyed_states(keys, upto)})
    return list(recorder.read_keyed(tickets, upto)) if tickets else []  # each once, by position


class _Names(msgspec.Struct):
    ticket: str


_TICKET_OF: Final = msgspec.json.Decoder(tuple[msgspec.Raw, msgspec.Raw, _Names, msgspec.Raw])


def _by_position(records: Iterable[Recorded]) -> list[Recorded]:
    """Records in position order, each once (a support fact can come under two of the keys read)."""
    return sorted({r.position: r for r in records}.values(), key=_POSITION)


_POSITION: Final = attrgetter("position")


def replay_upto(ledger: Ledger, as_of: datetime | None, position: int | None) -> tuple[int, datetime | None]:
    """The position and replay point of ``--as-of`` / ``--position`` (as ``ledger audit`` reads them)."""
    if as_of is None and position is None:
        return ledger.recorder.last_position(), None
    return ledger.replay_upto(as_of, position)


def support_report(ledger: Ledger, contract: str, month: str, *, as_of: datetime | None = None,
                   position: int | None = None) -> SupportReport:
    """``ledger support``: the month's support figures, replayed as of a point when asked."""
    check_month(month, "month")
    upto, point = replay_upto(ledger, as_of, position)
    return support_at(ledger, contract, month, upto, point)


def support_at(ledger: Ledger, contract: str, month: str, upto: int, point: datetime | None) -> SupportReport:
    """The month's support figures from what was recorded up to ``upto`` (``point``: a replay's instant)."""
    return _evaluated(ledger, contract, month, upto, point)[0]


def _evaluated(ledger: Ledger, contract: str, month: str, upto: int,
               point: datetime | None) -> tuple[SupportReport, Policy, list[Recorded]]:
    from projections.availability import downtime_stretches_used  # deferred: the folds are heavy to import
    from projections.support import evaluate_support

    with paused_gc():
        version, policy, others, tickets = _support_records(ledger, contract, month, upto)
        # The availability timeline of the service's facts (tickets are none of its business).
        stretches, shaped = downtime_stretches_used(others, policy, month, replay_point=point)
        records = sorted([*others, *tickets], key=_POSITION)  # two runs in order, none in both
        report = evaluate_support(records, policy, version.version, month, as_of_position=upto,
                                  stretches=stretches, stretch_holidays=shaped, replay_point=point)
        return report, policy, records


def explained_at(ledger: Ledger, contract: str, month: str, upto: int,
                 point: datetime | None) -> tuple[SupportReport, dict[str, str]]:
    """``support_at`` and one line per ticket saying how its deadline and status came about."""
    from projections.support_explain import explain_tickets

    report, policy, records = _evaluated(ledger, contract, month, upto, point)
    return report, explain_tickets(records, policy, report, point)


class SupportView(NamedTuple):
    """What the support page shows beside the report: the clock's open hours and the facts cited."""

    report: SupportReport
    replay_point: datetime | None
    clock_timezone: str | None  # the support clock's zone (None: the policy has no [support])
    clock: tuple[str, ...]  # the clock as the policy words it: spans, holidays, closures
    open_hours: tuple[tuple[datetime, datetime], ...]  # within the month, in order
    facts: list[Recorded]  # every fact a line of the report cites, by position
    checkpoint: LogCheckpoint | None  # the log the report was computed from (its first as_of_position facts)
    explanations: dict[str, str]  # ticket -> how its deadline and status came about


def support_view(ledger: Ledger, contract: str, month: str, *, as_of: datetime | None = None,
                 position: int | None = None) -> SupportView:
    """``ledger support --format html``: the report and what its page draws, from one read of the facts."""
    from projections.support_clock import cited_positions, month_open_hours
    from projections.support_explain import explain_tickets

    check_month(month, "month")
    upto, point = replay_upto(ledger, as_of, position)
    report, policy, records = _evaluated(ledger, contract, month, upto, point)
    by_position = {r.position: r for r in records}
    facts = [by_position[p] for p in cited_positions(report)]  # the fold cites only what it was given
    rules, sec = policy.support, policy.source.support
    clock: list[str] = []
    if isinstance(sec, SupportSection):
        clock += sec.hours
        if sec.holidays is not None:
            clock.append(f"closed on {sec.holidays} public holidays")
        clock += [f"closed {c.window} on {c.holidays} public holidays" for c in sec.closures]
    return SupportView(
        report=report,
        replay_point=point,
        clock_timezone=rules.timezone.key if rules is not None else None,
        clock=tuple(clock),
        open_hours=month_open_hours(records, policy, month),
        facts=facts,
        checkpoint=ledger.log_checkpoint(upto),
        explanations=explain_tickets(records, policy, report, point),
    )


def pin_facts(country: str, first: int, last: int) -> list[HolidaysPinned]:
    """``holidays_pinned`` facts of the installed package's dates for ``country``, ``first``..``last``."""
    return [HolidaysPinned(country=country, year=y,
                           dates=tuple(d.isoformat() for d in sorted(package_holidays(country, y))))
            for y in range(first, last + 1)]


def holidays_in_force(ledger: Ledger, country: str, year: int) -> tuple[list[date], str]:
    """The dates in force for a country-year and where they come from (the latest pin, else the package)."""
    held = ledger.recorder.read_keyed([holidays_key(country)], ledger.recorder.last_position())
    pins = [r.fact for r in held if isinstance(r.fact, HolidaysPinned) and r.fact.year == year]
    if pins:
        return [date.fromisoformat(d) for d in pins[-1].dates], "pinned"
    return sorted(package_holidays(country, year)), package_version()
