"""Checkpoints of the log (size, Merkle root, recorded_at), Ed25519 signatures, and proofs for auditors.

INTERFACE.md section 7. A checkpoint is ``{"recorded_at", "root", "size"}``; a signed
one adds ``key_id`` (``sha256:`` + hex SHA-256 of the raw 32-byte public key) and
``signature`` (base64 of the Ed25519 signature over the checkpoint's canonical JSON
without those two: keys sorted, no spaces, UTF-8). Keys are PKCS#8 / SubjectPublicKeyInfo
PEM, as ``openssl genpkey -algorithm ed25519`` and ``openssl pkey -pubout`` write them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import msgspec

from ledger import merkle
from ledger.calendar import rfc3339
from ledger.errors import BadInput, StoreError
from ledger.events import Recorded
from ledger.hashing import sha256
from ledger.persistence import merkle_read, merkle_store
from ledger.persistence.port import LedgerRecorder

if TYPE_CHECKING:  # imported where used: cryptography costs the CLI's start-up
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FIELDS: Final = ("recorded_at", "root", "size")
SIGNED: Final = ("key_id", "signature")


class Mismatch(Exception):
    """A checkpoint that does not hold for this store (the CLI exits 3)."""


class Checkpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a checkpoint file holds."""

    size: int
    root: str
    recorded_at: str | None = None  # a report's or audit's checkpoint has only size and root
    key_id: str | None = None
    signature: str | None = None


def canonical(body: dict[str, Any]) -> bytes:
    """Keys sorted, no spaces (what is signed and printed)."""
    return msgspec.json.encode({k: body[k] for k in sorted(body)})


def _record(recorder: LedgerRecorder, position: int) -> Recorded:
    rec: Recorded | None = next(recorder.read_records(position, position), None)
    if rec is None:
        raise StoreError(f"the log has no fact at position {position}")
    return rec


def _size(recorder: LedgerRecorder, size: int | None, option: str = "--size") -> int:
    last = int(recorder.last_position())
    if size is None:
        if last == 0:
            raise BadInput("the log is empty: there is nothing to checkpoint")
        return last
    if size < 1:
        raise BadInput(f"{option} {size}: a checkpoint covers at least position 1")
    if size > last:
        raise BadInput(f"{option} {size}: beyond the log, which ends at position {last}")
    return size


def make(recorder: LedgerRecorder, size: int | None = None) -> dict[str, Any]:
    """The checkpoint of the first ``size`` facts (default: the whole log), from the stored tree."""
    view = merkle_read.TreeView(recorder)
    view.size()  # a store whose tree is not built says so
    n = _size(recorder, size)
    at = msgspec.to_builtins(_record(recorder, n).recorded_at)
    return {"recorded_at": at, "root": merkle.hex_hash(view.root(n)), "size": n}


def key_id(public_raw: bytes) -> str:
    """``sha256:`` + hex SHA-256 of the raw 32-byte public key."""
    return "sha256:" + sha256(public_raw).hexdigest()


def _read(path: str, what: str) -> bytes:
    from pathlib import Path  # here: a report imports this module, and pathlib costs its start-up

    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise BadInput(f"{what} {path}: {exc.strerror or exc}") from None


def load_private_key(path: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from a PKCS#8 PEM file; BadInput naming the file otherwise."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = _read(path, "--sign")
    try:
        key = load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"--sign {path}: not an unencrypted PKCS#8 PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise BadInput(f"--sign {path}: not an Ed25519 key (openssl genpkey -algorithm ed25519)")
    return key


def load_public_key(path: str) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file (a private key's file gives its public half)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key

    data = _read(path, "--key")
    key: Any
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError):
        try:
            key = load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise BadInput(f"--key {path}: not a PEM public key") from None
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise BadInput(f"--key {path}: not an Ed25519 key")
    return key


def _raw(public_key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return bytes(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def sign(checkpoint: dict[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """The checkpoint with ``key_id`` and ``signature``."""
    import base64  # only signing and checking signatures use it (a report imports this module)

    body = {k: checkpoint[k] for k in FIELDS}
    signature = private_key.sign(canonical(body))
    return {**body, "key_id": key_id(_raw(private_key.public_key())),
            "signature": base64.b64encode(signature).decode()}


def parse(data: bytes, name: str) -> Checkpoint:
    """A checkpoint file's content; BadInput in one line if it is not one."""
    try:
        cp = msgspec.json.decode(data.strip(), type=Checkpoint)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        from ledger.text import bom_or  # an error's wording: not a report's import

        raise BadInput(f"{name}: not a checkpoint{bom_or(data, 'JSON', f' ({exc})', ': ')}") from None
    if merkle.parse_hash(cp.root) is None:
        raise BadInput(f"{name}: not a checkpoint (field `root`: expected sha256:<64 lower-case hex>)")
    if cp.size < 1:
        raise BadInput(f"{name}: not a checkpoint (field `size`: {cp.size} is below 1)")
    if cp.recorded_at is not None and getattr(rfc3339(cp.recorded_at), "tzinfo", None) is None:
        raise BadInput(f"{name}: not a checkpoint (field `recorded_at`: expected an instant with its offset, "
                       "as `ledger events` writes it)")
    if (cp.key_id is None) != (cp.signature is None):
        raise BadInput(f"{name}: not a checkpoint (`key_id` and `signature` go together)")
    if cp.signature is not None and cp.recorded_at is None:
        raise BadInput(f"{name}: not a checkpoint (a signed checkpoint has `recorded_at`)")
    if cp.key_id is not None and merkle.parse_hash(cp.key_id) is None:
        raise BadInput(f"{name}: not a checkpoint (field `key_id`: expected sha256:<64 lower-case hex>)")
    if cp.signature is not None and _signature(cp.signature) is None:
        raise BadInput(f"{name}: not a checkpoint (field `signature`: expected the base64 of 64 bytes)")
    return cp


def _signature(text: str) -> bytes | None:
    """The 64 bytes of an Ed25519 signature written in base64, or None if ``text`` is not one."""
    import base64
    import binascii

    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == 64 else None


def check_signature(cp: Checkpoint, public_key: Ed25519PublicKey, name: str) -> str:
    """The key id, if ``public_key`` signed ``cp``; BadInput for a wrong key, Mismatch if altered."""
    from cryptography.exceptions import InvalidSignature

    kid = key_id(_raw(public_key))
    if cp.signature is None or cp.key_id is None:
        raise BadInput(f"{name}: the checkpoint is not signed (verify it without --key)")
    if cp.key_id != kid:
        raise BadInput(f"--key: a wrong key: {name} was signed by {cp.key_id}, this key is {kid}")
    signature = _signature(cp.signature)
    assert signature is not None, "parse checked it"
    body = {"recorded_at": cp.recorded_at, "root": cp.root, "size": cp.size}
    try:
        public_key.verify(signature, canonical(body))
    except InvalidSignature:
        raise Mismatch(f"{name}: the signature does not match the checkpoint (key {kid})") from None
    return kid


def verify(recorder: LedgerRecorder, cp: Checkpoint, name: str) -> str:
    """Check ``cp`` against the log itself (every fact up to its size, not the stored tree); a summary.

    Raises Mismatch if the log of that size has another root or recorded_at, or is
    shorter, or lacks a fact or holds one that no longer decodes, or if the stored tree
    (once built) disagrees with the log or lacks a node of that root.
    """
    last = int(recorder.last_position())
    if cp.size > last:
        raise Mismatch(f"{name}: the checkpoint covers {cp.size} facts, the log now holds {last}: "
                       "facts were removed")
    try:
        computed = merkle.hex_hash(merkle_store.log_root(recorder, cp.size))
    except merkle_store.LogAltered as exc:  # a fact deleted from the middle, or its state made invalid
        raise Mismatch(f"{name}: {exc}: the log's first {cp.size} facts were altered") from None
    if computed != cp.root:
        raise Mismatch(f"{name}: the log's first {cp.size} facts have root {computed}, "
                       f"the checkpoint says {cp.root}")
    at = msgspec.to_builtins(_record(recorder, cp.size).recorded_at)
    if cp.recorded_at is not None and at != cp.recorded_at:
        raise Mismatch(f"{name}: position {cp.size} was recorded at {at}, "
                       f"the checkpoint says {cp.recorded_at}")
    view = merkle_read.TreeView(recorder)
    try:
        view.size()
    except StoreError:
        stored = None  # a store whose tree is not built: the log alone decides
    else:  # built: a node its root needs is missing only if someone removed it
        try:
            stored = merkle.hex_hash(view.root(cp.size))
        except StoreError:
            raise Mismatch(f"{name}: the stored Merkle tree lacks a node of the root of size {cp.size}: "
                           "the tree was altered") from None
    if stored is not None and stored != computed:
        raise Mismatch(f"{name}: the stored Merkle tree has root {stored} for size {cp.size}, "
                       f"the log {computed}: the tree was altered")
    return f"checkpoint ok: size {cp.size}, root {cp.root}"


def inclusion(recorder: LedgerRecorder, position: int, size: int | None = None) -> dict[str, Any]:
    """``{"position", "size", "leaf_hash", "path", "root"}``: RFC 9162 2.1.3 audit path, leaf to root."""
    view = merkle_read.TreeView(recorder)
    view.size()
    n = _size(recorder, size)
    if not 1 <= position <= n:
        raise BadInput(f"--position {position}: outside the log of size {n} (positions 1..{n})")
    leaf, path, root = view.inclusion(position - 1, n)
    return {"position": position, "size": n, "leaf_hash": merkle.hex_hash(leaf),
            "path": [merkle.hex_hash(h) for h in path], "root": merkle.hex_hash(root)}


def consistency(recorder: LedgerRecorder, old: int, new: int) -> dict[str, Any]:
    """``{"from", "to", "from_root", "to_root", "path"}``: RFC 9162 2.1.4 consistency proof."""
    view = merkle_read.TreeView(recorder)
    view.size()
    _size(recorder, new, "--to")
    if old < 1:
        raise BadInput(f"--from {old}: a consistency proof starts at a size of at least 1")
    if old > new:
        raise BadInput(f"--from {old} is after --to {new}")
    old_root, new_root, path = view.consistency(old, new)
    return {"from": old, "to": new, "from_root": merkle.hex_hash(old_root),
            "to_root": merkle.hex_hash(new_root), "path": [merkle.hex_hash(h) for h in path]}
