"""Least privilege on PostgreSQL, tested as it is used: one LOGIN user per role on the real server.

Roles are cluster-wide, so each test makes its own (a unique prefix) and drops them after.
What each role can and cannot do is listed in docs/reliability.md ("Roles").
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from cli.demo import example_policy_paths
from cli.main import cli
from ledger.admission import fact_from_fields
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.persistence.port import ROW_TABLES, TRACKING_TABLE
from ledger.persistence.postgres.connect import parse_postgres_url
from ledger.persistence.postgres.recorder import create_roles
from ledger.persistence.postgres.schema import COPIES, LIVE_TABLE, ROLES, copy_name, roles_sql
from ledger.policy_check import load_policy
from ledger.verify import verify
from tests.conftest import StepClock
from tests.integration.test_store_contract import snapshot
from tests.lines import import_lines
from tests.pgserver import scratch_database

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "data" / "sample.ndjson"
MONTH = "2026-10"
LINE = b'{"type":"probe_failed","service":"workspace","probe":"p%d","at":"2026-10-04T09:15:00Z"}'
Denied = psycopg.errors.InsufficientPrivilege


@dataclass
class Store:
    """A ledger with roles: the owner's open ledger and a URL per role's login user."""

    owner: Ledger
    owner_url: str
    url: dict[str, str]
    prefix: str


def login_url(url: str, user: str) -> str:
    a = parse_postgres_url(url)
    return f"postgresql://{user}@{a['host']}:{a['port']}/{a['dbname']}"


def drop_roles(admin_url: str, names: list[str]) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        for name in names:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)).fetchone():
                conn.execute(f'DROP OWNED BY "{name}"'.encode())
                conn.execute(f'DROP ROLE "{name}"'.encode())


@pytest.fixture
def store(pg_url: str, clock: StepClock) -> Iterator[Store]:
    prefix = "lt" + uuid.uuid4().hex[:8]
    logins = [f"{prefix}_{r}_login" for r in ROLES]
    owner = open_ledger(pg_url, clock=clock)
    try:
        owner.register_contract(load_policy(example_policy_paths()[0].read_bytes()))  # sla-a: workspace
        import_lines(owner, SAMPLE.read_bytes().splitlines())
        assert create_roles(owner.recorder, prefix) == [f"{prefix}_{r}" for r in ROLES]
        create_roles(owner.recorder, prefix)  # idempotent
        with psycopg.connect(pg_url, autocommit=True) as conn:
            for role, login in zip(ROLES, logins, strict=True):
                conn.execute(f'CREATE ROLE "{login}" LOGIN IN ROLE "{prefix}_{role}"'.encode())
        urls = {r: login_url(pg_url, u) for r, u in zip(ROLES, logins, strict=True)}
        yield Store(owner, pg_url, urls, prefix)
    finally:
        owner.close()
        drop_roles(pg_url, [*logins, *(f"{prefix}_{r}" for r in ROLES)])


def run(runner: CliRunner, url: str, *args: str) -> Result:
    return runner.invoke(cli, ["--store", url, *args])


def ok(runner: CliRunner, url: str, *args: str) -> str:
    result = run(runner, url, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


def refused_in_one_line(result: Result, *fragments: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def denied(url: str, statement: str) -> None:
    """``statement`` run as the role behind ``url`` is refused for want of privilege."""
    with psycopg.connect(url) as conn:
        with pytest.raises(Denied):
            conn.execute(statement.encode())
        conn.rollback()


def grants(url: str, prefix: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT grantee, table_name, privilege_type FROM information_schema.role_table_grants "
            "WHERE grantee LIKE %s UNION SELECT grantee, routine_name, privilege_type "
            "FROM information_schema.role_routine_grants WHERE grantee LIKE %s ORDER BY 1, 2, 3",
            (prefix + "%", prefix + "%"),
        ).fetchall()
    return [tuple(r) for r in rows]


# --- the roles ---------------------------------------------------------------------


def test_roles_are_nologin_and_granting_again_changes_nothing(store: Store) -> None:
    with psycopg.connect(store.owner_url) as conn:
        rows = conn.execute("SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname = ANY(%s) "
                            "ORDER BY 1", ([f"{store.prefix}_{r}" for r in ROLES],)).fetchall()
    assert rows == sorted((f"{store.prefix}_{r}", False, False) for r in ROLES)
    before = grants(store.owner_url, store.prefix)
    create_roles(store.owner.recorder, store.prefix)
    assert grants(store.owner_url, store.prefix) == before
    p = store.prefix
    assert (f"{p}_appender", "stored_events", "UPDATE") not in before
    assert (f"{p}_appender", "ledger_append_lock", "EXECUTE") in before
    assert {(t, priv) for g, t, priv in before if g == f"{p}_projector"} == {
        ("stored_events", "SELECT"), ("ledger_index", "SELECT"), ("ledger_names", "SELECT"),
        ("ledger_merkle", "SELECT"),
        # The names readers use are views over two copies; the projector fills the copies.
        *((t, "SELECT") for t in ROW_TABLES),
        *((copy_name(t, c), priv) for t in ROW_TABLES for c in COPIES
          for priv in ("SELECT", "INSERT", "DELETE", "TRUNCATE")),
        (LIVE_TABLE, "SELECT"), (LIVE_TABLE, "UPDATE"),
        *((TRACKING_TABLE, priv) for priv in ("SELECT", "INSERT", "UPDATE", "DELETE")),
    }
    reporting = {(t, priv) for g, t, priv in before if g == f"{p}_reporting"}
    assert reporting >= {(t, "SELECT") for t in ROW_TABLES}
    assert not {t for t, _ in reporting if "__" in t}  # the views' rights suffice


def test_roles_sql_file_is_the_default_script() -> None:
    text = (REPO / "ledger" / "sql" / "roles.sql").read_text()
    assert text[text.index("-- Roles:"):] == roles_sql()


# --- appender ------------------------------------------------------------------------


def test_appender_appends_and_imports(store: Store, runner: CliRunner, tmp_path: Path) -> None:
    url = store.url["appender"]
    first = store.owner.recorder.last_position() + 1
    assert ok(runner, url, "append", "--json", (LINE % 1).decode()).strip() == str(first)
    file = tmp_path / "more.ndjson"
    file.write_bytes(b"\n".join(LINE % i for i in range(2, 60)))
    ok(runner, url, "import", "-q", str(file))
    again = run(runner, url, "import", str(file))
    assert again.exit_code == 0
    assert "imported 0 events, 58 already recorded" in again.stderr
    assert store.owner.recorder.last_position() == first + 58
    assert verify(store.owner.recorder).ok


@pytest.mark.parametrize("statement", [
    "UPDATE stored_events SET topic = topic",
    "UPDATE ledger_index SET key = key",
    "DELETE FROM stored_events",
    "DELETE FROM ledger_index",
    "TRUNCATE stored_events",
    "LOCK TABLE stored_events IN ACCESS EXCLUSIVE MODE",
    "LOCK TABLE stored_events IN EXCLUSIVE MODE",
    "LOCK TABLE ledger_index IN ACCESS EXCLUSIVE MODE",
    "SELECT * FROM stored_events FOR UPDATE",
    "SELECT setval(pg_get_serial_sequence('stored_events', 'notification_id'), 1)",
    "INSERT INTO stored_events (originator_id, originator_version, topic, state) VALUES ('x', 1, 'x', 'x')",
    "ALTER TABLE stored_events DISABLE TRIGGER ALL",
    "SET session_replication_role = replica",
    "DELETE FROM ledger_append_tally",
    "DROP TABLE ledger_index",
    "CREATE OR REPLACE FUNCTION ledger_append_lock() RETURNS bigint LANGUAGE sql AS 'SELECT 1::bigint'",
    "SELECT ledger_check_events()",
    "INSERT INTO report_monthly_availability__a SELECT * FROM report_monthly_availability",
    "TRUNCATE report_monthly_availability__b",
])
def test_appender_cannot_alter_or_lock_the_log(store: Store, statement: str) -> None:
    before = snapshot(store.owner)
    denied(store.url["appender"], statement)
    assert snapshot(store.owner) == before
    assert verify(store.owner.recorder).ok


def _next_row(owner: Ledger) -> tuple[int, str]:
    """The next position, and the recorded_at of the last row (as the ledger writes it)."""
    last = list(owner.records())[-1]
    return last.position + 1, last.recorded_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


FACT = '{"at":"2026-10-04T09:15:00Z","probe":"p","service":"workspace","type":"probe_failed"}'


@dataclass(frozen=True)
class Row:
    """A row written by hand: by default one the ledger could have written (but for the link's value)."""

    offset: int | None = 0  # from the next position (None: position 0)
    id: str = "j1"
    version: int = 1
    topic: str = "probe_failed"
    state_id: str | None = None  # the id inside the state (None: the row's)
    at: str | None = None  # recorded_at (None: the last row's)
    link: str = "ab" * 32
    state: bytes | None = None  # the whole state, instead

    def values(self, start: int, last_at: str) -> tuple[str, int, str, bytes, int]:
        state = self.state or (f'["{self.state_id or self.id}","{self.at or last_at}",{FACT},'
                               f'"{self.link}"]').encode()
        return self.id, self.version, self.topic, state, 0 if self.offset is None else start + self.offset


KEY = [("s:workspace", 0)]
# (what is wrong, the rows, the index rows (key, offset from the next position), the refusal's words)
JUNK: list[tuple[str, list[Row], list[tuple[str, int]], str]] = [
    ("not JSON at all", [Row(state=b"junk")], KEY, "state is not [id, recorded_at, fact, link]"),
    ("a gap", [Row(offset=1)], [("s:workspace", 1)], "takes no gap"),
    ("position 0", [Row(offset=None)], [], "takes no gap"),
    ("version 2", [Row(version=2)], KEY, "originator_version must be 1"),
    ("unknown topic", [Row(topic="probe_exploded")], KEY, "is not a fact type"),
    ("another row's id", [Row(state_id="j2")], KEY, "with this row's id"),
    ("recorded_at going back", [Row(at="2001-01-01T00:00:00Z")], KEY, "earlier than the row before"),
    ("recorded_at without an offset", [Row(at="2030-01-01T00:00:00")], KEY, "recorded_at is not a timestamp"),
    ("recorded_at that is no date", [Row(at="2030-02-30T00:00:00Z")], KEY, "recorded_at is not a timestamp"),
    ("a fact of another type", [Row(topic="incident_resolved")], KEY, "fact is not an object of type"),
    ("a link in capitals", [Row(link="AB" * 32)], KEY, "link is not 64 lowercase hex digits"),
    ("a short link", [Row(link="ab" * 31)], KEY, "link is not 64 lowercase hex digits"),
    ("a bad row after good ones, in one COPY",
     [Row(), Row(offset=1, id="j2"), Row(offset=2, id="j3", link="x" * 64)], [],
     "position {2} refused: link"),
    ("no key index row", [Row()], [], "have no key index rows"),
    ("an index row for an older position", [Row()], [*KEY, ("s:workspace", -1)],
     "key index rows for positions"),
    ("two index rows for one position", [Row()], [*KEY, ("s:other", 0)], "key index rows for positions"),
    ("an index key of no kind", [Row()], [("workspace", 0)], "a key must begin with"),
    ("an index row alone", [], [("s:workspace", -1)], "key index rows for positions"),
]


def _write(url: str, values: list[tuple[str, int, str, bytes, int]], keys: list[tuple[str, int]]) -> None:
    """One transaction: the rows by COPY (the import's own path: one statement), then the index rows."""
    with psycopg.connect(url) as conn, conn.transaction():
        if values:
            with conn.cursor().copy("COPY stored_events (originator_id, originator_version, topic, state, "
                                    "notification_id) FROM STDIN") as copy:
                for row in values:
                    copy.write_row(row)
        for key, position in keys:
            conn.execute("INSERT INTO ledger_index VALUES (%s, %s)", (key, position))


@pytest.mark.parametrize(("what", "rows", "keys", "words"), JUNK, ids=[j[0] for j in JUNK])
def test_appender_cannot_write_a_row_the_ledger_would_not(store: Store, runner: CliRunner, what: str,
                                                         rows: list[Row], keys: list[tuple[str, int]],
                                                         words: str) -> None:
    before = snapshot(store.owner)
    start, last_at = _next_row(store.owner)
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        _write(store.url["appender"], [r.values(start, last_at) for r in rows],
               [(key, start + offset) for key, offset in keys])
    message = str(refused.value)
    assert message.startswith("ledger: "), message
    assert words.format(*(start + i for i in range(3))) in message, message
    assert snapshot(store.owner) == before
    assert verify(store.owner.recorder).ok
    # Nothing is left locked or half written: the next append goes on.
    assert ok(runner, store.url["appender"], "append", "--json", (LINE % 1).decode()).strip() == str(start)


def test_a_row_whose_fact_does_not_decode_stops_no_append_and_verify_names_it(
        store: Store, runner: CliRunner) -> None:
    """The checks do not run the ledger's decoder: such a row gets in, and only its content is lost."""
    start, last_at = _next_row(store.owner)
    row = Row(state=f'["j1","{last_at}",{{"type":"probe_failed"}},"{"ab" * 32}"]'.encode())
    _write(store.url["appender"], [row.values(start, last_at)], [("s:workspace", start)])
    appended = ok(runner, store.url["appender"], "append", "--json", (LINE % 1).decode())
    assert appended.strip() == str(start + 1)
    result = run(runner, store.url["auditor"], "verify")
    assert result.exit_code == 3
    assert f"position {start}: stored content altered (no longer a valid event)" in result.stderr


def test_the_ledger_writes_what_the_checks_accept(store: Store, runner: CliRunner, tmp_path: Path,
                                                  pg_admin_url: str, clock: StepClock) -> None:
    """What the ledger accepts, the checks accept from an appender: odd ids, far instants, own recorded_at."""
    lines = [
        b'{"type":"probe_failed","service":"workspace","probe":"p","at":"1970-01-02T00:00:00+14:00",'
        b'"id":"q\\"uote\\\\back slash/\xc3\xa9\xf0\x9f\x98\x80"}',
        b'{"type":"probe_recovered","service":"workspace","probe":"p","at":"2999-12-31T11:59:59.999999-12:00"}',
        b'{"type":"incident_opened","service":"workspace","incident":"I-1","at":"2026-10-04T09:15:00Z",'
        b'"impact":"outage","title":"tab \\t in text","severity":9223372036854775807}',
        b'{"type":"probe_failed","service":"workspace","probe":"q","at":"2026-10-04T09:15:00Z",'
        b'"recorded_at":"2026-11-02T00:00:00+05:30"}',
        b'{"type":"probe_failed","service":"workspace","probe":"r","at":"2026-10-04T09:15:00Z",'
        b'"recorded_at":"2026-11-02T00:00:00.000001+05:30"}',
        b'{"type":"probe_failed","service":"workspace","probe":"s","at":"2026-10-04T09:15:00Z"}',
    ]
    file = tmp_path / "edge.ndjson"
    file.write_bytes(b"\n".join([*lines[3:5], lines[0], lines[5]]))  # own recorded_at first: never going back
    ok(runner, store.url["appender"], "import", "-q", str(file))
    ok(runner, store.url["appender"], "append", "--json", lines[1].decode())
    ok(runner, store.url["appender"], "contract", "register", str(example_policy_paths()[1]))
    assert verify(store.owner.recorder).ok
    # An export imported into another store carries every recorded_at (they differ row to row).
    exported = tmp_path / "export.ndjson"
    exported.write_bytes(ok(runner, store.owner_url, "events").encode())
    with scratch_database(pg_admin_url) as other_url:
        other = open_ledger(other_url, clock=clock)
        try:
            create_roles(other.recorder, store.prefix)  # the same roles, granted in that database
            url = login_url(other_url, f"{store.prefix}_appender_login")
            ok(runner, url, "import", "-q", str(exported))
            assert ok(runner, url, "events") == exported.read_text()
            assert verify(other.recorder).ok
        finally:
            other.close()


# --- projector -----------------------------------------------------------------------


def test_projector_keeps_the_view_and_cannot_touch_the_log(store: Store, runner: CliRunner) -> None:
    url = store.url["projector"]
    head = store.owner.recorder.last_position()
    assert ok(runner, url, "projections", "run", "--once").strip() == f"reporting at position {head}"
    assert f"position={head}\thead={head}\tlag=0" in ok(runner, url, "projections", "status")
    assert "rebuilt reporting" in ok(runner, url, "projections", "rebuild")
    before = snapshot(store.owner)
    refused_in_one_line(run(runner, url, "append", "--json", (LINE % 1).decode()),
                        "error: store: permission denied")
    for statement in ["INSERT INTO ledger_index VALUES ('s:x', 1)", "UPDATE stored_events SET topic = topic",
                      "DELETE FROM stored_events", "LOCK TABLE stored_events IN EXCLUSIVE MODE",
                      "SELECT ledger_append_lock()", "CREATE TABLE report_extra (x int)",
                      "CREATE OR REPLACE VIEW report_failed_months AS SELECT * FROM report_failed_months__a",
                      "ALTER TABLE report_monthly_availability__a RENAME TO x"]:
        denied(url, statement)
    assert snapshot(store.owner) == before


def test_projector_runs_no_ddl_and_names_the_command_when_the_view_is_missing(
        store: Store, runner: CliRunner) -> None:
    with psycopg.connect(store.owner_url, autocommit=True) as conn:
        conn.execute(f"DROP VIEW {', '.join(ROW_TABLES)}".encode())
        made = [*(copy_name(t, c) for t in ROW_TABLES for c in COPIES), LIVE_TABLE, TRACKING_TABLE]
        conn.execute(f"DROP TABLE {', '.join(made)}".encode())
    # `status` reads what there is and creates nothing; `run` says what to do.
    assert "position=0" in ok(runner, store.url["projector"], "projections", "status")
    refused_in_one_line(run(runner, store.url["projector"], "projections", "run", "--once"),
                        "do not exist", "run `ledger init` as the owner")
    with psycopg.connect(store.owner_url) as conn:
        assert conn.execute("SELECT to_regclass('reporting_tracking')").fetchone() == (None,)
    # The owner makes them again (`ledger init`), and grants them again (`--roles`).
    ok(runner, store.owner_url, "init")
    create_roles(store.owner.recorder, store.prefix)
    ok(runner, store.url["projector"], "projections", "status")


# --- reporting and auditor ---------------------------------------------------------


def test_reporting_reads_the_view_and_writes_nothing(store: Store, runner: CliRunner) -> None:
    ok(runner, store.url["projector"], "projections", "run", "--once")
    url = store.url["reporting"]
    with psycopg.connect(url) as conn:
        months = conn.execute("SELECT contract, month FROM report_monthly_availability").fetchall()
        tracked = conn.execute("SELECT notification_id FROM reporting_tracking "
                               "WHERE application_name = 'ledger'").fetchone()
    assert ("sla-a-2026", MONTH) in months
    assert tracked == (store.owner.recorder.last_position(),)
    ok(runner, url, "report", "--contract", "sla-a-2026", "--month", MONTH)
    ok(runner, url, "projections", "status")
    before = snapshot(store.owner)
    refused_in_one_line(run(runner, url, "append", "--json", (LINE % 1).decode()),
                        "error: store: permission denied")
    refused_in_one_line(run(runner, url, "projections", "rebuild"), "error: store: permission denied")
    for statement in ["UPDATE reporting_tracking SET notification_id = 0",
                      "INSERT INTO report_credit_entitlements__a SELECT * FROM report_credit_entitlements",
                      "INSERT INTO ledger_index VALUES ('s:x', 1)", "LOCK TABLE report_monthly_availability",
                      "DELETE FROM report_monthly_availability__a", "TRUNCATE report_monthly_availability__b",
                      "UPDATE reporting_live SET live = 'b'", "SELECT * FROM report_monthly_availability__a"]:
        denied(url, statement)
    for statement in ["DELETE FROM report_monthly_availability", "TRUNCATE report_monthly_availability",
                      "INSERT INTO report_credit_entitlements SELECT * FROM report_credit_entitlements"]:
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.Error, match=r"view|not a table"):
            conn.execute(statement.encode())  # the names readers use are views: nothing to write
    assert snapshot(store.owner) == before


def test_auditor_reports_audits_verifies_and_writes_nothing(store: Store, runner: CliRunner) -> None:
    url = store.url["auditor"]
    ok(runner, url, "report", "--contract", "sla-a-2026", "--month", MONTH)
    ok(runner, url, "audit", "--contract", "sla-a-2026", "--month", MONTH, "--position", "3")
    assert ok(runner, url, "verify").startswith("ok: ")
    assert len(ok(runner, url, "events").splitlines()) == store.owner.recorder.last_position()
    before = snapshot(store.owner)
    refused_in_one_line(run(runner, url, "append", "--json", (LINE % 1).decode()),
                        "error: store: permission denied for function ledger_append_lock")
    for statement in ["INSERT INTO ledger_index VALUES ('s:x', 1)", "DELETE FROM stored_events",
                      "SELECT * FROM report_monthly_availability",
                      "LOCK TABLE stored_events IN EXCLUSIVE MODE"]:
        denied(url, statement)
    assert snapshot(store.owner) == before


# --- a store set up before the append checks ---------------------------------------


OLD_GRANTS = """
GRANT SELECT, INSERT ON stored_events, ledger_index TO {appender};
GRANT UPDATE ON stored_events TO {appender};
GRANT USAGE, UPDATE ON SEQUENCE stored_events_notification_id_seq TO {appender};
"""


def test_a_store_set_up_before_is_brought_up_to_date_by_init(pg_url: str, clock: StepClock,
                                                             runner: CliRunner) -> None:
    prefix = "lt" + uuid.uuid4().hex[:8]
    appender, login = f"{prefix}_appender", f"{prefix}_appender_login"
    owner = open_ledger(pg_url, clock=clock)
    try:
        import_lines(owner, SAMPLE.read_bytes().splitlines())
        with psycopg.connect(pg_url, autocommit=True) as conn:
            # The schema and the grants as they were: no checks, no lock function, UPDATE granted.
            conn.execute("DROP TRIGGER ledger_append_check ON stored_events; "
                         "DROP TRIGGER ledger_append_check ON ledger_index; DROP TABLE ledger_append_tally; "
                         "DROP FUNCTION ledger_append_lock, ledger_analyze, ledger_unchecked, "
                         "ledger_row_problem, ledger_check_events, ledger_check_index, ledger_check_commit")
            conn.execute(f'CREATE ROLE "{appender}" NOLOGIN; CREATE ROLE "{login}" LOGIN IN ROLE "{appender}"'
                         .encode())
            conn.execute(OLD_GRANTS.format(appender=f'"{appender}"').encode())
        before = snapshot(owner)
        url = login_url(pg_url, login)
        # The old grants' defect: the appender could lock every reader out.
        with psycopg.connect(url) as conn:
            conn.execute("LOCK TABLE stored_events IN ACCESS EXCLUSIVE MODE")
            conn.rollback()
        # A role that may not bring the schema up to date reads as before and is told what to run.
        assert len(ok(runner, url, "events").splitlines()) == len(before) // 2
        refused_in_one_line(run(runner, url, "append", "--json", (LINE % 1).decode()),
                            "run `ledger init` as the owner")
        # The upgrade: `ledger init --roles` as the owner (here: the function it runs, with our prefix).
        ok(runner, pg_url, "init")
        ok(runner, pg_url, "init")
        create_roles(owner.recorder, prefix)
        assert snapshot(owner) == before
        denied(url, "LOCK TABLE stored_events IN ACCESS EXCLUSIVE MODE")
        denied(url, "UPDATE stored_events SET topic = topic")
        assert ok(runner, url, "append", "--json", (LINE % 1).decode()).strip() == str(len(before) // 2 + 1)
        assert verify(owner.recorder).ok
    finally:
        owner.close()
        drop_roles(pg_url, [login, *(f"{prefix}_{r}" for r in ROLES)])


# --- a reporting view an earlier version made ------------------------------------------------


def _to_earlier_layout(url: str, prefix: str) -> None:
    """The view as an earlier version left it: the report tables themselves, granted as it granted them."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(b"SELECT live FROM reporting_live").fetchone()
        assert row is not None
        live, other = row[0], next(c for c in COPIES if c != row[0])
        for t in ROW_TABLES:
            conn.execute(f"DROP VIEW {t}; DROP TABLE {copy_name(t, other)}".encode())
            conn.execute(f"ALTER TABLE {copy_name(t, live)} RENAME TO {t}".encode())
            for suffix in ("_pkey", "_by_month"):
                conn.execute(f"ALTER INDEX IF EXISTS {copy_name(t, live)}{suffix} "
                             f"RENAME TO {t}{suffix}".encode())
        conn.execute(f"DROP TABLE {LIVE_TABLE}".encode())
        tables = ", ".join(ROW_TABLES)
        roles = ", ".join(f"{prefix}_{r}" for r in ROLES)
        conn.execute(f"REVOKE ALL ON {tables} FROM {roles}; GRANT SELECT, INSERT, DELETE ON {tables} TO "
                     f"{prefix}_projector; GRANT SELECT ON {tables} TO {prefix}_reporting".encode())


def _kind(url: str, name: str) -> str | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT relkind::text FROM pg_class WHERE oid = to_regclass(%s)",
                           (name,)).fetchone()
    return None if row is None else str(row[0])


def test_a_view_of_the_earlier_layout_keeps_working_until_init_makes_its_copies(
        store: Store, runner: CliRunner) -> None:
    projector, reporting = store.url["projector"], store.url["reporting"]
    assert "rebuilt reporting" in ok(runner, projector, "projections", "rebuild")
    fresh = grants(store.owner_url, store.prefix)
    _to_earlier_layout(store.owner_url, store.prefix)
    assert _kind(store.owner_url, "report_monthly_availability") == "r"
    month = "SELECT * FROM report_monthly_availability ORDER BY contract, month"
    # Roles that may not create use the earlier tables as they are: follower, rebuild, readers.
    store.owner.append_facts([fact_from_fields("probe_failed", {
        "service": "workspace", "probe": "late", "at": "2026-10-20T10:00:00Z"})])
    ok(runner, projector, "projections", "run", "--once")
    assert "rebuilt reporting" in ok(runner, projector, "projections", "rebuild")
    with psycopg.connect(reporting) as conn:
        rows = conn.execute(month).fetchall()
    assert rows
    assert _kind(store.owner_url, "report_monthly_availability") == "r"
    # `ledger init` as the owner: each table becomes copy `a` behind a view of its name, rows and
    # grants kept (as the roles script grants them now).
    ok(runner, store.owner_url, "init")
    ok(runner, store.owner_url, "init")
    assert _kind(store.owner_url, "report_monthly_availability") == "v"
    assert _kind(store.owner_url, "report_monthly_availability__b") == "r"
    assert grants(store.owner_url, store.prefix) == fresh
    with psycopg.connect(reporting) as conn:
        assert conn.execute(month).fetchall() == rows
    assert "rebuilt reporting" in ok(runner, projector, "projections", "rebuild")
    with psycopg.connect(reporting) as conn:
        assert conn.execute(month).fetchall() == rows
    with psycopg.connect(store.owner_url) as conn:  # the rebuild filled copy b and made it live
        assert conn.execute("SELECT live FROM reporting_live").fetchone() == ("b",)
