"""``ledger serve``: the command; the HTTP application it runs is ``cli.server`` (imported when it starts)."""

from __future__ import annotations

import gc
import ipaddress
import os
import signal
import socket
import sys
from typing import Final

import click

from cli.context import Context, pass_ctx
from ledger.errors import BadInput, StoreError

DEFAULT_LISTEN = "127.0.0.1:8080"
MAX_BODY = 4 * 1024 * 1024  # larger imports go through `ledger import`
WRITE_TOKEN_ENV, READ_TOKEN_ENV = "LEDGER_WRITE_TOKEN", "LEDGER_READ_TOKEN"
READ_PRIORITIES = ("idle", "low", "normal")  # cli.server_reads.PRIORITIES (not imported by every command)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6); port 0 takes a free one."""
    host, colon, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise BadInput(f"--listen {text!r}: expected HOST:PORT")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token(name: str) -> str | None:
    # An HTTP header's value arrives without surrounding blanks: a token kept with them would never match.
    return os.environ.get(name, "").strip() or None


def _tokens(insecure_local: bool, host: str) -> tuple[str | None, str | None]:
    if insecure_local and not is_loopback(host):  # with tokens too: the flag asks for an open server
        raise BadInput(f"--insecure-local: only on a loopback address, not {host}")
    write, read = _token(WRITE_TOKEN_ENV), _token(READ_TOKEN_ENV)
    if (write is None or read is None) and not insecure_local:
        raise BadInput(f"{WRITE_TOKEN_ENV} and {READ_TOKEN_ENV} must be set "
                       "(or --insecure-local on a loopback address)")
    return write, read


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StoreError(f"--listen {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    return sock


# A long-running server's interpreter settings (docs/decisions.md, issue 21, hO).
GC_YOUNG: Final = 20_000  # net new tracked objects between two young collections (CPython: 700)
SWITCH_INTERVAL: Final = 0.001  # seconds before a thread waiting for the interpreter lock asks for it


def serving_runtime() -> None:
    """Once started: start-up's objects kept out of the collector's scans, the lock handed over sooner.

    A full collection stops every request while it walks every object: at the default
    thresholds, under 50 writing clients, about one every two seconds, tens of
    milliseconds each. What start-up made (modules, the open ledger, its pools) lives
    until exit: frozen, it is never scanned again; a young generation of 20,000 objects
    is collected when garbage accumulates, not at every burst of requests in flight
    (which the default's 700 promoted to the old generations). The writer thread waits
    for the interpreter lock after each of its statements while the event loop parses
    requests: it asks for it after 1 ms instead of 5.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
    sys.setswitchinterval(SWITCH_INTERVAL)


def _stopped(signum: int, frame: object) -> None:
    """The signal uvicorn raises again after its graceful shutdown: nothing left to do."""


@click.command()
@click.option("--listen", default=DEFAULT_LISTEN, show_default=True, metavar="HOST:PORT",
              help="Address to listen on (port 0: any free port, printed at start).")
@click.option("--map", "label_map", metavar="service=LABEL,probe=LABEL|FILE.toml",
              help="The labels (Uptime Kuma: monitor tags) naming the service and the probe.")
@click.option("--max-body", type=click.IntRange(1, 1 << 30), default=MAX_BODY, show_default=True,
              help="Largest request body in bytes (larger: 413).")
@click.option("--request-timeout", type=click.FloatRange(0.1, 3600), default=30.0, show_default=True,
              metavar="SECONDS", help="Time a request's headers, then its body, may take to arrive "
                                      "(longer: 408, nothing kept).")
@click.option("--read-priority", type=click.Choice(READ_PRIORITIES), default="idle", show_default=True,
              envvar="LEDGER_READ_PRIORITY",
              help="CPU priority of the reads (reports, events, proofs) against the writes: idle (the "
                   "CPU writes leave), low (nice 5) or normal.")
@click.option("--insecure-local", is_flag=True,
              help=f"Start without {WRITE_TOKEN_ENV}/{READ_TOKEN_ENV} (loopback addresses only).")
@pass_ctx
def serve(ctx: Context, listen: str, label_map: str | None, max_body: int, request_timeout: float,
          read_priority: str, insecure_local: bool) -> None:
    """Serve the store over HTTP: webhooks and NDJSON in, contracts, reports and events out."""
    import uvicorn

    from cli.server import ServerConfig, create_app
    from cli.server_http import protocol
    from ledger.bootstrap import open_ledger
    from ledger.feeds import DEFAULT_MAP, parse_label_map

    host, port = parse_listen(listen)
    write, read = _tokens(insecure_local, host)
    labels = parse_label_map(label_map) if label_map is not None else DEFAULT_MAP
    open_ledger(ctx.url).close()  # a store that cannot be opened: one line now, not a failed startup
    sock = _bind(host, port)
    url = ctx.url
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host

    def started() -> None:
        serving_runtime()
        # Said once the app is up, and so once uvicorn handles SIGTERM/SIGINT (its handlers are in
        # place before the app starts): a supervisor stopping the server as soon as it says it
        # serves gets a clean stop, not the signal's default (killed, exit -15).
        click.echo(f"ledger serving {ctx.shown} on http://{shown}:{bound_port}", err=True)

    app = create_app(lambda: open_ledger(url), ServerConfig(write, read, labels, max_body, read_priority,
                                                                 request_timeout),
                     started=started)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=None, server_header=False,
                            http=protocol(request_timeout))
    # uvicorn's own SIGTERM/SIGINT handling stops accepting and lets requests in flight finish,
    # then raises the signal again under the handlers found at start: these make that a clean exit.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("ledger serve: stopped", err=True)

