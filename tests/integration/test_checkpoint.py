"""``ledger checkpoint`` / ``proof`` through the CLI on both stores: outputs, bad input, tampering."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from ledger import merkle
from ledger.bootstrap import open_ledger
from ledger.events import decode_state, export_line
from tests import rfc9162
from tests.conftest import StepClock
from tests.integration.test_merkle_store import lines
from tests.integration.test_tamper import PostgresTamper, SQLiteTamper, Tamper
from tests.lines import import_lines

N = 100  # over a tile (64 leaves): the stored nodes start at level 6 (``merkle_read.STORED_FROM``)


def run(runner: CliRunner, url: str, *args: str) -> Result:
    return runner.invoke(cli, ["--store", url, *args])


def ok_json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def bad(result: Result, code: int, words: str) -> None:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    err = result.stderr.splitlines()
    assert len(err) == 1, result.stderr
    assert words in err[0], err[0]


@pytest.fixture
def url(store_url: str) -> str:
    led = open_ledger(store_url, clock=StepClock())
    try:
        import_lines(led, lines(0, N // 2))
        import_lines(led, lines(N // 2, N // 2))
    finally:
        led.close()
    return store_url


@pytest.fixture
def raw(url: str) -> Tamper:
    return PostgresTamper(url) if url.startswith("postgresql") else SQLiteTamper(url.removeprefix("sqlite:///"))


def event_lines(runner: CliRunner, url: str) -> list[bytes]:
    result = run(runner, url, "events")
    assert result.exit_code == 0, result.output
    return [line.encode() for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def keypairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Two key pairs, made once (openssl takes a moment)."""
    where = tmp_path_factory.mktemp("keys")
    return {name: keys(where, name) for name in ("key", "other")}


def keys(tmp_path: Path, name: str = "key") -> tuple[Path, Path]:
    """An Ed25519 key pair as openssl writes it (PKCS#8 PEM, and the public half)."""
    private, public = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub.pem"
    if shutil.which("openssl"):
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(private)], check=True)
        subprocess.run(["openssl", "pkey", "-in", str(private), "-pubout", "-out", str(public)], check=True)
    else:  # the same PEM, written by the library
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def test_checkpoint_and_proofs_check_with_the_rfc(url: str, runner: CliRunner) -> None:
    events = event_lines(runner, url)
    out = run(runner, url, "checkpoint")
    body = ok_json(out)
    assert list(body) == ["recorded_at", "root", "size"]  # canonical: keys sorted, no spaces
    assert out.stdout.strip() == json.dumps(body, sort_keys=True, separators=(",", ":"))
    assert body["size"] == N
    assert body["root"] == merkle.hex_hash(rfc9162.mth(events))
    assert body["recorded_at"] == json.loads(events[-1])["recorded_at"]
    small = ok_json(run(runner, url, "checkpoint", "--size", "7"))
    assert small["root"] == merkle.hex_hash(rfc9162.mth(events[:7]))
    for position, size in ((1, 1), (1, N), (7, 7), (13, 29), (N, N)):
        args = ("proof", "inclusion", "--position", str(position), "--size", str(size))
        got = ok_json(run(runner, url, *args))
        assert list(got) == ["position", "size", "leaf_hash", "path", "root"]
        leaf = bytes.fromhex(got["leaf_hash"][7:])
        assert leaf == rfc9162.leaf(events[position - 1])
        path = [bytes.fromhex(h[7:]) for h in got["path"]]
        root = rfc9162.mth(events[:size])
        assert rfc9162.verify_inclusion(position - 1, size, leaf, path, root)
    whole = ok_json(run(runner, url, "proof", "inclusion", "--position", "3"))
    assert whole["size"] == N
    for old, new in ((1, 1), (1, 2), (3, 7), (8, 40), (20, 40), (39, 40)):
        got = ok_json(run(runner, url, "proof", "consistency", "--from", str(old), "--to", str(new)))
        assert list(got) == ["from", "to", "from_root", "to_root", "path"]
        path = [bytes.fromhex(h[7:]) for h in got["path"]]
        old_root, new_root = rfc9162.mth(events[:old]), rfc9162.mth(events[:new])
        assert rfc9162.verify_consistency(old, new, old_root, new_root, path)
        assert got["from_root"] == merkle.hex_hash(rfc9162.mth(events[:old]))


@pytest.mark.parametrize(("args", "words"), [
    (("proof", "inclusion", "--position", "0"), "--position 0"),
    (("proof", "inclusion", "--position", str(N + 1)), "outside the log"),
    (("proof", "inclusion", "--position", "3", "--size", str(N + 1)), "beyond the log"),
    (("proof", "consistency", "--from", "5", "--to", "4"), "--from 5 is after --to 4"),
    (("proof", "consistency", "--from", "0", "--to", "4"), "--from 0"),
    (("proof", "consistency", "--from", "1", "--to", str(N + 1)), f"--to {N + 1}: beyond the log"),
    (("checkpoint", "--size", str(N + 1)), "beyond the log"),
    (("checkpoint", "--size", "0"), "--size 0"),
])
def test_bad_input_is_one_line_exit_2(url: str, runner: CliRunner, args: tuple[str, ...], words: str) -> None:
    bad(run(runner, url, *args), 2, words)


def test_signed_checkpoints(url: str, runner: CliRunner, tmp_path: Path,
                            keypairs: dict[str, tuple[Path, Path]]) -> None:
    private, public = keypairs["key"]
    other_private, other_public = keypairs["other"]
    signed = ok_json(run(runner, url, "checkpoint", "--sign", str(private)))
    assert list(signed) == ["recorded_at", "root", "size", "key_id", "signature"]
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

    pub = load_pem_public_key(public.read_bytes())
    raw_key = pub.public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert signed["key_id"] == "sha256:" + __import__("hashlib").sha256(raw_key).hexdigest()
    message = json.dumps({k: signed[k] for k in ("recorded_at", "root", "size")}, sort_keys=True,
                         separators=(",", ":")).encode()
    pub.verify(base64.b64decode(signed["signature"]), message)  # type: ignore[union-attr,call-arg]
    saved = tmp_path / "cp.json"
    saved.write_text(json.dumps(signed))
    out = run(runner, url, "checkpoint", "verify", str(saved), "--key", str(public))
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith(f"checkpoint ok: size {N}, root {signed['root']}, signed by sha256:")
    assert run(runner, url, "checkpoint", "verify", str(saved)).exit_code == 0
    bad(run(runner, url, "checkpoint", "verify", str(saved), "--key", str(other_public)), 2, "wrong key")
    bad(run(runner, url, "checkpoint", "verify", str(saved), "--key", str(tmp_path / "nope.pem")), 2, "--key")
    bad(run(runner, url, "checkpoint", "--sign", str(public)), 2, "--sign")
    # A signed checkpoint whose size was changed: its signature no longer holds.
    edited = tmp_path / "edited.json"
    small = ok_json(run(runner, url, "checkpoint", "--size", "5"))
    edited.write_text(json.dumps({**signed, **small}))
    bad(run(runner, url, "checkpoint", "verify", str(edited), "--key", str(public)), 3, "signature")
    unsigned = tmp_path / "unsigned.json"
    unsigned.write_text(json.dumps(small))
    bad(run(runner, url, "checkpoint", "verify", str(unsigned), "--key", str(public)), 2, "not signed")
    assert other_private.exists()


@pytest.mark.parametrize("content", [b"hello", b'{"size": 3}',
                                     b'{"size": 3, "root": "sha256:00", "recorded_at": "x"}',
                                     b'{"size": 0, "root": "sha256:' + b"0" * 64 + b'", "recorded_at": "x"}'])
def test_not_a_checkpoint(url: str, runner: CliRunner, tmp_path: Path, content: bytes) -> None:
    f = tmp_path / "cp.json"
    f.write_bytes(content)
    bad(run(runner, url, "checkpoint", "verify", str(f)), 2, "not a checkpoint")


def rewrite_tree(raw: Tamper) -> None:
    """What a thorough attacker does after editing the log: rebuild the stored tree to match it."""
    raw.execute("DELETE FROM ledger_merkle")
    rows = sorted(raw.execute("SELECT POS, state FROM stored_events"))
    leaves = [merkle.leaf_hash(export_line(decode_state(p, bytes(s)))) for p, s in rows]
    for level, idx, h in merkle.extend(0, leaves, lambda keys: {}):
        raw.execute("INSERT INTO ledger_merkle (level, idx, hash) VALUES (%s, %s, %s)", (level, idx, h))


def _relink(raw: Tamper) -> None:
    from ledger.events import encode_state
    from ledger.persistence.chain import GENESIS, chain_hash

    prev = GENESIS
    for p, state in sorted(raw.execute("SELECT POS, state FROM stored_events")):
        r = decode_state(p, bytes(state))
        prev = chain_hash(prev, p, r.recorded_at, r.id, r.fact)
        raw.set_state(p, encode_state(r.id, r.recorded_at, r.fact, prev))


def _edit_content(raw: Tamper) -> None:
    import msgspec

    from ledger.events import encode_state

    rec = decode_state(5, raw.state(5))
    forged = msgspec.structs.replace(rec.fact, probe="elsewhere")  # type: ignore[call-arg]
    raw.set_state(5, encode_state(rec.id, rec.recorded_at, forged, "0" * 64))


def _swap(raw: Tamper) -> None:
    a, b = raw.state(3), raw.state(4)
    raw.set_state(3, b)
    raw.set_state(4, a)


TAMPERING = {
    "content": _edit_content,  # the chain broken there, the tree left as it was
    "order": _swap,
    "last fact deleted": lambda raw: (raw.execute("DELETE FROM stored_events WHERE POS = %s", (N,)),
                                      raw.execute("DELETE FROM ledger_index WHERE position = %s", (N,))),
    "rewritten chain and tree": lambda raw: (_edit_content(raw), _relink(raw), rewrite_tree(raw)),
}


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampering_fails_an_earlier_checkpoint(url: str, raw: Tamper, runner: CliRunner, tmp_path: Path,
                                               how: str, keypairs: dict[str, tuple[Path, Path]]) -> None:
    private, public = keypairs["key"]
    saved = tmp_path / "cp.json"
    saved.write_text(run(runner, url, "checkpoint", "--sign", str(private)).stdout)
    assert run(runner, url, "checkpoint", "verify", str(saved), "--key", str(public)).exit_code == 0
    TAMPERING[how](raw)
    bad(run(runner, url, "checkpoint", "verify", str(saved), "--key", str(public)), 3, "checkpoint verify: ")


def test_a_tree_edited_alone(url: str, raw: Tamper, runner: CliRunner, tmp_path: Path) -> None:
    """The log intact, a stored node altered: verify fails, and a checkpoint's stored root differs."""
    saved = tmp_path / "cp.json"
    saved.write_text(run(runner, url, "checkpoint").stdout)
    raw.execute("UPDATE ledger_merkle SET hash = %s WHERE level = 6 AND idx = 0", (b"\x00" * 32,))
    bad(run(runner, url, "verify"), 3, "Merkle tree differs from the log at positions 1 to 64")
    bad(run(runner, url, "checkpoint", "verify", str(saved)), 3, "the stored Merkle tree has root")


def test_a_legacy_leaf_edited(url: str, raw: Tamper, runner: CliRunner, tmp_path: Path) -> None:
    """A store made by the layout that stored every level (``rewrite_tree`` writes it so): the
    lower rows are not read (checkpoints hold, checked on the log) but verify compares them."""
    rewrite_tree(raw)
    assert run(runner, url, "verify").exit_code == 0
    saved = tmp_path / "cp.json"
    saved.write_text(run(runner, url, "checkpoint").stdout)
    raw.execute("UPDATE ledger_merkle SET hash = %s WHERE level = 0 AND idx = 2", (b"\x00" * 32,))
    assert run(runner, url, "checkpoint", "verify", str(saved)).exit_code == 0
    bad(run(runner, url, "verify"), 3, "Merkle tree differs from the log at position 3")


def test_a_store_without_its_tree(url: str, raw: Tamper, runner: CliRunner) -> None:
    raw.execute("DROP TABLE ledger_merkle")
    for args in (("checkpoint",), ("proof", "inclusion", "--position", "1"),
                 ("proof", "consistency", "--from", "1", "--to", "2")):
        bad(run(runner, url, *args), 1, "not built yet")
    verified = run(runner, url, "verify")
    assert verified.exit_code == 0, verified.output
    assert "not built yet" in verified.stderr
    init = run(runner, url, "init")
    assert init.exit_code == 0, init.output
    assert f"Merkle tree built for {N} facts" in init.stdout
    again = run(runner, url, "init")
    assert "Merkle tree" not in again.stdout
    assert ok_json(run(runner, url, "checkpoint"))["size"] == N
    assert run(runner, url, "verify").exit_code == 0
