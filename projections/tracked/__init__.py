"""Reporting projections: SQL tables that reporting jobs read, kept up to date from the ledger.

Three tables (docs/reporting.md) hold, per contract-month, the report's figures,
its intervals and its credit; two more its support figures (``ledger support``: its
tickets and its response targets), computed from the same facts in the same pass.
They live in the ledger's own database, written by a tracking recorder of the
eventsourcing library (each backend's ``ReportingView``): the rows of a batch and the
tracking position (application "ledger", position = notification id) are written in one transaction,
so the view is always exactly "the ledger up to position N".

The package by job: ``rows`` (a report as the tables' rows), ``evaluator``, ``projection``
(``ReportingProjection``, one notification or one page at a time), ``rebuilding`` (the
parallel rebuild and its spool), ``runner`` (status, and a worker that follows the ledger).

``rebuild`` resets the view and its tracking and recomputes every contract-month
service by service through the key index. It holds the view's fence for its whole run,
and every write of a worker takes it too, so the two never interleave; tracking never
moves back. A contract-month whose fold raises is recorded in ``report_failed_months``
instead of stopping the view (docs/decisions.md, issue 15).
"""

from __future__ import annotations

from eventsourcing.persistence import Tracking

from ledger.persistence.port import (
    APP_NAME,
    FAILED_TABLE,
    PAGE,
    SUPPORT_TABLES,
    TABLES,
    TRACKING_TABLE,
    ProjectionError,
)
from projections.tracked.evaluator import Evaluator
from projections.tracked.projection import LedgerLike, ReportingProjection, open_view
from projections.tracked.rebuilding import RebuildResult, rebuild
from projections.tracked.rows import Failed, SupportRows, failure, rows, support_rows, view_rows
from projections.tracked.runner import Status, run, status

__all__ = [
    "APP_NAME", "FAILED_TABLE", "PAGE", "SUPPORT_TABLES", "TABLES", "TRACKING_TABLE", "Evaluator", "Failed",
    "LedgerLike", "ProjectionError", "RebuildResult", "ReportingProjection", "Status", "SupportRows",
    "Tracking", "failure", "open_view", "rebuild", "rows", "run", "status", "support_rows", "view_rows",
]
