"""Import NDJSON lines prepared in this process: the in-process route of ``Ledger.import_file``, for tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ledger.application import Ledger
from ledger.ingest.lines import prepare_lines
from ledger.persistence.append import append_prepared
from ledger.persistence.port import AppendResult


def import_lines(ledger: Ledger, lines: Iterable[bytes | str],
                 progress: Callable[[int], None] | None = None) -> AppendResult:
    """All-or-nothing, a bad line named by number: what ``import_file`` does with a short input."""
    return append_prepared(ledger.recorder, prepare_lines(lines), ledger.clock, progress=progress)
