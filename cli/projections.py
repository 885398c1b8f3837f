"""``ledger projections``: the SQL tables reporting jobs read (docs/reporting.md)."""

from __future__ import annotations

import math
import signal
import threading
from typing import Any

import click

from cli.context import Context, Failure, pass_ctx


class Seconds(click.FloatRange):
    """Seconds within bounds: click's FloatRange alone lets nan through (it compares false).

    Here, where ``--interval`` uses it: a class costs every command's start-up (issue 17).
    """

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        seconds = float(super().convert(value, param, ctx))
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


@click.group()
def projections() -> None:
    """SQL tables for reporting jobs, kept up to date from the ledger."""


@projections.command()
@pass_ctx
def rebuild(ctx: Context) -> None:
    """Reset the reporting tables and their tracking, and recompute every contract-month."""
    # SIGTERM stops it as Ctrl-C does, through the same unwinding: its workers, fork server and
    # shadow tables are cleaned up (by default the process just ended, leaving a /tmp/pymp-*
    # directory and the resource tracker's multi-line warning about leaked semaphores).
    main = threading.current_thread() is threading.main_thread()  # only there can it be set
    previous = signal.signal(signal.SIGTERM, _interrupt) if main else None
    try:
        _rebuild(ctx)
    except _Terminated:
        raise Failure("projections rebuild: stopped by SIGTERM") from None
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _rebuild(ctx: Context) -> None:
    from ledger.urls import SQLITE_PREFIX
    from ledger.workers import rebuild_modules, recorder_module, start_fork_server

    if not ctx.url.startswith(SQLITE_PREFIX):
        # The workers' fork server imports while this process opens the store and the view (about
        # 0.1 s, issue 17); the rebuild stops it, at once if the store is too small for workers. Not
        # for SQLite: its store opens quickly, and a small one's rebuild would pay for a server it
        # does not use.
        start_fork_server(rebuild_modules(recorder_module(ctx.url)))
    from cli.render import rebuild_line
    from ledger.bootstrap import writable
    from projections.tracked import rebuild as run_rebuild

    click.echo(rebuild_line(run_rebuild(writable(ctx.ledger(create=False)))))


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the rebuild is: a BaseException, so no ``except Exception`` swallows it."""


def _interrupt(signum: int, frame: object) -> None:
    raise _Terminated


@projections.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_ctx
def status(ctx: Context, fmt: str) -> None:
    """Per projection: the tracked position, the ledger's head, the lag in events, and failed months."""
    from cli.render import status_json, status_text
    from projections.tracked import status as get_status

    found = get_status(ctx.ledger(create=False))
    click.echo(status_json(found) if fmt == "json" else status_text(found), nl=fmt == "json")


@projections.command()
@click.option("--once", is_flag=True, help="Catch up with the ledger's head and exit.")
@click.option("--interval", type=Seconds(min=0.01, max=86400), default=1.0, show_default=True,
              metavar="S", help="At most S seconds between catch-ups (SQLite's head is also read "
                                "every 50 ms; PostgreSQL is notified of new events).")
@pass_ctx
def run(ctx: Context, once: bool, interval: float) -> None:
    """Keep the reporting tables up to date (until SIGTERM or Ctrl-C, or once with --once).

    On PostgreSQL a lost connection (a server restart) is retried, with a growing wait
    up to 15 s and one line on stderr per attempt; the tables go on from their tracking.
    """
    from ledger.bootstrap import writable
    from projections.tracked import run as run_worker

    position = run_worker(writable(ctx.ledger(create=False)), ctx.url, once=once, interval=interval,
                          log=lambda line: click.echo(line, err=True), freeze=True)
    click.echo(f"reporting at position {position}")
