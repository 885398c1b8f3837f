"""``ledger contract``: record, check and inspect contract policies."""

from __future__ import annotations

from typing import BinaryIO

import click
import msgspec

from cli.context import Context, pass_ctx
from ledger.policy import PolicyFile
from ledger.text import printable


def _policy(file: BinaryIO) -> PolicyFile:
    """The policy in a TOML file, its errors naming the file (or `policy` for stdin)."""
    from ledger.policy_check import load_policy

    return load_policy(file.read(), source=getattr(file, "name", "policy"))


@click.group()
def contract() -> None:
    """Record, check and inspect contract policies."""


@contract.command("register")
@click.argument("file", type=click.File("rb"))
@pass_ctx
def contract_register(ctx: Context, file: BinaryIO) -> None:
    """Record version 1 of the contract in FILE.toml."""
    policy = _policy(file)
    v = ctx.ledger().register_contract(policy)
    click.echo(f"contract {v.contract} version {v.version} at position {v.position}")


@contract.command("amend")
@click.argument("file", type=click.File("rb"))
@pass_ctx
def contract_amend(ctx: Context, file: BinaryIO) -> None:
    """Record a new version of a contract, in force from its effective_from month."""
    policy = _policy(file)
    v = ctx.ledger().amend_contract(policy)
    click.echo(f"contract {v.contract} version {v.version} (from {v.effective_from}) "
               f"at position {v.position}")


@contract.command("validate")
@click.argument("file", type=click.File("rb"))
@pass_ctx
def contract_validate(ctx: Context, file: BinaryIO) -> None:
    """Run every check `register` or `amend` would run on a policy FILE, against the store; write nothing."""
    policy = _policy(file)
    click.echo(ctx.ledger(create=False).validate_contract(policy))


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
