"""Text from facts and policies, made safe to show on a terminal or in a spreadsheet."""

from __future__ import annotations

from functools import cache
from typing import Final


def _escape(code: int) -> str:
    if code in (0x09, 0x0A, 0x0D):
        return {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}[code]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


# Every character that moves the cursor, starts a terminal escape sequence, breaks a line
# or reorders what follows it: C0, DEL, C1, the Unicode line and paragraph separators and
# the bidirectional controls (marks, embeddings, overrides, isolates; U+061C is Arabic's mark).
_UNSAFE: Final = (
    *range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), 0x061C, 0x200E, 0x200F, 0x2028, 0x2029,
    *range(0x202A, 0x202F), *range(0x2066, 0x206A),
)


@cache
def _table() -> dict[int, str]:
    """The escapes, made on first use: 0.3M instructions that a report whose texts are all
    printable (``str.isprintable``: none of ``_UNSAFE`` is) does not need (issue 17)."""
    return {code: _escape(code) for code in _UNSAFE}


@cache
def _page_table() -> dict[int, str]:
    """The escapes of ``visible``: ``_table`` but tab, line feed and carriage return, blanks on a page."""
    return {code: text for code, text in _table().items() if code not in (0x09, 0x0A, 0x0D)}


# A spreadsheet reads a cell starting with one of these as a formula (OWASP, CSV injection).
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def printable(text: str) -> str:
    """``text`` with control, line-breaking and bidi characters escaped (``\\n``, ``\\x1b``, ``\\u202e``)."""
    return text if text.isprintable() else text.translate(_table())


def visible(text: str) -> str:
    """``text`` for an HTML page: controls and bidi characters escaped as ``printable`` does, blanks kept.

    Markup is the template engine's to escape; a right-to-left override is not markup, and
    left as it is it would show the rest of its line (a reason, an id, a fact's JSON line)
    reversed, figures included.
    """
    return text if text.isprintable() else text.translate(_page_table())


# An error line longer than this is shortened in its middle, where what it echoes (an id, a
# value) runs on: its start names the field or line, its end says what was wrong. Above any
# message echoing a name the ledger accepts (512 characters) with its context.
MAX_ERROR: Final = 1000


def shortened(message: str, limit: int = MAX_ERROR) -> str:
    """``message`` whole up to ``limit`` characters; else its start and end, saying how much was left out."""
    if len(message) <= limit:
        return message
    head, tail = limit * 3 // 5, limit * 3 // 10
    cut = len(message) - head - tail
    return f"{message[:head]}...[{cut:,} of {len(message):,} characters left out]...{message[-tail:]}"


def bom_or(data: bytes | str, what: str, otherwise: str, where: str = "") -> str:
    """Why ``data`` (``what``: JSON, TOML) did not parse: a leading byte order mark, or ``otherwise``.

    JSON, NDJSON and TOML alike: a BOM is refused, never skipped, and named (the parsers' own
    words were "invalid character (byte 0)" and "Invalid statement").
    """
    if not (data.startswith("\ufeff") if isinstance(data, str) else data.startswith(b"\xef\xbb\xbf")):
        return otherwise
    return (f"{where}a UTF-8 byte order mark (U+FEFF) at the start, which is not {what}; "
            "save as UTF-8 without a BOM")


def csv_text(text: str) -> str:
    """A CSV cell for text from facts or policies: no formula, no control character."""
    if text.startswith(_FORMULA_START):
        text = "'" + text
    return printable(text)
