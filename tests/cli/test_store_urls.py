"""Store URLs and connections: what cannot work is refused in one line, passwords never shown,
libpq's parameters kept, connection failures reported at once, read-only commands create nothing.
"""

from __future__ import annotations

import hashlib
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import conninfo_to_dict

from cli.main import cli
from ledger.bootstrap import open_ledger
from ledger.errors import StoreError
from tests.pgserver import scratch_database

SECRET = "S3cr3t-pa55"


def invoke(runner: CliRunner, url: str, *args: str) -> Result:
    return runner.invoke(cli, ["--store", url, *args])


def one_line_error(result: Result) -> str:
    assert result.exit_code != 0, result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in result.output
    return lines[0]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens on it once closed


def pg_parts(admin_url: str) -> dict[str, str]:
    return {k: str(v) for k, v in conninfo_to_dict(admin_url).items()}


# --- URLs that cannot work -------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "the store URL is empty"),
        ("sqlite:mystore.db", "sqlite:///relative/path or sqlite:////absolute/path"),
        ("sqlite://mystore.db", "sqlite:///relative/path or sqlite:////absolute/path"),
        ("sqlite://host/mystore.db", "sqlite:///relative/path or sqlite:////absolute/path"),
        ("sqlite:///", "no file path"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:///file:x.db?mode=memory", "`?`, `#` and `%`"),
        ("sqlite:///x.db?mode=ro", "`?`, `#` and `%`"),
        ("sqlite:///x%20y.db", "`?`, `#` and `%`"),
        ("sqlite:///sub/", "is a directory"),
        ("mysql://u@h/db", "expected sqlite:///PATH or postgresql://"),
        ("ledger.db", "expected sqlite:///PATH or postgresql://"),
        (f"postgresq://alice:{SECRET}@127.0.0.1:5432/db", "expected sqlite:///PATH or postgresql://"),
        (f"postgresql://alice:{SECRET}@127.0.0.1:5432", "no database name"),
        (f"postgresql://alice:{SECRET}@127.0.0.1:5432/", "no database name"),
        (f"postgresql://alice:{SECRET}@127.0.0.1:99999/db", "port '99999' is not a port number"),
        (f"postgresql://alice:{SECRET}@127.0.0.1:0/db", "port '0' is not a port number"),
        (f"postgresql://alice:{SECRET}@127.0.0.1:abc/db", "port 'abc' is not a port number"),
        (f"postgresql://alice:{SECRET}@127.0.0.1:5432/db?colour=red",
         'invalid URI query parameter: "colour"'),
        (f"postgresql://alice:{SECRET}%zz@127.0.0.1:5432/db", "invalid percent-encoded token"),
        (f"postgresql://alice:{SECRET}@[::1/db", "matching"),
        ("postgresql://h/db\x1b[2J", "control character"),
    ],
)
@pytest.mark.parametrize("command", [["init"], ["report", "--contract", "c", "--month", "2026-10"]])
def test_a_url_that_cannot_work_is_refused_and_creates_nothing(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, says: str,
    command: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    line = one_line_error(invoke(runner, url, *command))
    assert says in line
    assert SECRET not in line
    assert "\x1b" not in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub"]  # no store.db, no x.db...
    assert not any((tmp_path / "sub").iterdir())


def test_an_empty_ledger_store_variable_is_unset(runner: CliRunner, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # click reads an empty variable as unset: the default store, like --store not given.
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, ["init"], env={"LEDGER_STORE": ""})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("ledger ready at sqlite:///ledger.db ")


def test_sqlite_urls_relative_and_absolute(runner: CliRunner, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    assert invoke(runner, "sqlite:///d/rel.db", "init").exit_code == 0
    assert invoke(runner, f"sqlite:///{tmp_path}/abs.db", "init").exit_code == 0
    assert invoke(runner, "sqlite:///file:odd.db", "init").exit_code == 0  # a file name, not a URI
    assert {p.name for p in (tmp_path / "d").iterdir()} >= {"rel.db"}
    assert {"abs.db", "file:odd.db"} <= {p.name for p in tmp_path.iterdir()}


# --- passwords -------------------------------------------------------------------------


def test_init_does_not_print_the_password(runner: CliRunner, pg_url: str) -> None:
    # The test server trusts 127.0.0.1: the password is sent and ignored, so init succeeds.
    p = pg_parts(pg_url)
    url = f"postgresql://{p['user']}:{SECRET}@{p['host']}:{p['port']}/{p['dbname']}"
    result = invoke(runner, url, "init")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"ledger ready at postgresql://{p['user']}:***@{p['host']}:")
    assert SECRET not in result.output


def test_no_message_shows_the_password(runner: CliRunner, pg_admin_url: str) -> None:
    p = pg_parts(pg_admin_url)
    for url in (f"postgresql://{p['user']}:{SECRET}@127.0.0.1:{closed_port()}/db",
                f"postgresql://{p['user']}:{SECRET}@{p['host']}:{p['port']}/no_such_db_h4",
                f"postgresql://{p['host']}:{p['port']}/no_such_db_h4?user={p['user']}&password={SECRET}"):
        line = one_line_error(invoke(runner, url, "events"))
        assert SECRET not in line
        assert "no_such_db_h4" in line or '"db"' in line


class FakeServer:
    """A PostgreSQL server that asks for a password and refuses it, as pg_hba's md5/password do.

    The test server trusts every local connection, so a real refusal cannot be had there.
    """

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self.passwords: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._one(conn)

    def _one(self, conn: socket.socket) -> None:
        def read(n: int) -> bytes:
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    raise ConnectionError
                data += chunk
            return data

        try:
            while True:
                length, code = struct.unpack("!ii", read(8))
                if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                    conn.sendall(b"N")
                    continue
                read(length - 8)  # the startup message's parameters
                break
            conn.sendall(b"R" + struct.pack("!ii", 8, 3))  # AuthenticationCleartextPassword
            _kind, length = struct.unpack("!ci", read(5))
            self.passwords.append(read(length - 4).rstrip(b"\0"))
            fields = b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed for user \"alice\"\0\0"
            conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)
        except (ConnectionError, OSError):
            pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    yield server
    server.close()


def test_a_wrong_password_fails_at_once_with_the_server_reason(runner: CliRunner,
                                                               fake_server: FakeServer) -> None:
    url = f"postgresql://alice:{SECRET}@127.0.0.1:{fake_server.port}/ledger?sslmode=disable"
    started = time.monotonic()
    line = one_line_error(invoke(runner, url, "init"))
    assert time.monotonic() - started < 5
    assert line == (f'error: cannot connect to PostgreSQL database "ledger" at 127.0.0.1:{fake_server.port} '
                    f'as alice: connection to server at "127.0.0.1", port {fake_server.port} failed: '
                    'FATAL: password authentication failed for user "alice"')
    assert fake_server.passwords == [SECRET.encode()]  # sent as given, shown nowhere


# --- libpq's rules and parameters ------------------------------------------------------


def test_connection_failures_are_immediate_and_name_host_and_database(runner: CliRunner,
                                                                      pg_admin_url: str) -> None:
    p = pg_parts(pg_admin_url)
    port = closed_port()
    cases = [
        (f"postgresql://{p['user']}@127.0.0.1:{port}/ledger",
         f'database "ledger" at 127.0.0.1:{port}', "Connection refused"),
        (f"postgresql://{p['user']}@no-such-host.invalid:5432/ledger",
         'database "ledger" at no-such-host.invalid:5432', "no-such-host.invalid"),
        (f"postgresql://{p['user']}@{p['host']}:{p['port']}/no_such_db_h4",
         f'database "no_such_db_h4" at {p["host"]}:{p["port"]}', 'database "no_such_db_h4" does not exist'),
        (f"postgresql://no_such_role_h4@{p['host']}:{p['port']}/postgres",
         f'database "postgres" at {p["host"]}:{p["port"]} as no_such_role_h4',
         'role "no_such_role_h4" does not exist'),
        (f"postgresql:///ledger?host=/no/such/dir&user={p['user']}",
         'database "ledger" at /no/such/dir', "No such file or directory"),
    ]
    for url, where, reason in cases:
        started = time.monotonic()
        line = one_line_error(invoke(runner, url, "init"))
        assert time.monotonic() - started < 5, url  # the pool used to retry for 10 s
        assert line.startswith(f"error: cannot connect to PostgreSQL {where}"), line
        assert reason in line, line
        assert "couldn't get a connection" not in line


def test_query_parameters_reach_the_connection(pg_url: str) -> None:
    p = pg_parts(pg_url)
    url = (f"postgresql://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}"
           "?application_name=ledger-h4&connect_timeout=7&sslmode=disable&options=-c%20work_mem%3D7MB")
    ledger = open_ledger(url)
    try:
        with ledger.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
            row = conn.execute("SELECT current_setting('application_name') AS app, "
                               "current_setting('work_mem') AS mem").fetchone()
            params = conn.info.get_parameters()
        assert row == {"app": "ledger-h4", "mem": "7MB"}
        assert params["connect_timeout"] == "7"
        assert params["sslmode"] == "disable"
    finally:
        ledger.close()


def test_sslmode_require_is_not_dropped(runner: CliRunner, pg_url: str) -> None:
    p = pg_parts(pg_url)
    with psycopg.connect(pg_url) as conn:
        ssl = conn.execute("SHOW ssl").fetchone()
    url = f"postgresql://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}?sslmode=require"
    result = invoke(runner, url, "init")
    if ssl == ("off",):  # the test servers: then a plain-text connection must not be made
        assert "SSL was required" in one_line_error(result)
    else:
        assert result.exit_code == 0, result.stderr
        ledger = open_ledger(url)
        try:
            with ledger.recorder.datastore.get_connection() as conn:  # type: ignore[attr-defined]
                assert conn.info.pgconn.ssl_in_use
        finally:
            ledger.close()


def test_the_default_user_is_libpqs(runner: CliRunner, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    p = pg_parts(pg_url)
    url = f"postgresql://{p['host']}:{p['port']}/{p['dbname']}"  # no user: PGUSER, else the OS user
    monkeypatch.setenv("PGUSER", "no_such_role_h4")
    assert 'role "no_such_role_h4" does not exist' in one_line_error(invoke(runner, url, "init"))
    monkeypatch.setenv("PGUSER", p["user"])
    assert invoke(runner, url, "init").exit_code == 0


# --- read-only commands create nothing ---------------------------------------------------

READ_ONLY = [
    ["report", "--contract", "c", "--month", "2026-10"],
    ["audit", "--contract", "c", "--month", "2026-10"],
    ["events"],
    ["verify"],
    ["projections", "status"],
    ["contract", "list"],
    ["contract", "show", "c"],
    ["support", "--contract", "c", "--month", "2026-10"],
]


def _pg_tables(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
                            "ORDER BY 1").fetchall()
    return [r[0] for r in rows]


def _file_state(path: Path) -> str | None:
    if not path.exists():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest() + str(sorted(p.name for p in path.parent.iterdir()))


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: "-".join(c[:2]))
def test_read_only_commands_on_what_is_not_a_ledger(
        runner: CliRunner, store_url: str, tmp_path: Path, command: list[str], request: pytest.FixtureRequest,
) -> None:
    if store_url.startswith("postgresql"):
        store_url = request.getfixturevalue("pg_url")  # an empty database, not a copy of an empty ledger
    if store_url.startswith("sqlite"):
        path = Path(store_url.removeprefix("sqlite:///"))
        cases: list[tuple[str, str]] = [(store_url, str(path))]  # a missing file
        foreign = tmp_path / "foreign.db"
        with sqlite3.connect(foreign) as conn:
            conn.execute("CREATE TABLE other (x)")
        conn.close()
        cases += [(f"sqlite:///{foreign}", str(foreign))]
        for url, shown in cases:
            before = _file_state(Path(shown))
            line = one_line_error(invoke(runner, url, *command))
            assert line.startswith(f"error: not a ledger store: {shown} ("), line
            assert _file_state(Path(shown)) == before
        # A file SQLite cannot open is named for what it is not: `ledger init` (the hint above)
        # refuses it too.
        for text in _not_sqlite(tmp_path):
            before = _file_state(text)
            result = invoke(runner, f"sqlite:///{text}", *command)
            assert (result.exit_code, one_line_error(result)) == (2, f"error: {text}: not a SQLite database")
            assert _file_state(text) == before
    else:
        p = pg_parts(store_url)
        url = f"postgresql://{p['user']}:{SECRET}@{p['host']}:{p['port']}/{p['dbname']}"
        shown = f"postgresql://{p['user']}:***@{p['host']}:{p['port']}/{p['dbname']}"
        with psycopg.connect(store_url, autocommit=True) as conn:
            conn.execute("CREATE TABLE other (x int)")
        line = one_line_error(invoke(runner, url, *command))
        assert line.startswith(f"error: not a ledger store: {shown} ("), line
        assert _pg_tables(store_url) == ["other"]


def _not_sqlite(tmp_path: Path) -> list[Path]:
    """Files that are no SQLite database: text, two bytes, and SQLite's header over something else."""
    text, short, header = tmp_path / "notes.db", tmp_path / "short.db", tmp_path / "header.db"
    text.write_text("not a database\n")
    short.write_bytes(b"hi")
    header.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 20)
    return [text, short, header]


def test_writing_commands_leave_what_is_not_sqlite_as_it_was(runner: CliRunner, tmp_path: Path) -> None:
    events = tmp_path / "e.ndjson"
    events.write_text('{"type":"probe_failed","service":"s","probe":"p","at":"2026-10-04T09:15:00Z"}\n')
    for text in _not_sqlite(tmp_path):
        before = _file_state(text)
        for command in (["init"], ["import", str(events)], ["demo"]):
            result = invoke(runner, f"sqlite:///{text}", *command)
            assert (result.exit_code, one_line_error(result)) == (2, f"error: {text}: not a SQLite database")
            assert _file_state(text) == before


def test_projections_status_creates_no_reporting_table(runner: CliRunner, store_url: str) -> None:
    assert invoke(runner, store_url, "init").exit_code == 0

    def tables() -> list[str]:
        if store_url.startswith("sqlite"):
            with sqlite3.connect(store_url.removeprefix("sqlite:///")) as conn:
                names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            conn.close()
            return sorted(names)
        return _pg_tables(store_url)

    before = tables()
    result = invoke(runner, store_url, "projections", "status")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "reporting\tposition=0\thead=0\tlag=0\n"
    assert tables() == before


def test_an_empty_postgres_database_stays_empty(pg_admin_url: str) -> None:
    with scratch_database(pg_admin_url) as url:
        with pytest.raises(StoreError, match="not a ledger store"):
            open_ledger(url, create=False)
        assert _pg_tables(url) == []
        open_ledger(url).close()  # `ledger init` (create) is what makes the tables
        assert "stored_events" in _pg_tables(url)
