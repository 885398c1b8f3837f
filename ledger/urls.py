"""Store URLs: which store a URL names, checked before anything is opened, and how to show it.

``sqlite:///relative/path`` and ``sqlite:////absolute/path`` name a SQLite file;
``postgresql://`` and ``postgres://`` URLs name PostgreSQL, and are read by libpq's own URI
rules in that backend (``ledger.bootstrap.parse_store_url``). Everything else is refused. A URL
is only ever shown with its password replaced by ``***`` (``redact``).
"""

from __future__ import annotations

import os
import re
from typing import Final

from ledger.errors import BadInput
from ledger.text import printable

DEFAULT_STORE: Final = "sqlite:///ledger.db"
SQLITE_PREFIX: Final = "sqlite:///"
POSTGRES_PREFIXES: Final = ("postgresql://", "postgres://")
EXPECTED: Final = "expected sqlite:///PATH or postgresql://USER@HOST:PORT/DBNAME"

# The password of a URL's user info runs to the last "@": greedy, so that a password holding
# an unescaped "@" (which libpq would split at) is still hidden whole. It may hide more than
# the password when a later "@" sits in the query; a URL is shown for people, never parsed back.
# Both compiled when first used (``re``'s cache): a URL without "@" and "=" holds neither, and
# compiling them cost every command's start-up (issue 17).
_USERINFO_PASSWORD: Final = r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*):(.*)@"
_PASSWORD_PARAM: Final = r"(?i)(password=)([^&\s]*)"  # sslpassword= too
_CONTROL: Final = frozenset(map(chr, [*range(0x20), 0x7F]))
_SCRUB_FROM: Final = 3  # shorter "passwords" would blank out ordinary words of a message


def redact(url: str) -> str:
    """``url`` with its password (user info or ``password=``) as ``***`` and control characters escaped."""
    if "@" not in url and "=" not in url:  # what both patterns need, literally
        return printable(url)
    shown = re.sub(_USERINFO_PASSWORD, r"\1:***@", url, count=1)
    return printable(re.sub(_PASSWORD_PARAM, r"\1***", shown))


def url_secrets(url: str) -> tuple[str, ...]:
    """The passwords ``url`` holds, as written and percent-decoded (longest first)."""
    from urllib.parse import unquote  # messages only: urllib.parse costs every command's start-up

    found = []
    m = re.match(_USERINFO_PASSWORD, url)
    if m:
        found.append(m.group(2))
    found += [p.group(2) for p in re.finditer(_PASSWORD_PARAM, url)]
    every = {s for raw in found for s in (raw, unquote(raw)) if len(s) >= _SCRUB_FROM}
    return tuple(sorted(every, key=len, reverse=True))


def scrub(message: str, url: str) -> str:
    """``message`` with ``url`` shown redacted and any of its passwords replaced by ``***``."""
    if url:
        message = message.replace(url, redact(url))
    for secret in url_secrets(url):
        message = message.replace(secret, "***")
    return message


def store_url(url: str | None) -> str:
    """The store URL from the option, else ``LEDGER_STORE``, else the default (an empty option is refused)."""
    if url is None:
        # An empty LEDGER_STORE counts as unset, as click reads it for --store.
        return os.environ.get("LEDGER_STORE") or DEFAULT_STORE
    if not url:
        raise BadInput(f"--store: the store URL is empty ({EXPECTED})")
    return url


def backend_of(url: str) -> str | None:
    """Which backend ``url`` names by its scheme: ``"sqlite"``, ``"postgres"``, or None (neither)."""
    if url.startswith("sqlite:"):
        return "sqlite"
    if url.startswith(POSTGRES_PREFIXES):
        return "postgres"
    return None


def check_url_text(url: str) -> str:
    """``url`` shown redacted, once it is known to be non-empty and free of control characters."""
    shown = redact(url)
    if not url:
        raise BadInput(f"store URL is empty ({EXPECTED})")
    if not _CONTROL.isdisjoint(url):
        raise BadInput(f"store URL {shown}: holds a control character")
    return shown


def sqlite_path(url: str) -> str:
    """``sqlite:///rel/path`` -> ``rel/path``; ``sqlite:////abs/path`` -> ``/abs/path`` (taken as written)."""
    shown = redact(url)
    if not url.startswith(SQLITE_PREFIX):
        raise BadInput(f"store URL {shown}: a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path")
    path = url[len(SQLITE_PREFIX) :]
    if not path:
        raise BadInput(f"store URL {shown}: no file path")
    if any(c in path for c in "?#%"):
        # The path is used as written: a query or a %-escape would be read differently by
        # other tools (and by SQLite's own URI filenames), so neither is guessed at.
        raise BadInput(f"store URL {shown}: `?`, `#` and `%` are not allowed in a SQLite path")
    if ":memory:" in path or "mode=memory" in path:
        raise BadInput(f"store URL {shown}: an in-memory database is gone when the command ends; name a file")
    if path.endswith("/") or os.path.isdir(path):
        raise BadInput(f"store URL {shown}: {printable(path)} is a directory, not a file")
    return path
