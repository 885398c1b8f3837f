"""The commands other than ``report``: imported when one of them runs, or when ``--help`` lists them.

They were defined in ``cli.main``; every command's click options cost a report's start-up
there (issue 17). ``cli.main.LAZY_COMMANDS`` names each; what they share is in ``cli.context``.
"""

from __future__ import annotations

import os
import sys
from typing import BinaryIO

import click

from cli.context import Context, Failure, month_option, pass_ctx, replay_options, timestamp
from ledger.errors import BadInput


@click.command()
@click.option("--roles", is_flag=True,
              help="PostgreSQL: also create the NOLOGIN roles ledger_appender, _projector, _auditor, "
                   "_reporting and their grants (again: brings them up to date).")
@pass_ctx
def init(ctx: Context, roles: bool) -> None:
    """Create the store and its reporting tables, or bring an older store's schema up to date (idempotent)."""
    from cli.proofs import build_tree
    from ledger.bootstrap import open_view
    from ledger.bootstrap import roles as make_roles

    ledger = ctx.ledger()
    open_view(ledger.recorder)  # the view's tables too, so that the roles can be granted them
    build_tree(ledger)  # an older store's Merkle tree, once (the roles are granted its table)
    if roles:
        click.echo("roles: " + ", ".join(make_roles(ledger.recorder)))
    click.echo(f"ledger ready at {ctx.shown} ({_events(ledger.recorder.last_position())})")


class _AppendCommand(click.Command):
    """``append``, whose help lists every event type and its fields (computed when help is asked for)."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from cli.render import event_fields

        with formatter.section("Event types and their fields (name?: optional)"):
            formatter.write_dl(event_fields())


@click.command(cls=_AppendCommand,
               context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("event_type", required=False)
@click.option("--json", "json_text", metavar="JSON", help="The whole event as one JSON object.")
@click.pass_context
def append(click_ctx: click.Context, event_type: str | None, json_text: str | None) -> None:
    """Append one event: TYPE --field value ..., or --json '{...}'. Prints its position."""
    from ledger.admission import decode_fact, fact_from_fields
    from ledger.events import OPS_TYPES, fact_id

    ctx = click_ctx.find_object(Context)
    assert ctx is not None
    if json_text is not None:
        if event_type is not None or click_ctx.args:
            raise BadInput("give either --json or TYPE with --field value options, not both")
        fact = decode_fact(json_text.encode())
    else:
        if event_type is None:
            raise BadInput(f"missing event TYPE (one of: {', '.join(OPS_TYPES)}) or --json")
        fact = fact_from_fields(event_type, _fields(click_ctx.args))
    ledger = ctx.ledger()
    result = ledger.append(fact)
    if result.appended:
        click.echo(str(result.first_position))
    else:
        # Idempotent: the same answer as the first time, and a note that nothing was added.
        click.echo(str(ledger.recorder.position_of(fact_id(fact))))
        click.echo("already recorded: nothing appended", err=True)


def _fields(args: list[str]) -> dict[str, str]:
    fields: dict[str, str] = {}
    it = iter(args)
    for arg in it:
        if not arg.startswith("--") or len(arg) < 3:
            raise BadInput(f"unexpected argument {arg!r}: expected --field value")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            try:
                value = next(it)
            except StopIteration:
                raise BadInput(f"option --{name} needs a value") from None
        key = name.replace("-", "_")
        if key in fields:
            raise BadInput(f"field `{key}` given twice")
        fields[key] = value
    return fields


@click.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@click.option("--from", "source", type=click.Choice(["ndjson", "statuspage", "alertmanager", "uptime-kuma"]),
              default="ndjson", show_default=True,
              help="FILE's format: NDJSON events, a Statuspage export, or a webhook payload.")
@click.option("--service", help="statuspage: the service of every entry (default: each affected component).")
@click.option("--map", "label_map", metavar="service=LABEL,probe=LABEL|FILE.toml",
              help="alertmanager, uptime-kuma: the labels (tags) naming the service and the probe.")
@click.option("--dry-run", is_flag=True,
              help="Run every check (inside the write transaction, then rolled back); write nothing.")
@pass_ctx
def import_(ctx: Context, file: BinaryIO, quiet: bool, source: str = "ndjson", service: str | None = None,
            label_map: str | None = None, dry_run: bool = False) -> None:
    """Append every event of an NDJSON FILE (- for stdin), all or nothing; --from reads other formats."""
    ledger = ctx.ledger(create=not dry_run)
    show = not quiet and sys.stderr.isatty()
    if source != "ndjson":
        from ledger.feeds import DEFAULT_MAP, facts_from, parse_label_map

        labels = parse_label_map(label_map) if label_map is not None else DEFAULT_MAP
        result = ledger.append_facts(facts_from(source, file.read(), labels, service), dry_run=dry_run)
    elif show:
        bar: click._termui_impl.ProgressBar[int]
        with click.progressbar(length=_size(file), label="importing", file=sys.stderr) as bar:
            result = ledger.import_file(file, bar.update, dry_run=dry_run)
    else:
        result = ledger.import_file(file, dry_run=dry_run)
    # Even with --quiet: a line left out because its id names another fact is never silent.
    for c in result.conflicts:
        click.echo(f"conflict: line {c.line}: id {c.id} is already recorded with other content "
                   f"(position {c.position}); not imported", err=True)
    if not quiet:
        span = f" (positions {result.first_position}-{result.last_position})" if result.appended else ""
        summary = (f"{_events(result.appended)}, {result.skipped} already recorded, "
                   f"{len(result.conflicts)} conflicting{span}")
        click.echo(f"dry run: would import {summary}; nothing written" if dry_run else f"imported {summary}",
                   err=True)


def _size(file: BinaryIO) -> int | None:
    try:
        return os.fstat(file.fileno()).st_size or None
    except (OSError, ValueError, AttributeError):
        return None


@click.command()
@click.option("--service", help="Only events about this service (and the facts that refer to them).")
@click.option("--since", metavar="TIMESTAMP",
              help="Only events whose time (a window's: its end) is at or after this; facts with no time "
                   "of their own (contracts, revocations, classifications, pins) are kept.")
@click.option("--until", metavar="TIMESTAMP",
              help="Only events whose time (a window's: its start) is before this.")
@click.option("--after-position", "after", type=click.IntRange(min=0), metavar="N",
              help="Only events recorded after position N (an incremental export).")
@click.option("--type", "types", multiple=True, metavar="TYPE", help="Only events of this type (repeatable).")
@pass_ctx
def events(ctx: Context, service: str | None, since: str | None, until: str | None, after: int | None,
           types: tuple[str, ...]) -> None:
    """Print recorded events as NDJSON, with id, position and recorded_at."""
    from cli.output import selected
    from ledger.events import export_line

    start, end = timestamp(since, "--since"), timestamp(until, "--until")
    if start is not None and end is not None and start > end:
        # An empty range, most likely swapped: refused rather than answered with the facts
        # that have no time of their own, which every range keeps.
        raise BadInput(f"--since {since}: after --until {until} (the range would be empty)")
    out = sys.stdout.buffer
    for rec in selected(ctx.ledger(read_only=True), service, start, end, after, types):
        out.write(export_line(rec))
        out.write(b"\n")
    out.flush()


@click.command()
@click.option("--contract", "contract_id", required=True, help="Contract id.")
@click.option("--month", required=True, metavar="YYYY-MM", callback=month_option,
              help="Month, in the contract's time zone.")
@replay_options
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text",
              show_default=True)
@pass_ctx
def audit(ctx: Context, contract_id: str, month: str, as_of: str | None, position: int | None,
          fmt: str) -> None:
    """Replay a month as the ledger knew it at a past point, and explain every figure."""
    from cli.render import audit_text
    from projections.model import to_json

    a = ctx.ledger(read_only=True).audit(contract_id, month, as_of=timestamp(as_of, "--as-of"),
                                       position=position)
    if fmt == "html":
        from cli.output import audit_page

        click.echo(audit_page(ctx.ledger(read_only=True), a), nl=False)
    elif fmt == "json":
        click.echo(to_json(a).decode())
    else:
        click.echo(audit_text(a), nl=False)


VERIFY_HELP = """Check the stored log and its key index against the hash chain; print the head.

\b
Plain verify proves that the store holds together: every event's link
recomputes from the one before, positions run 1..N without a gap, every
value has the type and shape the ledger writes, and the key index (which
reports read through) has exactly one row per event, under its key. It finds
an event altered, removed, inserted, reordered or moved, unless whoever
edited the tables also recomputed every link after the edit, or cut the last
events off (the rest is then a valid shorter chain): nothing inside the
store can tell those from the truth.

\b
--expect HASH, a head printed by an earlier verify and kept out of the
store's reach (sent to the customer, put in a report), also proves that
positions 1 to where that head was printed are exactly what they were then:
a recomputed chain or a cut below that point fails. Events appended since
are covered only by a head published after them.

Exit codes: 0 holds, 3 tampering found (one line naming the first position
that does not hold), 2 bad input (a malformed --expect).
"""


@click.command(help=VERIFY_HELP, short_help="Check the log and key index against the hash chain.")
@click.option("--expect", metavar="HASH",
              help="A head published earlier (sha256:<64 hex>): the chain must pass through it.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_ctx
def verify(ctx: Context, expect: str | None, fmt: str) -> None:
    """``ledger verify``: see VERIFY_HELP."""
    from cli.proofs import verify_tree
    from ledger.verify import parse_head
    from ledger.verify import verify as run_verify

    want = parse_head(expect) if expect is not None else None  # bad input before the store is opened
    result = run_verify(ctx.ledger(create=False).recorder, expect=want)
    result = verify_tree(ctx.ledger(create=False), result)  # the Merkle tree too
    if fmt == "json":
        from cli.output import verify_json

        click.echo(verify_json(result, want))
    if not result.ok:
        raise Failure(f"verify: {result.problem}", 3)
    if fmt == "json":
        return
    click.echo(f"ok: {_events(result.position)}, chain intact; head sha256:{result.head}")
    if result.expected_at is not None:
        click.echo(f"expected sha256:{want} found at position {result.expected_at}")


@click.command()
@pass_ctx
def demo(ctx: Context) -> None:
    """Record a generated month (2026-10) for the five example contracts; print their figures and support.

    The five contracts are the four agreements' policies (C in English and in French):
    their availability table first, then their support tables.
    The store must be empty or hold only the demo's facts (then nothing is added).
    The support tables are those of `ledger support --month 2026-10`, each ticket explained.
    """
    from cli.demo.cast import demo_month
    from cli.demo.run import check_demo_store, run_demo
    from cli.render import summary_table
    from cli.support import explained_tables

    ledger = ctx.ledger()
    check_demo_store(ledger, ctx.shown)
    click.echo(summary_table(run_demo(ledger)), nl=False)
    click.echo("\n" + explained_tables(ledger, demo_month(), (), None, None), nl=False)


def _events(n: int) -> str:
    """``n`` events, in words: "1 event", "2 events"."""
    return f"{n} event" if n == 1 else f"{n} events"
