"""What the command line prints for people and reporting jobs (INTERFACE.md section 8): the glue
between one call into the ledger and the renderers (HTML pages, many reports at once)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import msgspec

from ledger.contracts import ContractVersion, find, in_force
from ledger.errors import BadInput
from ledger.events import FACT_TYPES, Recorded
from projections.model import Audit, Evaluation, Explanation, Report

if TYPE_CHECKING:  # the pages' and verify's modules load with the commands that print them
    from ledger.application import Ledger
    from ledger.verify import VerifyResult


def _records(ledger: Ledger, report: Report, explanation: Explanation) -> list[Recorded]:
    """The facts the page cites, as recorded (all at or below the report's position by construction)."""
    from cli.html import cited

    return list(ledger.recorder.read_positions(cited(report, explanation)))


def _deadline(ledger: Ledger, report: Report) -> datetime | None:
    """The month's claim deadline under the version in force, if the contract has one."""
    from projections.credit import claim_deadline

    versions = find(ledger.contracts(report.as_of_position), report.contract)
    credits = in_force(versions, report.month).policy.credits
    if credits is None or credits.claim_deadline_days is None:
        return None
    return claim_deadline(report.month, ZoneInfo(report.timezone), credits.claim_deadline_days)


def report_page(ledger: Ledger, ev: Evaluation) -> str:
    """``ledger report --format html``."""
    from cli.html import report_html

    return report_html(ev.report, ev.explanation, _records(ledger, ev.report, ev.explanation),
                       _deadline(ledger, ev.report))


def audit_page(ledger: Ledger, a: Audit) -> str:
    """``ledger audit --format html``."""
    from cli.html import audit_html

    return audit_html(a, _records(ledger, a.report, a.explanation), _deadline(ledger, a.report))


def many_reports(ledger: Ledger, month: str, contracts: Sequence[str], fmt: str, intervals: bool) -> str:
    """``ledger report --month M`` for every contract (or those named): table, CSV, JSON array, NDJSON."""
    from cli.render import report_csv, summary_table
    from ledger.monthly import month_reports
    from projections.model import to_json

    if fmt == "html":
        raise BadInput("--format html: give exactly one --contract")
    reports = month_reports(ledger, month, contracts)
    if fmt == "json":
        return "[" + ",".join(to_json(r).decode() for r in reports) + "]\n"
    if fmt == "ndjson":
        return "".join(to_json(r).decode() + "\n" for r in reports)
    if fmt == "csv":
        return report_csv(reports, intervals=intervals)
    return summary_table(reports)


def contracts_json(versions: dict[str, list[ContractVersion]]) -> str:
    """``ledger contract list --format json``: each contract's latest version, in id order."""
    rows = []
    for cid in sorted(versions):
        last = versions[cid][-1]
        c = last.policy.contract
        rows.append({"contract": cid, "customer": c.customer, "service": c.service,
                     "versions": last.version, "timezone": c.timezone,
                     "effective_from": last.effective_from, "position": last.position})
    return msgspec.json.encode(rows).decode()


def verify_json(result: VerifyResult, expected: str | None) -> str:
    """``ledger verify --format json``: the outcome as one object (exit 3 still says it failed)."""
    return msgspec.json.encode({
        "ok": result.ok, "position": result.position, "head": f"sha256:{result.head}",
        "problem": result.problem, "expected": f"sha256:{expected}" if expected else None,
        "expected_at": result.expected_at,
    }).decode()


def selected(ledger: Ledger, service: str | None, since: datetime | None, until: datetime | None,
             after: int | None, types: Sequence[str]) -> Iterator[Recorded]:
    """``ledger events`` with ``--after-position`` and ``--type``: a type not in the ledger is bad input."""
    for t in types:
        if t not in FACT_TYPES:
            raise BadInput(f"--type {t!r}: not an event type (one of: {', '.join(FACT_TYPES)})")
    kinds = tuple(FACT_TYPES[t] for t in types)
    if service is None and since is None and until is None:
        # Read from the position on, not the whole log: the incremental export of a large ledger.
        source: Iterable[Recorded] = ledger.recorder.read_records((after or 0) + 1)
    else:
        source = ledger.events(service, since, until)
    for rec in source:
        if after is not None and rec.position <= after:
            continue
        if kinds and not isinstance(rec.fact, kinds):
            continue
        yield rec
