"""Section 7 from outside (hAN): the real CLI against ``tests/oracle_proofs.py``, on both stores.

Every answer of ``ledger checkpoint`` / ``proof inclusion`` / ``proof consistency`` is compared,
element for element, with the proofs RFC 9162 2.1 defines (built by the oracle from the
``ledger events`` lines), and checked by the RFC's verifiers; older sizes are asked again after
more appends. Then the store is tampered with as its superuser would (triggers dropped, raw SQL):
``checkpoint verify`` of a checkpoint taken before must exit 3 in one line, and ``ledger verify``
must notice what the log or the tree lost. ``LEDGER_ORACLE_PROOFS=N`` checks every size up to N
(default: the edges and a sample).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from cli.main import cli
from tests import oracle_proofs as oracle
from tests.integration.test_checkpoint import keypairs  # noqa: F401

EVERY = int(os.environ.get("LEDGER_ORACLE_PROOFS", "0"))
PROBES = ["p", "zürich", "a\u2028b", 'q"uote\\', "😀", "/slash"]


def facts(rng: random.Random, start: int, count: int) -> list[bytes]:
    """Probe facts of varied shape: ids given or derived, offsets, fractions, non-ASCII and escapes."""
    out = []
    for i in range(start, start + count):
        at = f"2026-10-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{rng.choice(['00', '07.25', '59.999999'])}"
        at += rng.choice(["Z", "+02:00", "-05:30"])
        body: dict[str, Any] = {"type": rng.choice(["probe_failed", "probe_recovered"]),
                                "service": f"svc-{i % 5}", "probe": rng.choice(PROBES) + str(i), "at": at}
        if rng.random() < 0.7:
            body["id"] = f"f{i}"
        out.append(json.dumps(body, ensure_ascii=False).encode())
    return out


def run(runner: CliRunner, url: str, *args: str, stdin: bytes | None = None) -> Result:
    return runner.invoke(cli, ["--store", url, *args], input=stdin)


def ok(result: Result) -> bytes:
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


def one_line(result: Result, code: int, words: str = "") -> str:
    assert result.exit_code == code, (code, result.output)
    assert result.stdout_bytes == b"", result.stdout
    err = result.stderr.split("\n")
    assert len(err) == 2, result.stderr  # one line, no traceback
    assert err[1] == "", result.stderr
    assert "Traceback" not in err[0], err[0]
    assert words in err[0], err[0]
    return err[0]


def import_(runner: CliRunner, url: str, lines: list[bytes], rng: random.Random) -> None:
    """Import ``lines`` cut into random batches (each batch one import, one transaction)."""
    i = 0
    while i < len(lines):
        step = rng.choice([1, 3, 17, 64, 90])
        ok(run(runner, url, "import", "-", stdin=b"\n".join(lines[i:i + step]) + b"\n"))
        i += step


def events(runner: CliRunner, url: str) -> list[bytes]:
    out = ok(run(runner, url, "events"))
    assert out.endswith(b"\n")
    return out[:-1].split(b"\n")  # bytes: U+2028 inside a line is no line break


def sample(rng: random.Random, n: int, light: bool) -> list[int]:
    """Sizes 1..n: the edges of RFC trees and of the store's 64-leaf tiles, and a few at random.

    ``light`` (PostgreSQL, where a command costs 20 ms): the tile edges only; the same code reads
    both stores' tables, and SQLite's run covers the rest.
    """
    if EVERY:
        return list(range(1, min(n, EVERY) + 1))
    edges = {1, 64, 65, n}
    for k in () if light else (3, 4, 5, 8, 9, 16, 32, 63, 127, 128, 129, 191, 192, 193):
        edges.update((k - 1, k, k + 1))
    edges.update(rng.sample(range(1, n + 1), min(n, 1 if light else 6)))
    return sorted(e for e in edges if 1 <= e <= n)


def check_sizes(runner: CliRunner, url: str, lines: list[bytes],
                rng: random.Random) -> dict[tuple[str, ...], bytes]:
    """Checkpoints, inclusion and consistency proofs at sampled sizes against the oracle; what was printed."""
    tree, seen = oracle.Tree(lines), {}
    light = url.startswith("postgresql") and not EVERY
    for n in sample(rng, len(lines), light):
        args: tuple[str, ...] = ("checkpoint", "--size", str(n))
        seen[args] = out = ok(run(runner, url, *args))
        body = oracle.parse_checkpoint(out)
        assert (body["size"], oracle.raw(body["root"])) == (n, tree.root(n))
        assert body["recorded_at"] == json.loads(lines[n - 1])["recorded_at"]
        for p in sorted({1, n, rng.randint(1, n)} if light else {1, n, (n + 1) // 2, rng.randint(1, n)}):
            args = ("proof", "inclusion", "--position", str(p), "--size", str(n))
            seen[args] = out = ok(run(runner, url, *args))
            oracle.check_inclusion(out, tree, lines, p, n)
        for m in sorted({1, n, rng.randint(1, n)} if light else
                        {1, n, max(1, n - 1), oracle.split(n) if n > 1 else 1, rng.randint(1, n)}):
            args = ("proof", "consistency", "--from", str(m), "--to", str(n))
            seen[args] = out = ok(run(runner, url, *args))
            oracle.check_consistency(out, tree, m, n)
    return seen


def test_proofs_are_the_rfcs_and_hold_after_appends(store_url: str, runner: CliRunner, tmp_path: Path,
                                                    keypairs: dict[str, tuple[Path, Path]]) -> None:  # noqa: F811
    rng = random.Random(19)
    private, public = keypairs["key"]
    first = facts(rng, 0, 70)
    import_(runner, store_url, first, rng)
    lines = events(runner, store_url)
    assert len(lines) == 70
    # The defaults: the whole log.
    whole = oracle.parse_checkpoint(ok(run(runner, store_url, "checkpoint")))
    assert whole["size"] == 70
    inc = json.loads(ok(run(runner, store_url, "proof", "inclusion", "--position", "70")))
    assert inc["size"] == 70
    assert inc["root"] == whole["root"]
    signed_out = ok(run(runner, store_url, "checkpoint", "--size", "65", "--sign", str(private)))
    signed = oracle.parse_checkpoint(signed_out)
    oracle.check_signature(signed, public.read_bytes())
    saved = tmp_path / "signed.json"
    saved.write_bytes(signed_out)
    before = check_sizes(runner, store_url, lines, rng)
    # More appends, one fact at a time and in batches, across the next tiles.
    import_(runner, store_url, facts(rng, 70, 130), rng)
    later = events(runner, store_url)
    assert later[:70] == lines
    assert len(later) == 200
    for args, out in before.items():  # an older size answers as it did
        assert ok(run(runner, store_url, *args)) == out, args
    check_sizes(runner, store_url, later, rng)
    tree = oracle.Tree(later)
    for m in (1, 64, 65, 70, rng.randint(1, 199)):
        out = ok(run(runner, store_url, "proof", "consistency", "--from", str(m), "--to", "200"))
        oracle.check_consistency(out, tree, m, 200)
        earlier = before.get(("checkpoint", "--size", str(m)))
        if earlier is not None:  # the root the auditor was shown then
            assert json.loads(out)["from_root"] == json.loads(earlier)["root"]
    verified = ok(run(runner, store_url, "checkpoint", "verify", str(saved), "--key", str(public)))
    assert verified.decode() == (f"checkpoint ok: size 65, root {signed['root']}, "
                                 f"signed by {signed['key_id']}\n")
    assert ok(run(runner, store_url, "verify")).startswith(b"ok: 200 events")


# --- tampering, as the database's superuser ------------------------------------------------------

T = 150  # two stored tiles (64 leaves each), their parent, and a partial tile


class Superuser:
    """Raw SQL on the store's tables with every trigger dropped first (``%s`` placeholders, ``POS``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.pg = url.startswith("postgresql")
        self.pos = "notification_id" if self.pg else "rowid"

    def __call__(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self.many(statement, [params])

    def many(self, statement: str, params: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """``statement`` once per parameter tuple, in one transaction; the last one's rows."""
        statement, rows = statement.replace("POS", self.pos), []
        if self.pg:
            with psycopg.connect(self.url) as conn:
                for name, table in conn.execute("SELECT tgname, tgrelid::regclass::text FROM pg_trigger "
                                                "WHERE NOT tgisinternal").fetchall():
                    conn.execute(f'DROP TRIGGER "{name}" ON {table}')  # type: ignore[arg-type]
                for p in params:
                    cur = conn.execute(statement.encode(), p)
                    rows = cur.fetchall() if cur.description else []
                return rows
        conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
        try:
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                conn.execute(f'DROP TRIGGER "{name}"')
            for p in params:
                rows = conn.execute(statement.replace("%s", "?"), p).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def states(self) -> list[bytes]:
        return [bytes(s) for _, s in self("SELECT POS, state FROM stored_events ORDER BY POS")]

    def set_state(self, position: int, state: bytes) -> None:
        self("UPDATE stored_events SET state = %s WHERE POS = %s", (state, position))

    def delete(self, position: int) -> None:
        self("DELETE FROM stored_events WHERE POS = %s", (position,))
        self("DELETE FROM ledger_index WHERE position = %s", (position,))


def _edit_byte(su: Superuser, new: bytes) -> None:
    """One byte of position 75's stored content (inside its probe name) replaced by ``new``."""
    state = su.states()[74]
    at = state.index(b'"probe":"') + len(b'"probe":"')
    su.set_state(75, state[:at] + new + state[at + 1:])


def _swap(su: Superuser) -> None:
    states = su.states()
    su.set_state(10, states[139])
    su.set_state(140, states[9])


def _rewrite_all(su: Superuser) -> None:
    """Position 30's time moved (its day kept: the key index holds), every later link recomputed, and
    the stored tree recomputed to match."""
    def edit(position: int, content: dict[str, Any]) -> None:
        if position == 30:
            content["at"] = content["at"][:17] + "31" + content["at"][19:]

    states = oracle.relinked(su.states(), edit)
    su.many("UPDATE stored_events SET state = %s WHERE POS = %s", [(s, p) for p, s in enumerate(states, 1)])
    su("DELETE FROM ledger_merkle")
    nodes = oracle.tile_nodes([oracle.event_line(p, s) for p, s in enumerate(states, 1)])
    su.many("INSERT INTO ledger_merkle (level, idx, hash) VALUES (%s, %s, %s)", nodes)


def _recorded_at(su: Superuser) -> None:
    state = su.states()[T - 1]
    at = state.index(b'Z",{') - 1  # the last digit of its recorded_at
    su.set_state(T, state[:at] + (b"1" if state[at:at + 1] != b"1" else b"2") + state[at + 1:])


# what: (the edit, `checkpoint verify` of the size-40 checkpoint, `ledger verify`)
TAMPERING: dict[str, tuple[Callable[[Superuser], object], int, int]] = {
    "one byte of a middle fact": (lambda su: _edit_byte(su, b"#"), 0, 3),
    "a middle fact no longer UTF-8": (lambda su: _edit_byte(su, b"\xff"), 0, 3),
    "a middle fact's state emptied": (lambda su: su.set_state(75, b""), 0, 3),
    "two facts swapped": (_swap, 3, 3),
    "the last fact deleted": (lambda su: su.delete(T), 0, 0),  # a valid shorter log (docs/reliability.md)
    "a middle fact deleted": (lambda su: su.delete(75), 0, 3),
    # Holds together: only a checkpoint held outside sees it.
    "chain and tree rewritten after an edit": (_rewrite_all, 3, 0),
    "the last recorded_at changed": (_recorded_at, 0, 3),
    "the root's stored node changed": (lambda su: su("UPDATE ledger_merkle SET hash = %s WHERE level = 7",
                                                     (bytes(32),)), 0, 3),
    "the root's stored node deleted": (lambda su: su("DELETE FROM ledger_merkle WHERE level = 7"), 0, 3),
}


@pytest.fixture
def tampered_store(store_url: str, runner: CliRunner) -> Iterator[str]:
    rng = random.Random(7)
    lines = facts(rng, 0, T)
    ok(run(runner, store_url, "import", "-", stdin=b"\n".join(lines[:100]) + b"\n"))
    ok(run(runner, store_url, "import", "-", stdin=b"\n".join(lines[100:]) + b"\n"))  # another recorded_at
    return store_url


@pytest.mark.parametrize("how", list(TAMPERING))
def test_tampering_fails_a_checkpoint_taken_before(tampered_store: str, runner: CliRunner, tmp_path: Path,
                                                   keypairs: dict[str, tuple[Path, Path]], how: str) -> None:  # noqa: F811
    url, (edit, early_code, verify_code) = tampered_store, TAMPERING[how]
    private, public = keypairs["key"]
    whole, early = tmp_path / "whole.json", tmp_path / "early.json"
    whole.write_bytes(ok(run(runner, url, "checkpoint", "--sign", str(private))))
    early.write_bytes(ok(run(runner, url, "checkpoint", "--size", "40")))
    lines = events(runner, url)
    edit(Superuser(url))
    one_line(run(runner, url, "checkpoint", "verify", str(whole), "--key", str(public)), 3,
             f"checkpoint verify: {whole}: ")
    if early_code:
        one_line(run(runner, url, "checkpoint", "verify", str(early)), 3, f"checkpoint verify: {early}: ")
    else:  # the first 40 facts are as they were: that checkpoint still holds
        ok(run(runner, url, "checkpoint", "verify", str(early)))
    if verify_code:
        one_line(run(runner, url, "verify"), 3, "verify: ")
    else:
        ok(run(runner, url, "verify"))
    if how == "chain and tree rewritten after an edit":  # today's proofs no longer reach the auditor's root
        proof = json.loads(ok(run(runner, url, "proof", "consistency", "--from", "40", "--to", str(T))))
        held = oracle.raw(json.loads(early.read_bytes())["root"])
        assert not oracle.verify_consistency(40, T, held, oracle.raw(proof["to_root"]),
                                             [oracle.raw(h) for h in proof["path"]])
        assert events(runner, url)[29] != lines[29]
        assert events(runner, url)[30:] == lines[30:]


@pytest.mark.parametrize(("level", "idx"), [(8, 0), (6, 2), (7, 1), (6, -1)])
def test_a_forged_node_is_noticed(tampered_store: str, runner: CliRunner, tmp_path: Path,
                                  level: int, idx: int) -> None:
    """A node the log does not have yet (or never will): nothing reads it, but `ledger verify` says so
    (else the append that completes it would fail on its primary key, and verify call the store sound)."""
    url = tampered_store
    saved = tmp_path / "cp.json"
    saved.write_bytes(ok(run(runner, url, "checkpoint")))
    Superuser(url)("INSERT INTO ledger_merkle (level, idx, hash) VALUES (%s, %s, %s)",
                   (level, idx, bytes(32)))
    ok(run(runner, url, "checkpoint", "verify", str(saved)))  # the log and its tree still give that root
    one_line(run(runner, url, "verify"), 3, "verify: the Merkle tree")


# --- bad input ----------------------------------------------------------------------------------


def _pem(key: Any, private: bool) -> bytes:
    from cryptography.hazmat.primitives import serialization as s

    if private:
        return bytes(key.private_bytes(s.Encoding.PEM, s.PrivateFormat.PKCS8, s.NoEncryption()))
    return bytes(key.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))


def test_bad_input_is_one_line_and_writes_nothing(store_url: str, runner: CliRunner, tmp_path: Path,
                                                  keypairs: dict[str, tuple[Path, Path]]) -> None:  # noqa: F811
    """Files that are not checkpoints, keys of other kinds, numbers out of range: exit 2, one line, the
    log as it was; a well-formed checkpoint of another log: exit 3."""
    from cryptography.hazmat.primitives.asymmetric import ec, x25519

    url = store_url
    import_(runner, url, facts(random.Random(3), 0, 20), random.Random(3))
    before = events(runner, url)
    good = ok(run(runner, url, "checkpoint", "--size", "5"))
    body = json.loads(good)
    files: dict[str, bytes] = {
        "crlf": good.replace(b"\n", b"\r\n"),  # as a Windows editor saves it: still the checkpoint
        "a report's": json.dumps({"size": 5, "root": body["root"]}).encode(),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        ok(run(runner, url, "checkpoint", "verify", str(tmp_path / name)))
    not_checkpoints = {
        "recorded_at not an instant": {**body, "recorded_at": "x"},
        "recorded_at empty": {**body, "recorded_at": ""},
        "recorded_at out of range": {**body, "recorded_at": "2026-13-40T25:61:00Z"},
        "recorded_at without offset": {**body, "recorded_at": body["recorded_at"].rstrip("Z")},
        "recorded_at a number": {**body, "recorded_at": 5},
        "size a string": {**body, "size": "5"},
        "root upper-case": {**body, "root": body["root"].upper()},
        "root unprefixed": {**body, "root": body["root"][7:]},
        "an origin line": {**body, "origin": "ledger"},
        "no root": {"size": 5, "recorded_at": body["recorded_at"]},
    }
    for name, content in not_checkpoints.items():
        f = tmp_path / name.replace(" ", "-")
        f.write_bytes(json.dumps(content).encode())
        one_line(run(runner, url, "checkpoint", "verify", str(f)), 2, f"{f}: not a checkpoint")
    for name, raw_bytes in {"two checkpoints": good + good, "truncated": good[:40],
                            "binary": bytes(range(256)), "empty": b""}.items():
        f = tmp_path / name.replace(" ", "-")
        f.write_bytes(raw_bytes)
        one_line(run(runner, url, "checkpoint", "verify", str(f)), 2, f"{f}: not a checkpoint")
    other = oracle.Tree([b"another log"] * 5)
    f = tmp_path / "other.json"
    f.write_bytes(oracle.canonical({**body, "root": oracle.text(other.root(5))}))
    one_line(run(runner, url, "checkpoint", "verify", str(f)), 3, f"checkpoint verify: {f}: ")
    # Keys.
    private, public = keypairs["key"]
    signed = tmp_path / "signed.json"
    signed.write_bytes(ok(run(runner, url, "checkpoint", "--size", "5", "--sign", str(private))))
    keys = {"ec.pem": _pem(ec.generate_private_key(ec.SECP256R1()), True),
            "ec.pub.pem": _pem(ec.generate_private_key(ec.SECP256R1()), False),
            "x25519.pem": _pem(x25519.X25519PrivateKey.generate(), True),
            "x25519.pub.pem": _pem(x25519.X25519PrivateKey.generate(), False),
            "garbage.pem": b"-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n"}
    for name, pem in keys.items():
        (tmp_path / name).write_bytes(pem)
        key = str(tmp_path / name)
        one_line(run(runner, url, "checkpoint", "--sign", key), 2, f"--sign {key}")
        one_line(run(runner, url, "checkpoint", "verify", str(signed), "--key", key), 2, f"--key {key}")
    one_line(run(runner, url, "checkpoint", "--sign", str(public)), 2, "--sign")
    one_line(run(runner, url, "checkpoint", "verify", str(signed), "--key", str(tmp_path)), 2, "--key")
    one_line(run(runner, url, "checkpoint", "verify", str(tmp_path)), 2, str(tmp_path))
    # Numbers.
    for args in (("proof", "inclusion", "--position", "0"), ("proof", "inclusion", "--position", "21"),
                 ("proof", "inclusion", "--position", "-1"), ("proof", "inclusion", "--position", "two"),
                 ("proof", "inclusion", "--position", "6", "--size", "5"),
                 ("proof", "consistency", "--from", "6", "--to", "5"),
                 ("proof", "consistency", "--from", "20", "--to", "21"),
                 ("checkpoint", "--size", "0"), ("checkpoint", "--size", "21"),
                 ("checkpoint", "--size", "5.5")):
        one_line(run(runner, url, *args), 2)
    assert events(runner, url) == before


def test_an_older_store_built_by_init_and_audits_name_their_log(store_url: str, runner: CliRunner) -> None:
    """The tree dropped (a store made before it), built by `ledger init`: the same roots; an audit replayed
    at a position or an instant carries the checkpoint of exactly that log, right after `digest`."""
    from cli.demo import example_policy_paths

    url, rng = store_url, random.Random(11)
    import_(runner, url, facts(rng, 0, 30), rng)
    ok(run(runner, url, "contract", "register", str(example_policy_paths()[0])))
    import_(runner, url, facts(rng, 30, 50), rng)
    lines = events(runner, url)
    tree = oracle.Tree(lines)
    Superuser(url)("DROP TABLE ledger_merkle")
    one_line(run(runner, url, "checkpoint"), 1, "not built yet")
    assert b"Merkle tree built for 81 facts" in ok(run(runner, url, "init"))
    month = ("audit", "--contract", "sla-a-2026", "--month", "2026-10", "--format", "json")
    last_at = json.loads(lines[-1])["recorded_at"]
    for where, size in ((("--position", "31"), 31), (("--position", "64"), 64), ((), 81),
                        (("--as-of", last_at), 81)):
        report = json.loads(ok(run(runner, url, *month, *where)))["report"]
        keys = list(report)
        assert keys[keys.index("digest") + 1] == "checkpoint"
        assert report["as_of_position"] == size
        assert report["checkpoint"] == {"size": size, "root": oracle.text(tree.root(size))}
    for n in (1, 64, 65, 81):
        body = oracle.parse_checkpoint(ok(run(runner, url, "checkpoint", "--size", str(n))))
        assert body["root"] == oracle.text(tree.root(n))
    inclusion = ok(run(runner, url, "proof", "inclusion", "--position", "70"))
    oracle.check_inclusion(inclusion, tree, lines, 70, 81)
    assert ok(run(runner, url, "verify")).startswith(b"ok: 81 events")
