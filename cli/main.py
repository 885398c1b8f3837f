"""The ``ledger`` command line: parse, one call into the application, render."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any, BinaryIO, NoReturn, TypeVar

import click
import msgspec

from ledger.application import Ledger, open_ledger
from ledger.calendar import check_instant, check_month
from ledger.errors import BadInput, LedgerError, one_line
from ledger.events import OPS_TYPES, decode_fact, export_line, fact_from_fields, fact_id
from ledger.policy import load_policy
from ledger.text import printable
from ledger.urls import redact, scrub, store_url

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """What subcommands share: the store URL and, once opened, the ledger."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redact(url)  # for messages: no password (the URL is checked when opened)
        self._ledger: Ledger | None = None

    def ledger(self, *, create: bool = True) -> Ledger:
        if self._ledger is None:
            self._ledger = open_ledger(self.url, create=create)
        return self._ledger

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


pass_ctx = click.make_pass_decorator(Context)


def _timestamp(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        ts = msgspec.json.decode(msgspec.json.encode(value), type=datetime)
    except msgspec.ValidationError:
        raise BadInput(f"{option} {value!r}: expected an RFC 3339 timestamp with an offset") from None
    if ts.tzinfo is None:
        raise BadInput(f"{option} {value!r}: the timestamp has no offset")
    return check_instant(ts, option)


def _month(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--month``, read by the one month parser (``ledger.calendar.parse_month``)."""
    return check_month(value, "--month")


class Failure(click.ClickException):
    """A one-line error with its own exit code (2: bad input, 1: anything else, 3: verify failed)."""

    def __init__(self, message: str, code: int = 1) -> None:
        # Escaped whole: a message may echo input, which must not reach the terminal raw.
        super().__init__(printable(one_line(message)))
        self.exit_code = code  # type: ignore[misc]  # click declares it on the class

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _usage(exc: click.UsageError) -> Failure:
    where = exc.ctx.command_path if exc.ctx is not None else "ledger"
    return Failure(f"{exc.format_message()} (see `{where} --help`)", 2)


class LedgerGroup(click.Group):
    """Turns every failure below it into one line and a non-zero exit, never a traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _usage(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _usage(exc) from None
        except Failure as exc:
            raise Failure(_scrubbed(ctx, exc.message), exc.exit_code) from None
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BadInput as exc:
            raise Failure(_scrubbed(ctx, str(exc)), 2) from None
        except LedgerError as exc:
            raise Failure(_scrubbed(ctx, str(exc)), 1) from None
        except BrokenPipeError:
            # `ledger events | head`: the reader left; nothing worth a message.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(1) from None
        except Exception as exc:
            if os.environ.get("LEDGER_DEBUG"):
                raise
            raise Failure(_scrubbed(ctx, _describe(exc)), 1) from None


def _scrubbed(ctx: click.Context, message: str) -> str:
    """``message`` without the store URL's password, wherever it came from."""
    url = ctx.obj.url if isinstance(ctx.obj, Context) else ctx.params.get("store")
    return scrub(message, url) if isinstance(url, str) else message


@click.group(cls=LedgerGroup)
@click.option("--store", envvar="LEDGER_STORE", default=None, metavar="URL",
              help="sqlite:///REL/PATH or sqlite:////ABS/PATH (default sqlite:///ledger.db), "
                   "or a libpq URL postgresql://USER@HOST:PORT/DB[?PARAMS].")
@click.version_option(package_name="availability-ledger")
@click.pass_context
def cli(ctx: click.Context, store: str | None) -> None:
    """An event-sourced availability ledger for SaaS service level agreements."""
    obj = Context(store_url(store))
    ctx.obj = obj
    ctx.call_on_close(obj.close)


@cli.command()
@click.option("--roles", is_flag=True,
              help="PostgreSQL: also create the NOLOGIN roles ledger_appender, _projector, _auditor, "
                   "_reporting and their grants (again: brings them up to date).")
@pass_ctx
def init(ctx: Context, roles: bool) -> None:
    """Create the store and its reporting tables, or bring an older store's schema up to date (idempotent)."""
    from ledger.reporting import open_view

    ledger = ctx.ledger()
    open_view(ledger.recorder)  # the view's tables too, so that the roles can be granted them
    if roles:
        from ledger.postgres import PostgresLedgerRecorder, create_roles

        if not isinstance(ledger.recorder, PostgresLedgerRecorder):
            raise BadInput("--roles: roles exist only on PostgreSQL (SQLite has no users)")
        click.echo("roles: " + ", ".join(create_roles(ledger.recorder)))
    click.echo(f"ledger ready at {ctx.shown} ({ledger.recorder.last_position()} events)")


@cli.group()
def contract() -> None:
    """Record and inspect contract policies."""


@contract.command("register")
@click.argument("file", type=click.File("rb"))
@pass_ctx
def contract_register(ctx: Context, file: BinaryIO) -> None:
    """Record version 1 of the contract in FILE.toml."""
    policy = load_policy(file.read(), source=getattr(file, "name", "policy"))
    v = ctx.ledger().register_contract(policy)
    click.echo(f"contract {v.contract} version {v.version} at position {v.position}")


@contract.command("amend")
@click.argument("file", type=click.File("rb"))
@pass_ctx
def contract_amend(ctx: Context, file: BinaryIO) -> None:
    """Record a new version of a contract, in force from its effective_from month."""
    policy = load_policy(file.read(), source=getattr(file, "name", "policy"))
    v = ctx.ledger().amend_contract(policy)
    click.echo(f"contract {v.contract} version {v.version} (from {v.effective_from}) "
               f"at position {v.position}")


@contract.command("list")
@pass_ctx
def contract_list(ctx: Context) -> None:
    """List registered contracts with their latest version."""
    versions = ctx.ledger(create=False).contracts()
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
    from projections.contracts import find

    versions = find(ctx.ledger(create=False).contracts(), contract_id)
    click.echo(msgspec.json.format(msgspec.json.encode(versions)).decode())


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("event_type", required=False)
@click.option("--json", "json_text", metavar="JSON", help="The whole event as one JSON object.")
@click.pass_context
def append(click_ctx: click.Context, event_type: str | None, json_text: str | None) -> None:
    """Append one event: TYPE --field value ..., or --json '{...}'. Prints its position."""
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


@cli.command("import")
@click.argument("file", type=click.File("rb"))
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no summary.")
@pass_ctx
def import_(ctx: Context, file: BinaryIO, quiet: bool) -> None:
    """Append every event of an NDJSON FILE (- for stdin), all or nothing."""
    ledger = ctx.ledger()
    show = not quiet and sys.stderr.isatty()
    if show:
        bar: click._termui_impl.ProgressBar[int]
        with click.progressbar(length=_size(file), label="importing", file=sys.stderr) as bar:
            result = ledger.import_file(file, bar.update)
    else:
        result = ledger.import_file(file)
    # Even with --quiet: a line left out because its id names another fact is never silent.
    for c in result.conflicts:
        click.echo(f"conflict: line {c.line}: id {c.id} is already recorded with other content "
                   f"(position {c.position}); not imported", err=True)
    if not quiet:
        span = f" (positions {result.first_position}-{result.last_position})" if result.appended else ""
        click.echo(f"imported {result.appended} events, {result.skipped} already recorded, "
                   f"{len(result.conflicts)} conflicting{span}", err=True)


def _size(file: BinaryIO) -> int | None:
    try:
        return os.fstat(file.fileno()).st_size or None
    except (OSError, ValueError, AttributeError):
        return None


@cli.command()
@click.option("--service", help="Only events about this service (and the facts that refer to them).")
@click.option("--since", metavar="TIMESTAMP", help="Only events whose time is at or after this.")
@click.option("--until", metavar="TIMESTAMP", help="Only events whose time is before this.")
@pass_ctx
def events(ctx: Context, service: str | None, since: str | None, until: str | None) -> None:
    """Print recorded events as NDJSON, with id, position and recorded_at."""
    start, end = _timestamp(since, "--since"), _timestamp(until, "--until")
    out = sys.stdout.buffer
    for rec in ctx.ledger(create=False).events(service, start, end):
        out.write(export_line(rec))
        out.write(b"\n")
    out.flush()


@cli.command()
@click.option("--contract", "contract_id", required=True, help="Contract id.")
@click.option("--month", required=True, metavar="YYYY-MM", callback=_month,
              help="Month, in the contract's time zone.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              show_default=True)
@click.option("--intervals", is_flag=True, help="CSV: one row per interval instead of the summary row.")
@pass_ctx
def report(ctx: Context, contract_id: str, month: str, fmt: str, intervals: bool) -> None:
    """The month's availability, every downtime exclusion with its reason, and the credit owed."""
    from projections.model import to_json
    from projections.render import report_csv, report_table

    ev = ctx.ledger(create=False).report(contract_id, month)
    if fmt == "json":
        click.echo(to_json(ev.report).decode())
    elif fmt == "csv":
        click.echo(report_csv([ev.report], intervals=intervals), nl=False)
    else:
        click.echo(report_table(ev.report), nl=False)


@cli.command()
@click.option("--contract", "contract_id", required=True, help="Contract id.")
@click.option("--month", required=True, metavar="YYYY-MM", callback=_month,
              help="Month, in the contract's time zone.")
@click.option("--as-of", "as_of", metavar="TIMESTAMP", help="Replay what was recorded up to this instant.")
@click.option("--position", type=int, metavar="N", help="Replay what was recorded up to position N.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_ctx
def audit(ctx: Context, contract_id: str, month: str, as_of: str | None, position: int | None,
          fmt: str) -> None:
    """Replay a month as the ledger knew it at a past point, and explain every figure."""
    from projections.model import to_json
    from projections.render import audit_text

    a = ctx.ledger(create=False).audit(contract_id, month, as_of=_timestamp(as_of, "--as-of"),
                                       position=position)
    if fmt == "json":
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


@cli.command(help=VERIFY_HELP, short_help="Check the log and key index against the hash chain.")
@click.option("--expect", metavar="HASH",
              help="A head published earlier (sha256:<64 hex>): the chain must pass through it.")
@pass_ctx
def verify(ctx: Context, expect: str | None) -> None:
    """``ledger verify``: see VERIFY_HELP."""
    from ledger.verify import parse_head
    from ledger.verify import verify as run_verify

    want = parse_head(expect) if expect is not None else None  # bad input before the store is opened
    result = run_verify(ctx.ledger(create=False).recorder, expect=want)
    if not result.ok:
        _fail(f"verify: {result.problem}", code=3)
    click.echo(f"ok: {result.position} events, chain intact; head sha256:{result.head}")
    if result.expected_at is not None:
        click.echo(f"expected sha256:{want} found at position {result.expected_at}")


@cli.command()
@pass_ctx
def demo(ctx: Context) -> None:
    """Record a generated month for the four example contracts and print their availability.

    The store must be empty or hold only the demo's facts (then nothing is added).
    """
    from ledger.demo_run import check_demo_store, run_demo
    from projections.render import summary_table

    ledger = ctx.ledger()
    check_demo_store(ledger, ctx.shown)
    click.echo(summary_table(run_demo(ledger)), nl=False)


def _fail(message: str, code: int = 1) -> NoReturn:
    raise Failure(message, code)


def _describe(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    name = type(exc).__module__.split(".")[0]
    if name in ("psycopg", "psycopg_pool", "sqlite3", "eventsourcing"):
        return f"store: {text}"
    return f"{type(exc).__name__}: {text}"


from cli.projections import projections  # noqa: E402  (the group needs `cli` defined first)

cli.add_command(projections)
from cli.support import calendar, support  # noqa: E402  (issue 18: `ledger support`, `ledger calendar`)

cli.add_command(support)
cli.add_command(calendar)


def main() -> None:
    """Entry point of the ``ledger`` console script."""
    cli.main(prog_name="ledger")


if __name__ == "__main__":
    # Under `python -m cli.main` this file runs as `__main__`; subcommand modules import
    # `cli.main`, so run that module's group rather than a second copy of it.
    from cli.main import main as entry

    entry()
