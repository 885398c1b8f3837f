"""Issue 19 acceptance (hAH): inputs beyond the examples, through the CLI, on both stores.

Keys of every wrong kind, checkpoint files whose ``key_id`` / ``signature`` are not in
the form section 7 gives, a signature checked by ``openssl`` rather than the library,
and option values that are not numbers: each one line on stderr, exit 2, the store as it was.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.demo import example_policy_paths
from tests.integration.test_checkpoint import N, _swap, bad, keypairs, ok_json, raw, run, url  # noqa: F401
from tests.integration.test_roles import Store, store  # noqa: F401
from tests.integration.test_store_contract import snapshot
from tests.integration.test_tamper import Tamper

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl writes the keys")


@pytest.fixture(scope="module")
def wrong_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Key files that are not an Ed25519 PKCS#8 PEM private key, as openssl writes them."""
    where = tmp_path_factory.mktemp("wrong")
    made = {"rsa": ["genpkey", "-algorithm", "rsa", "-pkeyopt", "rsa_keygen_bits:1024"],
            "x25519": ["genpkey", "-algorithm", "x25519"],
            "ed448": ["genpkey", "-algorithm", "ed448"],
            "encrypted": ["genpkey", "-algorithm", "ed25519", "-aes256", "-pass", "pass:secret"]}
    keys = {}
    if shutil.which("openssl"):
        for name, args in made.items():
            keys[name] = where / f"{name}.pem"
            subprocess.run(["openssl", *args, "-out", str(keys[name])], check=True, capture_output=True)
    keys["corrupt"] = where / "corrupt.pem"
    keys["corrupt"].write_text("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEI\n"
                               "-----END PRIVATE KEY-----\n")
    keys["binary"] = where / "binary.pem"
    keys["binary"].write_bytes(bytes(range(256)))
    keys["directory"] = where
    return keys


def unchanged(runner: CliRunner, url: str, before: str) -> None:  # noqa: F811
    assert run(runner, url, "events").stdout == before


@needs_openssl
@pytest.mark.parametrize("kind", ["rsa", "x25519", "ed448", "encrypted", "corrupt", "binary", "directory"])
def test_a_wrong_key_file_is_bad_input(url: str, runner: CliRunner, tmp_path: Path,  # noqa: F811
                                       wrong_keys: dict[str, Path], kind: str) -> None:
    before = run(runner, url, "events").stdout
    bad(run(runner, url, "checkpoint", "--sign", str(wrong_keys[kind])), 2, f"--sign {wrong_keys[kind]}")
    saved = tmp_path / "cp.json"
    saved.write_text(run(runner, url, "checkpoint").stdout)
    bad(run(runner, url, "checkpoint", "verify", str(saved), "--key", str(wrong_keys[kind])), 2,
        f"--key {wrong_keys[kind]}")
    unchanged(runner, url, before)


@needs_openssl
def test_openssl_verifies_the_signature(url: str, runner: CliRunner, tmp_path: Path,  # noqa: F811
                                        keypairs: dict[str, tuple[Path, Path]]) -> None:  # noqa: F811
    """Section 7's definition, checked by ``openssl pkeyutl -verify -rawin``, not by the library."""
    private, public = keypairs["key"]
    signed = ok_json(run(runner, url, "checkpoint", "--size", "7", "--sign", str(private)))
    body = tmp_path / "body"
    body.write_bytes(json.dumps({k: signed[k] for k in ("recorded_at", "root", "size")},
                                sort_keys=True, separators=(",", ":")).encode())
    sig = tmp_path / "sig"
    sig.write_bytes(base64.b64decode(signed["signature"], validate=True))
    assert len(sig.read_bytes()) == 64
    done = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(public), "-rawin",
                           "-in", str(body), "-sigfile", str(sig)], capture_output=True, text=True)
    if "rawin" in done.stderr and done.returncode != 0:
        pytest.skip("this openssl has no -rawin")
    assert done.returncode == 0, done.stderr
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", str(public), "-outform", "DER"],
                         capture_output=True, check=True).stdout
    import hashlib

    assert signed["key_id"] == "sha256:" + hashlib.sha256(der[-32:]).hexdigest()  # SPKI ends with the raw key


def _forged(signed: dict[str, object], **fields: object) -> bytes:
    return json.dumps({**signed, **fields}).encode()


@pytest.mark.parametrize(("fields", "words"), [
    ({"key_id": "nope"}, "field `key_id`"),
    ({"key_id": "sha256:" + "A" * 64}, "field `key_id`"),
    ({"signature": "!!!"}, "field `signature`"),
    ({"signature": "AAAA"}, "field `signature`"),  # base64, but of 3 bytes
    ({"signature": base64.b64encode(bytes(65)).decode()}, "field `signature`"),
    ({"root": "sha256:" + "00" * 31 + "  "}, "field `root`"),  # bytes.fromhex skips the spaces
])
@pytest.mark.parametrize("with_key", [False, True])
def test_a_malformed_signed_checkpoint_is_bad_input(url: str, runner: CliRunner, tmp_path: Path,  # noqa: F811
                                                    keypairs: dict[str, tuple[Path, Path]],  # noqa: F811
                                                    fields: dict[str, str], words: str,
                                                    with_key: bool) -> None:
    """Not a checkpoint whether or not a key is given: exit 2, not 0 (unchecked) or 3 (altered)."""
    private, public = keypairs["key"]
    signed = ok_json(run(runner, url, "checkpoint", "--sign", str(private)))
    before = run(runner, url, "events").stdout
    f = tmp_path / "cp.json"
    f.write_bytes(_forged(signed, **fields))
    key = ("--key", str(public)) if with_key else ()
    bad(run(runner, url, "checkpoint", "verify", str(f), *key), 2, f"{f}: not a checkpoint ({words}")
    unchanged(runner, url, before)


def test_an_unchecked_signature_is_said_so(url: str, runner: CliRunner, tmp_path: Path,  # noqa: F811
                                          keypairs: dict[str, tuple[Path, Path]]) -> None:  # noqa: F811
    private, _ = keypairs["key"]
    signed = ok_json(run(runner, url, "checkpoint", "--sign", str(private)))
    f = tmp_path / "cp.json"
    f.write_text(json.dumps(signed))
    out = run(runner, url, "checkpoint", "verify", str(f))
    assert out.exit_code == 0, out.output
    assert out.stdout == (f"checkpoint ok: size {N}, root {signed['root']}, signature by {signed['key_id']} "
                          "not checked (give --key PUB.pem)\n")


@pytest.mark.parametrize("args", [
    ("checkpoint", "--size", "x"), ("checkpoint", "--size", "1.5"), ("checkpoint", "--size", "-1"),
    ("checkpoint", "--size", str(10**30)), ("checkpoint", "--size"),
    ("proof", "inclusion"), ("proof", "inclusion", "--position", "1e3"),
    ("proof", "inclusion", "--position", str(10**30)), ("proof", "inclusion", "--position", "-1"),
    ("proof", "inclusion", "--position", "1", "--size", "0"),
    ("proof", "consistency", "--to", "3"), ("proof", "consistency", "--from", "1"),
    ("proof", "consistency", "--from", "-1", "--to", "3"),
    ("proof", "consistency", "--from", "1", "--to", "0"),
    ("proof", "consistency", "--from", "1", "--to", str(10**30)),
    ("proof", "consistency", "--from", str(N + 1), "--to", str(N + 2)),
    ("checkpoint", "verify"), ("checkpoint", "--size", "3", "verify", "x.json"),
])
def test_bad_option_values_are_one_line_exit_2(url: str, runner: CliRunner, args: tuple[str, ...]) -> None:  # noqa: F811
    before = run(runner, url, "events").stdout
    result = run(runner, url, *args)
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    unchanged(runner, url, before)


@pytest.mark.parametrize("content", [b"", b"  \n", b"null", b"[]", b'"x"', b"7", bytes(range(256)),
                                     b"\xef\xbb\xbf{}", b'{"size":1,"root":"x","recorded_at":"y"}{}'])
def test_a_file_that_is_not_a_checkpoint(url: str, runner: CliRunner, tmp_path: Path, content: bytes) -> None:  # noqa: F811
    f = tmp_path / "cp.json"
    f.write_bytes(content)
    bad(run(runner, url, "checkpoint", "verify", str(f)), 2, "not a checkpoint")



def test_every_role_checks_checkpoints_and_proofs(store: Store, runner: CliRunner, tmp_path: Path,  # noqa: F811
                                                  keypairs: dict[str, tuple[Path, Path]]) -> None:  # noqa: F811
    """The auditor's login (and every other role's) reads checkpoints and proofs, and writes nothing."""
    private, public = keypairs["key"]
    saved = tmp_path / "cp.json"
    saved.write_text(run(runner, store.owner_url, "checkpoint", "--size", "5", "--sign", str(private)).stdout)
    before = snapshot(store.owner)
    last = str(store.owner.recorder.last_position())
    for role, login in store.url.items():
        for args in (("checkpoint", "--size", "5"),
                     ("checkpoint", "verify", str(saved), "--key", str(public)),
                     ("proof", "inclusion", "--position", "3"),
                     ("proof", "consistency", "--from", "5", "--to", last)):
            result = run(runner, login, *args)
            assert result.exit_code == 0, (role, args, result.output)
    assert snapshot(store.owner) == before


def test_a_reports_checkpoint_is_verified(url: str, raw: Tamper, runner: CliRunner, tmp_path: Path,  # noqa: F811
                                          keypairs: dict[str, tuple[Path, Path]]) -> None:  # noqa: F811
    """The `checkpoint` of a report or audit ({"size", "root"}) is what docs/auditors.md says to keep and
    check with `ledger checkpoint verify`; a signed checkpoint still needs its `recorded_at`."""
    assert run(runner, url, "contract", "register", str(example_policy_paths()[0])).exit_code == 0
    month = ("--contract", "sla-a-2026", "--month", "2026-10", "--format", "json")
    report = ok_json(run(runner, url, "report", *month))
    audit = ok_json(run(runner, url, "audit", *month))
    whole = {"size": N + 1, "root": ok_json(run(runner, url, "checkpoint"))["root"]}
    assert report["checkpoint"] == audit["report"]["checkpoint"] == whole
    saved = tmp_path / "report-checkpoint.json"
    saved.write_text(json.dumps(report["checkpoint"]))
    out = run(runner, url, "checkpoint", "verify", str(saved))
    assert out.exit_code == 0, out.output
    assert out.stdout == f"checkpoint ok: size {N + 1}, root {report['checkpoint']['root']}\n"
    private, _ = keypairs["key"]
    signed = ok_json(run(runner, url, "checkpoint", "--sign", str(private)))
    del signed["recorded_at"]
    unsigned_time = tmp_path / "signed.json"
    unsigned_time.write_text(json.dumps(signed))
    bad(run(runner, url, "checkpoint", "verify", str(unsigned_time)), 2,
        "a signed checkpoint has `recorded_at`")
    _swap(raw)
    bad(run(runner, url, "checkpoint", "verify", str(saved)), 3, "checkpoint verify: ")
