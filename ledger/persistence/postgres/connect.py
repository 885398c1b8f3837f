"""PostgreSQL connections: libpq parameters from a store URL, the shared datastore, the first connection."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any, Final

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg import Connection
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row

from ledger.errors import BadInput, StoreError
from ledger.runtime import IDLE_TIMEOUT, env_seconds
from ledger.text import printable
from ledger.urls import redact, scrub

# TCP keepalives, client and server side: a session whose peer machine vanished (not a
# stopped process: its kernel still answers) is noticed within about a minute.
KEEPALIVE: Final = {"idle": 30, "interval": 10, "count": 3}


class LedgerDatastore(PostgresDatastore):
    """The library's datastore, connecting with every libpq parameter of the store URL, JIT off.

    The library hands libpq five parameters (dbname, host, port, user, password),
    always: the URL's others (``sslmode``, ``connect_timeout``, ``host=/socket/dir``...)
    would be dropped, and an absent user or host sent as given defaults instead of
    libpq's own. The ledger's queries are short index walks; PostgreSQL's cost
    estimate for a keyed read of a long service history can pass
    ``jit_above_cost``, and compiling then takes longer than running the query.

    Sessions that stall let go: one idle inside a transaction for LEDGER_IDLE_TIMEOUT
    seconds is ended by the server (a writer stopped between statements frees the
    append lock), TCP keepalives notice a vanished peer, and the application name
    (``ledger[PID]`` unless the URL or ``PGAPPNAME`` gives one) tells a waiting writer
    whose the lock is.
    """

    def __init__(self, params: dict[str, str], **kwargs: Any) -> None:
        # At least a millisecond: the library sends whole milliseconds, and 0 would mean never.
        kwargs.setdefault("idle_in_transaction_session_timeout", max(0.001, env_seconds(IDLE_TIMEOUT)))
        super().__init__(
            params.get("dbname", ""), params.get("host", ""), params.get("port", ""),
            params.get("user", ""), params.get("password", ""), **kwargs,
        )
        self.pool.kwargs = {
            "fallback_application_name": f"ledger[{os.getpid()}]", "keepalives": "1",
            **{f"keepalives_{k}": str(v) for k, v in KEEPALIVE.items()},
            **params, "row_factory": dict_row,
        }

    def after_connect_func(self) -> Callable[[Connection[Any]], None]:
        library = super().after_connect_func()
        settings = "; ".join(f"SET tcp_keepalives_{k} = {v}" for k, v in KEEPALIVE.items())

        def after_connect(conn: Connection[Any]) -> None:
            library(conn)
            conn.execute("SET jit = off")
            conn.execute(settings)

        return after_connect



# libpq's URI keywords the ledger leaves to libpq's defaults; connect_timeout has one more:
# without it an unreachable host is waited for as long as the system's TCP timeout.
CONNECT_TIMEOUT: Final = "10"
_PORT: Final = re.compile(r"[0-9]{1,5}")


def connection_params(url: str) -> dict[str, str]:
    """The libpq parameters of a ``postgresql://`` URL, by libpq's own URI rules.

    Query parameters are kept, absent ones are libpq's defaults (its environment
    variables, the OS user, the local socket). A URL libpq cannot read, or without
    a database name, or with a port that is not one, is bad input.
    """
    shown = redact(url)
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise BadInput(f"store URL {shown}: {scrub(str(exc), url)}") from None
    if not params.get("dbname"):
        raise BadInput(f"store URL {shown}: no database name (postgresql://USER@HOST:PORT/DBNAME)")
    for port in str(params.get("port", "")).split(","):
        if port and not (_PORT.fullmatch(port) and 1 <= int(port) <= 65535):
            raise BadInput(f"store URL {shown}: port {printable(port)!r} is not a port number (1 to 65535)")
    out = {key: str(value) for key, value in params.items()}
    out.setdefault("connect_timeout", CONNECT_TIMEOUT)
    return out


def parse_postgres_url(url: str) -> dict[str, Any]:
    """The five arguments eventsourcing's ``PostgresDatastore`` takes (its other parameters are dropped).

    For tools that build the library's own datastore; the ledger connects with
    ``connection_params`` instead.
    """
    params = connection_params(url)
    return {
        "dbname": params["dbname"],
        "host": params.get("host", ""),
        "port": params.get("port", "5432"),
        "user": params.get("user", ""),
        "password": params.get("password", ""),
    }


def _where(params: dict[str, str]) -> str:
    """Database, host and port of ``params`` for a message (never the password)."""
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "the local socket"
    port = params.get("port") or os.environ.get("PGPORT")
    at = f"{host}:{port}" if port and not host.startswith("/") else host
    user = params.get("user") or os.environ.get("PGUSER")
    return printable(f'database "{params["dbname"]}" at {at}' + (f" as {user}" if user else ""))


def connect(url: str, params: dict[str, str]) -> Connection[DictRow]:
    """One connection, or the server's reason at once (the pool would retry it for its whole timeout)."""
    try:
        return psycopg.connect(**params, autocommit=True, row_factory=dict_row)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        text = str(exc).split("\n", 1)[0]  # libpq's hint ("Is the server running...?") follows
        for prefix in ("connection failed: ", "connection is bad: "):
            text = text.removeprefix(prefix)
        reason = scrub(" ".join(text.split()), url)
        raise StoreError(f"cannot connect to PostgreSQL {_where(params)}: {printable(reason)}") from None


