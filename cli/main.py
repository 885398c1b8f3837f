"""The ``ledger`` command line: parse, one call into the application, render.

Each command is a thin click function; what they share is in ``cli.context``, the text
they print is made in ``cli.render``.
"""

from __future__ import annotations

import os
import sys

import click

from cli.context import Context, LedgerGroup, month_option, pass_ctx, version_option
from ledger.urls import store_url

# Commands whose module is imported only when they run (``LedgerGroup``); ``report`` is below. Every
# command's click options, made when its module is imported, cost a report's start-up (issue 17).
LAZY_COMMANDS = {
    "init": "cli.commands:init",
    "append": "cli.commands:append",
    "import": "cli.commands:import_",
    "events": "cli.commands:events",
    "audit": "cli.commands:audit",
    "verify": "cli.commands:verify",
    "demo": "cli.commands:demo",
    "projections": "cli.projections:projections",
    "serve": "cli.serve:serve",
    "support": "cli.support:support",
    "calendar": "cli.support:calendar",
    "checkpoint": "cli.proofs:checkpoint",
    "proof": "cli.proofs:proof",
    "contract": "cli.contract:contract",
}


@click.group(cls=LedgerGroup, lazy=LAZY_COMMANDS)
@click.option("--store", envvar="LEDGER_STORE", default=None, metavar="URL",
              help="sqlite:///REL/PATH or sqlite:////ABS/PATH (default sqlite:///ledger.db), "
                   "or a libpq URL postgresql://USER@HOST:PORT/DB[?PARAMS].")
@version_option("availability-ledger")
@click.pass_context
def cli(ctx: click.Context, store: str | None) -> None:
    """An event-sourced availability ledger for SaaS service level agreements."""
    obj = Context(store_url(store))
    ctx.obj = obj
    ctx.call_on_close(obj.close)


@cli.command()
@click.option("--contract", "contract_ids", multiple=True,
              help="Contract id; repeat for several; none: every registered contract.")
@click.option("--month", required=True, metavar="YYYY-MM", callback=month_option,
              help="Month, in the contract's time zone.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv", "html", "ndjson"]),
              default="table", show_default=True)
@click.option("--intervals", is_flag=True, help="CSV: one row per interval instead of the summary row.")
@pass_ctx
def report(ctx: Context, contract_ids: tuple[str, ...], month: str, fmt: str, intervals: bool) -> None:
    """The month's availability, each interval of outage with why it counts, and the credit owed.

    With one --contract, that contract's report. Without, or with several: every contract
    named (or registered) in id order, in one call: json an array, ndjson one report a line,
    csv one header, table one row each (html needs exactly one --contract).
    """
    from projections.model import to_json

    if len(contract_ids) != 1 or fmt == "ndjson":  # several contracts: one call (cli/output.py)
        from cli.output import many_reports

        click.echo(many_reports(ctx.ledger(read_only=True), month, contract_ids, fmt, intervals), nl=False)
        return
    contract_id = contract_ids[0]
    ev = ctx.ledger(read_only=True).report(contract_id, month)
    if fmt == "html":
        from cli.output import report_page

        click.echo(report_page(ctx.ledger(read_only=True), ev), nl=False)
    elif fmt == "json":
        click.echo(to_json(ev.report).decode())
    elif fmt == "csv":
        from cli.render import report_csv

        click.echo(report_csv([ev.report], intervals=intervals), nl=False)
    else:
        from cli.render import report_table

        click.echo(report_table(ev.report), nl=False)


def main() -> None:
    """Entry point of the ``ledger`` console script."""
    from cli import resume_gc

    resume_gc()  # the collector, paused while the CLI imported (cli/__init__.py)
    try:
        cli.main(prog_name="ledger")
    except SystemExit as exc:
        _leave(exc)
        raise


def _leave(exc: SystemExit) -> None:
    """End a command that left nothing running without the interpreter's teardown (a fast start's other half).

    Tearing down every imported module costs about a tenth of a short command; when no
    other thread and no child process machinery is loaded, the output is flushed and the
    process ends with the same code. So does a command whose worker processes have all ended
    and whose fork server was stopped (a rebuild's, ``ledger.workers.ended``), after the exit
    handlers the usual exit runs (multiprocessing's removes the server's temporary directory):
    about 0.07 s of a rebuild's end. Otherwise (an import, a server) it returns and the usual
    exit runs their clean-up.
    """
    import threading

    if threading.active_count() > 1:
        return
    if "multiprocessing" in sys.modules or "concurrent" in sys.modules:
        workers = sys.modules.get("ledger.workers")
        if workers is None or not workers.ended():
            return
        import atexit

        atexit._run_exitfuncs()
    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if exc.code is not None and not isinstance(exc.code, int):
        print(exc.code, file=sys.stderr)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, ValueError):
        return  # the usual exit reports it as it always did
    os._exit(code)


if __name__ == "__main__":
    main()
