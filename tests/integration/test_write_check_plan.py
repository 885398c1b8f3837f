"""The duplicate check of an append is planned with its ids in hand, never from a plan cached on a small log.

PostgreSQL only: a prepared statement's generic plan is that server's behaviour (SQLite
checks a batch by inserting it under a savepoint). What the check answers is the same on
both stores and is tested there (``test_group_commit``, ``test_ingest``, ``test_server``).
"""

from __future__ import annotations

from ledger.bootstrap import open_ledger
from ledger.persistence.postgres.recorder import PostgresLedgerRecorder


def test_duplicate_check_is_never_a_prepared_statement(pg_url: str) -> None:
    """A server's writer checks once per transaction on one connection for days.

    psycopg prepares a statement run five times on a connection; PostgreSQL then keeps
    a generic plan, chosen while the log was small: a sequential scan splitting the ids
    again for every row, which cost 20 to 370 ms per check at 20,000 facts.
    """
    ledger = open_ledger(pg_url)
    try:
        recorder = ledger.recorder
        assert isinstance(recorder, PostgresLedgerRecorder)
        with recorder.write_session() as session:
            for n in range(12):  # both forms: ids joined in one text, and an array (an id with \x1f)
                assert session.recorded([f"a{n}", "b"]) == {}
                assert session.recorded([f"a{n}\x1f", "b"]) == {}
            session.curs.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [row["statement"] for row in session.curs.fetchall()]
        assert not [s for s in prepared if "originator_id = ANY" in s], prepared
    finally:
        ledger.close()
