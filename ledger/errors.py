"""Errors that reach the user as one line and a non-zero exit."""

from __future__ import annotations

import re
from typing import Final

# Everything str.splitlines() splits on: escaped so that a message stays one line
# whatever the input echoed in it (an unknown field name may contain a line break). Compiled
# when first used (``re``'s cache): every command imports this module, few raise (issue 17).
_BREAKS: Final = "[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]"


def one_line(message: str) -> str:
    """The message with every line break escaped (``\\n``, ``\\u2028``...)."""
    return re.sub(_BREAKS, lambda m: m.group().encode("unicode_escape").decode("ascii"), message)


class LedgerError(Exception):
    """Base class: the message is shown to the user as it is, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class BadInput(LedgerError):
    """Input refused: malformed, invalid, or inconsistent with the ledger."""


class NotFound(LedgerError):
    """A contract, month or event the command names is not in the ledger."""


class StoreError(LedgerError):
    """The store cannot be opened or written (URL, connection, schema)."""


class LockWaitTimeout(StoreError):
    """A writer gave up waiting for the store's append lock; nothing was written."""
