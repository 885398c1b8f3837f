"""What every command shares: the Context on ``ctx.obj``, its pass decorator, error mapping, option helpers.

Commands in ``cli.main`` and ``cli.projections`` import this module and never each other,
so neither needs the other to be loaded first (click's ``examples/repo`` habit: the group
builds the context, subcommands receive it with ``make_pass_decorator``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ledger.calendar import check_instant, check_month, rfc3339
from ledger.errors import BadInput, LedgerError, one_line
from ledger.text import printable, shortened
from ledger.urls import redact, scrub

F = TypeVar("F", bound=Callable[..., Any])

if TYPE_CHECKING:
    from ledger.application import Ledger


class Context:
    """What subcommands share: the store URL and, once opened, the ledger."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redact(url)  # for messages: no password (the URL is checked when opened)
        self._ledger: Ledger | None = None

    def ledger(self, *, create: bool = True, read_only: bool = False) -> Ledger:
        """The ledger at ``url``, opened on first use (``create``: make the store if missing).

        ``read_only``: for a command that only reads (``ledger.bootstrap.open_recorder``).
        """
        if self._ledger is None:
            from ledger.bootstrap import open_ledger  # not for `--help` or a usage error

            self._ledger = open_ledger(self.url, create=create, read_only=read_only)
        return self._ledger

    def close(self) -> None:
        """Close the ledger if it was opened."""
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None


pass_ctx = click.make_pass_decorator(Context)


# --- errors: one line and an exit code, never a traceback -------------------------


class Failure(click.ClickException):
    """A one-line error with its own exit code (2: bad input, 1: anything else, 3: verify failed)."""

    def __init__(self, message: str, code: int = 1) -> None:
        # Escaped whole: a message may echo input, which must not reach the terminal raw; and
        # bounded, so that a 10,000-character id cannot fill the terminal.
        super().__init__(shortened(printable(one_line(message))))
        self.exit_code = code  # type: ignore[misc]  # click declares it on the class

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _usage(exc: click.UsageError) -> Failure:
    where = exc.ctx.command_path if exc.ctx is not None else "ledger"
    return Failure(f"{exc.format_message()} (see `{where} --help`)", 2)


# --- --help and --version without gettext ------------------------------------------
#
# click's own ``--help`` and ``--version`` options translate their help text with ``gettext``, whose
# first call imports ``locale`` (4M instructions of every command, issue 17). The ledger ships no
# translations, so the group and ``report`` make the same options with the same English text.
_HELP_NAME = "_ledger_help"  # a reserved storage name: a parameter named `help` cannot clash (as click's)


def _show_help(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit()


def version_option(package: str) -> Callable[[F], F]:
    """``click.version_option(package_name=package)``: prints "PROG, version V" and exits."""

    def show(ctx: click.Context, param: click.Parameter, value: bool) -> None:
        if not value or ctx.resilient_parsing:
            return
        from importlib.metadata import version

        click.echo(f"{ctx.find_root().info_name}, version {version(package)}", color=ctx.color)
        ctx.exit()

    return click.option("--version", is_flag=True, expose_value=False, is_eager=True,
                        help="Show the version and exit.", callback=show)


class _PlainHelp(click.Command):
    """``click.Command.get_help_option`` with the help text given, not translated."""

    _plain_help: click.Option | None = None

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        names = self.get_help_option_names(ctx)
        if not names or not self.add_help_option:
            return None
        if self._plain_help is None:  # one object: click orders eager parameters by identity
            self._plain_help = click.Option([*names, _HELP_NAME], is_flag=True, expose_value=False,
                                            is_eager=True, help="Show this message and exit.",
                                            callback=_show_help)
        return self._plain_help


class LedgerCommand(_PlainHelp):
    """A command of the group, defined with it (``report``)."""


class LedgerGroup(_PlainHelp, click.Group):
    """Turns every failure below it into one line and a non-zero exit, never a traceback.

    ``lazy`` names commands by ``"module:attribute"``: a module is imported when its command
    runs (or when ``--help`` lists it), so a report does not pay for the server's or the
    support clocks' imports (issue 17, a fast start).
    """

    command_class = LedgerCommand

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command), self.lazy[cmd_name]
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[_ARGS] = list(args)  # as given, for ``_undecodable``
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
        except UnicodeEncodeError as exc:
            # An argument that is not UTF-8 reaches the command as lone surrogates (Python's
            # reading of argv), which fail only where the text is encoded: name the argument.
            where = _undecodable(ctx.meta.get(_ARGS, []))
            if where is None:
                raise Failure(_scrubbed(ctx, _describe(exc)), 1) from None
            raise Failure(_scrubbed(ctx, f"{where}: not valid UTF-8 text"), 2) from None
        except Exception as exc:
            if os.environ.get("LEDGER_DEBUG"):
                raise
            raise Failure(_scrubbed(ctx, _describe(exc)), 1) from None


_ARGS = "ledger.args"


def _undecodable(args: list[str]) -> str | None:
    """The option (or argument) whose value was not UTF-8 on the command line; None if none was."""
    for i, arg in enumerate(args):
        if any("\udc80" <= c <= "\udcff" for c in arg):
            if arg.startswith("--") and "=" in arg:
                return arg.partition("=")[0]
            if i and args[i - 1].startswith("-") and not arg.startswith("-"):
                return args[i - 1]
            return f"argument {arg!r}"
    return None


def _scrubbed(ctx: click.Context, message: str) -> str:
    """``message`` without the store URL's password, wherever it came from."""
    url = ctx.obj.url if isinstance(ctx.obj, Context) else ctx.params.get("store")
    return scrub(message, url) if isinstance(url, str) else message


def _describe(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    name = type(exc).__module__.split(".")[0]
    if name in ("psycopg", "psycopg_pool", "sqlite3", "eventsourcing"):
        return f"store: {text}"
    return f"{type(exc).__name__}: {text}"


# --- option helpers ----------------------------------------------------------------


def timestamp(value: str | None, option: str) -> datetime | None:
    """An RFC 3339 option value with an offset, inside the ledger's range (None stays None)."""
    if value is None:
        return None
    ts = rfc3339(value)
    if ts is None:
        raise BadInput(f"{option} {value!r}: expected an RFC 3339 timestamp with an offset")
    if ts.tzinfo is None:
        raise BadInput(f"{option} {value!r}: the timestamp has no offset")
    return check_instant(ts, option)


def replay_options(command: F) -> F:
    """``--as-of`` and ``--position``: the point of the ledger's history a month is replayed at."""
    command = click.option("--position", type=int, metavar="N",
                           help="Replay what was recorded up to position N.")(command)
    return click.option("--as-of", "as_of", metavar="TIMESTAMP",
                        help="Replay what was recorded up to this instant.")(command)


def month_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--month``, read by the one month parser (``ledger.calendar.parse_month``)."""
    return check_month(value, "--month")
