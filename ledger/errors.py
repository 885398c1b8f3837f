"""Errors that reach the user as one line and a non-zero exit."""


class LedgerError(Exception):
    """Base class: the message is shown to the user as it is."""


class BadInput(LedgerError):
    """Input refused: malformed, invalid, or inconsistent with the ledger."""


class NotFound(LedgerError):
    """A contract, month or event the command names is not in the ledger."""


class StoreError(LedgerError):
    """The store cannot be opened or written (URL, connection, schema)."""
