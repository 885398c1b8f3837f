"""Reading NDJSON input line by line without ever holding more than one bounded line.

Iterating a file object reads each line whole, however long: a 100 MB line
costs a few hundred MB before anyone can refuse it. ``bounded_lines`` asks for
at most ``limit + 1`` bytes per read, so an over-long line is refused after
reading just past the limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from ledger.application import MAX_LINE
from ledger.errors import BadInput


def bounded_lines(file: BinaryIO, limit: int = MAX_LINE) -> Iterator[bytes]:
    """The lines of ``file`` (newline kept), refusing one longer than ``limit`` bytes by its number."""
    lineno = 0
    while True:
        line = file.readline(limit + 1)
        if not line:
            return
        lineno += 1
        # Same measure as Ledger.import_lines (the newline counts), so both refuse the same lines.
        if len(line) > limit:
            raise BadInput(f"line {lineno}: longer than {limit} bytes")
        yield line
