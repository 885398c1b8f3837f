"""``ledger projections``: the SQL tables reporting jobs read (docs/reporting.md)."""

from __future__ import annotations

import math
from typing import Any

import click
import msgspec

from ledger.application import Ledger


class Seconds(click.FloatRange):
    """Seconds within bounds: click's FloatRange alone lets nan through (it compares false)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        seconds = float(super().convert(value, param, ctx))
        if math.isnan(seconds):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        return seconds


def _ledger() -> tuple[Ledger, str]:
    # Imported here: cli.main registers this group, so a top-level import would be circular.
    from cli.main import Context

    ctx = click.get_current_context().find_object(Context)
    assert ctx is not None, "the projections group runs under the `ledger` command"
    return ctx.ledger(create=False), ctx.url


@click.group()
def projections() -> None:
    """SQL tables for reporting jobs, kept up to date from the ledger."""


@projections.command()
def rebuild() -> None:
    """Reset the reporting tables and their tracking, and recompute every contract-month."""
    from projections.tracked import rebuild as run_rebuild

    ledger, _ = _ledger()
    r = run_rebuild(ledger)
    failed = f"; {r.failed} failed (see `ledger projections status`)" if r.failed else ""
    click.echo(f"rebuilt reporting: {r.pairs} contract-months from {r.events} events "
               f"in {r.seconds:.2f} s ({r.events_per_second:,.0f} events/s){failed}")


@projections.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(fmt: str) -> None:
    """Per projection: the tracked position, the ledger's head, the lag in events, and failed months."""
    from projections.tracked import status as get_status

    ledger, _ = _ledger()
    found = get_status(ledger)
    if fmt == "json":
        click.echo(msgspec.json.encode([
            {"projection": s.projection, "position": s.position, "head": s.head, "lag": s.lag,
             "failed": s.failed, "failures": [msgspec.structs.asdict(f) for f in s.failures]}
            for s in found
        ]).decode())
        return
    for s in found:
        failed = f"\tfailed={s.failed}" if s.failed else ""
        click.echo(f"{s.projection}\tposition={s.position}\thead={s.head}\tlag={s.lag}{failed}")
        for f in s.failures:
            click.echo(f"{s.projection}\tfailed\t{f.contract}\t{f.month}\tposition={f.position}\t{f.error}")
        if s.failed > len(s.failures):
            click.echo(f"{s.projection}\tfailed\t... and {s.failed - len(s.failures)} more")


@projections.command()
@click.option("--once", is_flag=True, help="Catch up with the ledger's head and exit.")
@click.option("--interval", type=Seconds(min=0.01, max=86400), default=1.0, show_default=True,
              metavar="S", help="Seconds between polls (SQLite; PostgreSQL is notified of new events).")
def run(once: bool, interval: float) -> None:
    """Keep the reporting tables up to date (until SIGTERM or Ctrl-C, or once with --once).

    On PostgreSQL a lost connection (a server restart) is retried, with a growing wait
    up to 15 s and one line on stderr per attempt; the tables go on from their tracking.
    """
    from projections.tracked import run as run_worker

    ledger, url = _ledger()
    position = run_worker(ledger, url, once=once, interval=interval,
                          log=lambda line: click.echo(line, err=True))
    click.echo(f"reporting at position {position}")
