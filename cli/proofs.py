"""``ledger checkpoint`` and ``ledger proof``: what an auditor checks without the ledger (section 7).

Also the two hooks of other commands: ``ledger init`` builds an older store's tree
(``build_tree``), ``ledger verify`` compares the stored tree with the log (``verify_tree``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import msgspec

from cli.context import Context, Failure, pass_ctx
from ledger import checkpoint as cp
from ledger.application import Ledger
from ledger.errors import BadInput
from ledger.persistence import merkle_read, merkle_store
from ledger.verify import VerifyResult


def _echo(body: dict[str, Any]) -> None:
    click.echo(msgspec.json.encode(body).decode())


@click.group(invoke_without_command=True)
@click.option("--size", type=int, metavar="N", help="The checkpoint of the first N facts (default: all).")
@click.option("--sign", "key", metavar="KEY.pem", help="Sign with this Ed25519 private key (PKCS#8 PEM).")
@click.pass_context
def checkpoint(click_ctx: click.Context, size: int | None, key: str | None) -> None:
    """Print the log's checkpoint: {"size", "root", "recorded_at"} (signed with --sign)."""
    if click_ctx.invoked_subcommand is not None:
        if size is not None or key is not None:
            raise BadInput("--size and --sign go with `ledger checkpoint`, not with a subcommand")
        return
    ctx = click_ctx.find_object(Context)
    assert ctx is not None, "runs under the `ledger` command"
    private = cp.load_private_key(key) if key is not None else None  # bad input before the store
    body = cp.make(ctx.ledger(create=False).recorder, size)
    _echo(cp.sign(body, private) if private is not None else body)


@checkpoint.command("verify")
@click.argument("file", metavar="FILE")
@click.option("--key", metavar="PUB.pem", help="The Ed25519 public key the checkpoint must be signed with.")
@pass_ctx
def checkpoint_verify(ctx: Context, file: str, key: str | None) -> None:
    """Check a saved checkpoint against the log (and its signature, with --key); exit 3 if not."""
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        raise BadInput(f"{file}: {exc.strerror or exc}") from None
    saved = cp.parse(data, file)
    public = cp.load_public_key(key) if key is not None else None
    try:
        signed = cp.check_signature(saved, public, file) if public is not None else None
        line = cp.verify(ctx.ledger(create=False).recorder, saved, file)
    except cp.Mismatch as exc:
        raise Failure(f"checkpoint verify: {exc}", 3) from None
    if signed:
        line += f", signed by {signed}"
    elif saved.signature is not None:  # without --key nothing vouches for the signature: say so
        line += f", signature by {saved.key_id} not checked (give --key PUB.pem)"
    click.echo(line)


@click.group()
def proof() -> None:
    """RFC 9162 proofs: a fact is in the log, and the log extends an earlier one."""


@proof.command("inclusion")
@click.option("--position", type=int, required=True, metavar="P", help="The fact's position.")
@click.option("--size", type=int, metavar="N", help="In the tree of the first N facts (default: all).")
@pass_ctx
def proof_inclusion(ctx: Context, position: int, size: int | None) -> None:
    """{"position", "size", "leaf_hash", "path", "root"}: the audit path of position P, leaf to root."""
    _echo(cp.inclusion(ctx.ledger(create=False).recorder, position, size))


@proof.command("consistency")
@click.option("--from", "old", type=int, required=True, metavar="M", help="The earlier size.")
@click.option("--to", "new", type=int, required=True, metavar="N", help="The later size.")
@pass_ctx
def proof_consistency(ctx: Context, old: int, new: int) -> None:
    """{"from", "to", "from_root", "to_root", "path"}: the log of N facts extends that of M."""
    _echo(cp.consistency(ctx.ledger(create=False).recorder, old, new))


def build_tree(ledger: Ledger) -> None:
    """``ledger init``: build the Merkle tree of a store made before it (resumable), with a progress bar."""
    missing = merkle_store.to_build(ledger.recorder)
    if missing is None:
        return  # built (or nothing to build: a role that may not run DDL gets no DDL)
    if sys.stderr.isatty():
        bar: click._termui_impl.ProgressBar[int]
        with click.progressbar(length=missing, label="building the Merkle tree", file=sys.stderr) as bar:
            merkle_store.build(ledger.recorder, bar.update)
    else:
        merkle_store.build(ledger.recorder)
    click.echo(f"Merkle tree built for {ledger.recorder.last_position()} facts")


def verify_tree(ledger: Ledger, result: VerifyResult) -> VerifyResult:
    """``ledger verify``: recompute the Merkle tree from the log and compare (after an intact chain)."""
    if not result.ok:
        return result
    problems = merkle_store.check(ledger.recorder)
    # Not built, or a build stopped part-way (every stored node matches the log): not tampering.
    behind = len(problems) == 1 and problems[0].startswith(merkle_read.BEHIND)
    if problems == [merkle_read.NOT_BUILT] or behind:
        click.echo(f"note: {problems[0]}", err=True)
        return result
    if problems:
        return msgspec.structs.replace(result, ok=False, problem=problems[0])
    return result
