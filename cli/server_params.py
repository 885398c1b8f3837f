"""How ``ledger serve`` reads its query parameters and Accept header (one-line BadInput when wrong)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ledger.calendar import check_instant, rfc3339
from ledger.errors import BadInput


def single_values(items: Iterable[tuple[str, str]]) -> dict[str, str]:
    """A query string's parameters, each given once: ``?position=1&position=2`` is ambiguous, not the last."""
    values: dict[str, str] = {}
    for name, value in items:
        if name in values:
            raise BadInput(f"query parameter `{name}`: given more than once")
        values[name] = value
    return values


def whole_number(name: str, text: str | None) -> int | None:
    """A query parameter holding a position or a size (None when absent)."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise BadInput(f"{name} {text!r}: expected a whole number")
    return int(text)


def instant(text: str | None) -> datetime | None:
    if text is None:
        return None
    at = rfc3339(text)
    if at is None:
        # A `+` left raw in a query string arrives as a space: say so, not only that the offset is missing.
        hint = " (write a `+` offset as %2B in a query string)" if " " in text else ""
        raise BadInput(f"as_of {text!r}: expected an RFC 3339 timestamp with an offset{hint}")
    if at.tzinfo is None:
        raise BadInput(f"as_of {text!r}: the timestamp has no offset")
    return check_instant(at, "as_of")


def wants_html(accept: str) -> bool:
    """Whether Accept names ``text/html`` and prefers it to JSON (a browser's does; ``*/*`` does not)."""
    html = json = 0.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media == "text/html":
            html = max(html, q)
        elif media in ("application/json", "application/*", "*/*"):
            json = max(json, q)
    return html > 0 and html >= json
