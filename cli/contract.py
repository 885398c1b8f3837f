"""``ledger contract``: record, check and inspect contract policies."""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, TypeVar

import click
import msgspec

from cli.context import Context, pass_ctx
from ledger.errors import BadInput, NotFound
from ledger.policy import PolicyFile
from ledger.text import printable

T = TypeVar("T")


def _source(file: BinaryIO) -> str:
    return str(getattr(file, "name", "policy"))


def _policy(file: BinaryIO) -> PolicyFile:
    """The policy in a TOML file, its errors naming the file (or `policy` for stdin)."""
    from ledger.policy_check import load_policy

    return load_policy(file.read(), source=_source(file))


def _against_store(file: BinaryIO, check: Callable[[], T]) -> T:
    """``check`` (the store's rules for a policy), its errors naming the file as ``_policy``'s do."""
    try:
        return check()
    except (BadInput, NotFound) as exc:
        raise type(exc)(f"{_source(file)}: {exc}") from None


@click.group()
def contract() -> None:
    """Record, check and inspect contract policies."""


@contract.command("register")
@click.argument("file", type=click.File("rb"))
@pass_ctx
def contract_register(ctx: Context, file: BinaryIO) -> None:
    """Record version 1 of the contract in FILE.toml."""
    policy = _policy(file)
    v = _against_store(file, lambda: ctx.ledger().register_contract(policy))
    click.echo(f"contract {v.contract} version {v.version} at position {v.position}")


@contract.command("amend")
@click.argument("file", type=click.File("rb"))
@pass_ctx
def contract_amend(ctx: Context, file: BinaryIO) -> None:
    """Record a new version of a contract, in force from its effective_from month."""
    policy = _policy(file)
    v = _against_store(file, lambda: ctx.ledger().amend_contract(policy))
    click.echo(f"contract {v.contract} version {v.version} (from {v.effective_from}) "
               f"at position {v.position}")


@contract.command("validate")
@click.argument("file", type=click.File("rb"))
@pass_ctx
def contract_validate(ctx: Context, file: BinaryIO) -> None:
    """Run every check `register` or `amend` would run on a policy FILE, against the store; write nothing."""
    policy = _policy(file)
    click.echo(_against_store(file, lambda: ctx.ledger(create=False).validate_contract(policy)))


@contract.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_ctx
def contract_list(ctx: Context, fmt: str) -> None:
    """List registered contracts with their latest version."""
    versions = ctx.ledger(create=False).contracts()
    if fmt == "json":
        from cli.output import contracts_json

        return click.echo(contracts_json(versions))
    for cid in sorted(versions):
        last = versions[cid][-1]
        c = last.policy.contract
        # Tab-separated: each field escaped, so a tab or line break in one cannot add a column or a row.
        fields = (cid, c.customer, f"service={c.service}", f"versions={last.version}",
                  f"timezone={c.timezone}")
        click.echo("\t".join(printable(f) for f in fields))


@contract.command("show")
@click.argument("contract_id")
@pass_ctx
def contract_show(ctx: Context, contract_id: str) -> None:
    """Show every recorded version of a contract as JSON."""
    from ledger.contracts import find

    versions = find(ctx.ledger(create=False).contracts(), contract_id)
    click.echo(msgspec.json.format(msgspec.json.encode(versions)).decode())
