"""The ledger's disk cache: text derived from what is installed, kept between processes.

What is cached here is a pure function of installed files (a ``holidays`` release's
dates, the interpreter's compile-time time-zone path), recomputed whenever the file
name's key (a version, a file's identity) no longer matches. A file is written aside and
renamed, and read only when whole, so concurrent processes never see half of one; a cache
that cannot be written only costs the next process the same computation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import suppress
from typing import Final

CACHE_ENV: Final = "LEDGER_CACHE_DIR"
_END: Final = "#end\n"


def cache_root() -> str | None:
    """``$LEDGER_CACHE_DIR`` (empty: no cache), else ``$XDG_CACHE_HOME/availability-ledger``,
    else ``~/.cache/availability-ledger``."""
    root = os.environ.get(CACHE_ENV)
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "availability-ledger")
    return root or None


def cached_text(path: str | None, compute: Callable[[], str]) -> str:
    """The text stored at ``path``, else ``compute()`` (stored there when the cache is writable).

    ``path`` None: no cache, always computed.
    """
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            if text.endswith(_END):  # a file cut short is never read as whole
                return text[: -len(_END)]
        except OSError:
            pass
    text = compute()
    if path is not None:
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text + _END)
            os.replace(tmp, path)
        except OSError:
            with suppress(OSError):
                os.unlink(tmp)
    return text
