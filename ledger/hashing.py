"""SHA-256 for the ledger's digests, without loading OpenSSL where the interpreter can avoid it.

``import hashlib`` always imports ``_hashlib``, whose loading (the dynamic linking of
libcrypto and its table of every digest the providers offer) costs about 10M
instructions, 3 % of a whole ``ledger report`` (issue 17). Only SHA-256 is needed, and
CPython builds it in: ``_sha256`` (3.11), ``_sha2`` (3.12 on). Those are private
modules, used here the way the standard library's own ``random`` uses ``_sha512``:
looked up by name, with ``hashlib`` as the fallback when neither exists (another
interpreter, a build without them). The digest is SHA-256 either way: the bytes are
the same. For the ledger's inputs (tens to hundreds of bytes) the builtin is as fast
as OpenSSL's on small ones and about 1.5 times slower at 300 bytes (a fraction of a
microsecond per call); nothing here hashes bulk data.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:  # a type only: a Protocol class costs every command's start-up (issue 17)

    class Hash(Protocol):
        """What the ledger uses of a hash object."""

        def update(self, data: bytes, /) -> None: ...

        def digest(self) -> bytes: ...

        def hexdigest(self) -> str: ...


def _sha256() -> Callable[[bytes], Hash]:
    for name in ("_sha256", "_sha2"):
        try:
            found: Callable[[bytes], Hash] = importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
        return found
    import hashlib

    return hashlib.sha256


sha256: Final = _sha256()
