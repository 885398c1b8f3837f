"""The store port's row tuples: a fact ready to append, the log's head, the reporting view's rows.

Apart from ``ledger.persistence.port``, which names them as types only: a read (``ledger
report``) makes none of them, and a NamedTuple costs about 0.5M instructions to define, paid
by every command's start-up while the port defined them (issue 17). No ``from __future__
import annotations`` here: typing would compile each field's type from a string.
"""

from datetime import datetime
from typing import Any, NamedTuple


class Prepared(NamedTuple):
    """A fact ready to append (``ledger.ingest``): everything the writer needs, computed once."""

    line: int  # its line (or place) in the input, for messages
    id: str
    id_json: bytes
    topic: str  # its type tag
    key: str | tuple[str, ...]  # its index key (keys: a support fact, ``keys.KEY_OF``)
    canon: bytes  # its canonical JSON
    recorded_at: bytes | None  # its own recorded_at as JSON (an exported line), else None
    claim: tuple[str, str] | None  # the name it gives or the contract it versions (consistency.Claim)


class Head(NamedTuple):
    """The last recorded position, its chain hash and its recorded_at."""

    position: int
    hash: str
    recorded_at: datetime | None


class ViewRows(NamedTuple):
    """Rows for the view's tables (``ROW_TABLES``), in the backend's column types (``ReportingView.text``)."""

    monthly: list[tuple[Any, ...]]
    intervals: list[tuple[Any, ...]]
    credits: list[tuple[Any, ...]]
    failed: list[tuple[Any, ...]]  # (contract, month, position, error)
    tickets: list[tuple[Any, ...]]  # a contract-month's tickets (section 6.3), in opening order
    targets: list[tuple[Any, ...]]  # its response targets, in the policy's order
