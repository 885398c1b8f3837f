"""Tamper evidence: edit the database behind the ledger's back and expect `verify` to name the spot.

The edits are what a malicious DBA (or anyone with the SQLite file) would do:
raw SQL, with the append-only triggers bypassed (``session_replication_role =
replica`` on PostgreSQL, dropping them on SQLite).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from click.testing import CliRunner

from cli.main import cli
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.errors import BadInput
from ledger.events import ProbeFailed, decode_state, decode_stored, encode_state
from ledger.persistence.chain import GENESIS, chain_hash
from ledger.verify import verify
from tests.conftest import StepClock
from tests.integration.test_store_contract import GOOD
from tests.lines import import_lines
from tests.pgserver import scratch_database

N = len(GOOD)


class Tamper:
    """Raw access to one backend's tables, bypassing the triggers."""

    pos: str  # the events table's position column

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` (``%s`` placeholders, ``POS`` for the position column) and commit."""
        raise NotImplementedError

    def state(self, position: int) -> bytes:
        return bytes(self.execute("SELECT state FROM stored_events WHERE POS = %s", (position,))[0][0])

    def set_state(self, position: int, state: bytes) -> None:
        self.execute("UPDATE stored_events SET state = %s WHERE POS = %s", (state, position))

    def renumber(self, old: int, new: int) -> None:
        self.execute("UPDATE stored_events SET POS = %s WHERE POS = %s", (new, old))

    def link(self, position: int) -> str:
        """The chain link stored with the event at ``position``."""
        return decode_stored(position, self.state(position))[1]

    def insert_event(self, position: int, id_: str, at: datetime, fact: ProbeFailed,
                     link: str = "f" * 64) -> None:
        self.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state, POS) "
            "VALUES (%s, 1, 'probe_failed', %s, %s)",
            (id_, encode_state(id_, at, fact, link), position),
        )


class SQLiteTamper(Tamper):
    pos = "rowid"

    def __init__(self, path: str) -> None:
        self.path = path

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.path)
        try:
            # Anyone with the file can drop the triggers; the ledger recreates them on open.
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
                conn.execute(f'DROP TRIGGER "{name}"')
            rows = conn.execute(sql.replace("POS", self.pos).replace("%s", "?"), params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()


class PostgresTamper(Tamper):
    pos = "notification_id"

    def __init__(self, url: str) -> None:
        self.url = url

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as conn:
            # A superuser can switch triggers off for the session: what a malicious DBA would do.
            conn.execute("SET session_replication_role = replica")
            cur = conn.execute(sql.replace("POS", self.pos).encode(), params)
            return cur.fetchall() if cur.description else []


class TamperContract:
    """Each kind of edit, and the position `verify` must report; subclasses provide the backend."""

    @pytest.fixture
    def url(self) -> Iterator[str]:
        raise NotImplementedError

    @pytest.fixture
    def raw(self, url: str) -> Tamper:
        raise NotImplementedError

    @pytest.fixture
    def led(self, url: str, clock: StepClock) -> Iterator[Ledger]:
        led = open_ledger(url, clock=clock)
        # Two imports, so recorded_at differs between the halves.
        import_lines(led, GOOD[:4])
        import_lines(led, GOOD[4:])
        yield led
        led.close()

    def expect_failure(self, led: Ledger, url: str, runner: CliRunner, position: int | str, words: str,
                       last_good: int | None = None) -> None:
        result = verify(led.recorder)
        assert not result.ok
        assert result.problem is not None
        assert result.problem.startswith(f"position {position}: "), result.problem
        assert words in result.problem, result.problem
        assert result.position == (last_good if last_good is not None else int(position) - 1)
        cli_result = runner.invoke(cli, ["--store", url, "verify"])
        assert cli_result.exit_code == 3, cli_result.output
        lines = cli_result.stderr.splitlines()
        assert len(lines) == 1, cli_result.stderr
        assert lines[0].startswith(f"error: verify: position {position}: "), lines[0]
        assert cli_result.stdout == ""

    def test_honest_ledger_verifies(self, led: Ledger, url: str, runner: CliRunner) -> None:
        assert verify(led.recorder).ok
        out = runner.invoke(cli, ["--store", url, "verify"])
        assert out.exit_code == 0, out.output
        assert out.stdout.startswith(f"ok: {N} events, chain intact; head sha256:")

    @pytest.mark.parametrize("position", [1, 3, N])
    def test_state_altered(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner,
                           position: int) -> None:
        state = raw.state(position)
        # A plausible edit: the same event, one field changed (still valid JSON, same id).
        rec = decode_state(position, state)
        fact = rec.fact
        field = next(f for f in ("at", "starts_at", "reason", "month") if hasattr(fact, f))
        value = getattr(fact, field)
        changed = value + timedelta(minutes=5) if isinstance(value, datetime) else (
            "2026-09" if field == "month" else value + "!")
        raw.set_state(position, encode_state(rec.id, rec.recorded_at,
                                             msgspec.structs.replace(fact, **{field: changed}),
                                             raw.link(position)))
        self.expect_failure(led, url, runner, position, "hash does not match")

    def _first_name(self, raw: Tamper) -> tuple[str, int]:
        name, position = raw.execute("SELECT name, position FROM ledger_names ORDER BY position LIMIT 1")[0]
        return str(name), int(position)

    def test_names_row_removed(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        # The names table refuses a second use of an id for another service: without the row, it would not.
        name, position = self._first_name(raw)
        raw.execute("DELETE FROM ledger_names WHERE name = %s", (name,))
        self.expect_failure(led, url, runner, position, "names table lost", last_good=N)

    def test_names_row_altered(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        name, position = self._first_name(raw)
        raw.execute("UPDATE ledger_names SET scope = 'incident\x1fother' WHERE name = %s", (name,))
        self.expect_failure(led, url, runner, position, "names table row", last_good=N)

    def test_names_row_inserted(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        raw.execute("INSERT INTO ledger_names (name, scope, position) VALUES ('i:ghost', 'x', 2)")
        self.expect_failure(led, url, runner, 2, "inserted (it names no fact)", last_good=N)

    def test_state_garbled(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        raw.set_state(2, raw.state(2).replace(b"[", b"{", 1))
        self.expect_failure(led, url, runner, 2, "no longer a valid event")

    def test_middle_event_removed(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        raw.execute("DELETE FROM stored_events WHERE POS = 4")
        self.expect_failure(led, url, runner, 4, "event removed")

    def test_last_event_removed(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        # The log alone is a valid shorter chain; its key-index row still names it.
        raw.execute("DELETE FROM stored_events WHERE POS = %s", (N,))
        result = verify(led.recorder)
        assert not result.ok
        assert "key index" in (result.problem or "")
        assert result.position == N - 1
        cli_result = runner.invoke(cli, ["--store", url, "verify"])
        assert cli_result.exit_code == 3
        assert "key index" in cli_result.stderr

    def test_tail_cut_cleanly(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        # Cutting the tail and its index rows leaves a valid shorter chain: only a published head
        # shows it (as with any hash chain: it proves what follows from a head, not where it ends).
        head = verify(led.recorder).head
        raw.execute("DELETE FROM stored_events WHERE POS = %s", (N,))
        raw.execute("DELETE FROM ledger_index WHERE position = %s", (N,))
        assert verify(led.recorder).ok
        result = verify(led.recorder, expect=head)
        assert not result.ok
        assert "not on the chain" in (result.problem or "")

    def test_key_index_row_removed_or_forged(self, led: Ledger, raw: Tamper, url: str,
                                             runner: CliRunner) -> None:
        # Hiding a fact from contract-month reads, without touching the log or the chain.
        raw.execute("DELETE FROM ledger_index WHERE position = %s", (2,))
        result = verify(led.recorder)
        assert not result.ok
        assert "key index" in (result.problem or "")
        cli_result = runner.invoke(cli, ["--store", url, "verify"])
        assert cli_result.exit_code == 3
        assert "key index" in cli_result.stderr

    def test_event_inserted_at_the_end(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        last = list(led.records())[-1]
        fact = ProbeFailed(service="web", probe="forged", at=last.recorded_at)
        raw.insert_event(N + 1, "forged-1", last.recorded_at, fact)
        self.expect_failure(led, url, runner, N + 1, "hash does not match")

    def test_event_appended_with_a_valid_link_needs_its_index_row(self, led: Ledger, raw: Tamper) -> None:
        # A forger who computes the link writes what an honest append writes, except the index row.
        last = list(led.records())[-1]
        fact = ProbeFailed(service="web", probe="forged", at=last.recorded_at)
        link = chain_hash(raw.link(N), N + 1, last.recorded_at, "forged-1", fact)
        raw.insert_event(N + 1, "forged-1", last.recorded_at, fact, link)
        result = verify(led.recorder)
        assert not result.ok
        assert "key index" in (result.problem or "")

    def test_event_inserted_in_the_middle(self, led: Ledger, raw: Tamper, url: str,
                                          runner: CliRunner) -> None:
        recs = list(led.records())
        # Make room at position 3 by moving 3..N up one (via negatives: positions are unique).
        for p in range(N, 2, -1):
            raw.renumber(p, -(p + 1))
        for p in range(N, 2, -1):
            raw.renumber(-(p + 1), p + 1)
        fact = ProbeFailed(service="web", probe="forged", at=recs[1].fact.at)  # type: ignore[union-attr]
        raw.insert_event(3, "forged-2", recs[2].recorded_at, fact)
        self.expect_failure(led, url, runner, 3, "hash does not match")

    def test_event_inserted_below_the_first_position(self, led: Ledger, raw: Tamper, url: str,
                                                     runner: CliRunner) -> None:
        first = next(iter(led.records()))
        fact = ProbeFailed(service="web", probe="forged", at=first.recorded_at)
        raw.insert_event(0, "forged-0", first.recorded_at, fact)
        self.expect_failure(led, url, runner, 0, "event inserted", last_good=0)

    def test_two_states_swapped(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        a, b = raw.state(2), raw.state(5)
        raw.set_state(2, b)
        raw.set_state(5, a)
        self.expect_failure(led, url, runner, 2, "altered or moved")

    @pytest.mark.parametrize(("a", "b"), [(2, 4), (3, 6)])
    def test_two_rows_swapped(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner,
                              a: int, b: int) -> None:
        # Whole rows change places (ids, content and links together): each link hashes the
        # position it was written at, within one import (same recorded_at) and across two.
        raw.renumber(a, -a)
        raw.renumber(b, a)
        raw.renumber(-a, b)
        self.expect_failure(led, url, runner, a, "hash does not match")

    def test_recorded_at_altered_in_the_event(self, led: Ledger, raw: Tamper, url: str,
                                              runner: CliRunner) -> None:
        rec = decode_state(5, raw.state(5))
        raw.set_state(5, encode_state(rec.id, rec.recorded_at - timedelta(days=30), rec.fact, raw.link(5)))
        self.expect_failure(led, url, runner, 5, "recorded_at")

    def test_recorded_at_moved_later(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        # Later is still in order: the link, which hashes recorded_at, gives it away.
        rec = decode_state(5, raw.state(5))
        raw.set_state(5, encode_state(rec.id, rec.recorded_at + timedelta(hours=1), rec.fact, raw.link(5)))
        self.expect_failure(led, url, runner, 5, "hash does not match")

    def test_link_altered(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        rec = decode_state(6, raw.state(6))
        raw.set_state(6, encode_state(rec.id, rec.recorded_at, rec.fact, "f" * 64))
        self.expect_failure(led, url, runner, 6, "hash does not match")

    def test_chain_recomputed_after_an_edit(self, led: Ledger, raw: Tamper, url: str,
                                            runner: CliRunner) -> None:
        from tests.integration.test_merkle_store import lines as probe_lines

        # The tree stores nodes of 64 facts and up: with a complete one over position 3, it sees the edit.
        import_lines(led, probe_lines(0, 64))
        mid = raw.link(4)  # a head published after the first import
        published = verify(led.recorder).head
        # Alter event 3 and rewrite the chain consistently from there on.
        rec = decode_state(3, raw.state(3))
        forged = msgspec.structs.replace(rec.fact, title="nothing happened")  # type: ignore[call-arg]
        early = raw.link(2)  # one published before the edited position
        raw.set_state(3, encode_state(rec.id, rec.recorded_at, forged, raw.link(3)))
        prev = GENESIS
        for p, state in sorted(raw.execute("SELECT POS, state FROM stored_events")):
            r = decode_state(p, bytes(state))
            prev = chain_hash(prev, p, r.recorded_at, r.id, r.fact)
            raw.set_state(p, encode_state(r.id, r.recorded_at, r.fact, prev))
        # The chain holds together again, but the Merkle tree still has the old leaf.
        tree = runner.invoke(cli, ["--store", url, "verify"])
        assert tree.exit_code == 3, tree.output
        assert "Merkle tree differs from the log at positions 1 to 64" in tree.stderr
        from tests.integration.test_checkpoint import rewrite_tree

        rewrite_tree(raw)  # and rebuilt too: plain verify cannot tell.
        assert verify(led.recorder).ok
        plain = runner.invoke(cli, ["--store", url, "verify"])
        assert plain.exit_code == 0, plain.output
        # But a head published before the edit is not on the rewritten chain.
        out = runner.invoke(cli, ["--store", url, "verify", "--expect", f"sha256:{published}"])
        assert out.exit_code == 3, out.output
        lines = out.stderr.splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("error: verify: "), out.stderr
        assert out.stdout == ""
        # An older published head catches it too, even after honest appends since.
        result = verify(led.recorder, expect=mid)
        assert not result.ok
        assert "not on the chain" in (result.problem or "")
        # While a head published on the honest chain, before the edited position, still holds.
        assert verify(led.recorder, expect=f"sha256:{early}").ok

    def test_published_head_holds_after_honest_appends(self, led: Ledger) -> None:
        head = verify(led.recorder).head
        led.append(ProbeFailed(service="web", probe="later", at=led.clock()))
        assert verify(led.recorder, expect=f"sha256:{head}").ok
        assert not verify(led.recorder, expect="0" * 63 + "1").ok

    # --- --expect: a published head, checked as such ---

    @pytest.mark.parametrize("value", [
        "nothex", "sha256:", "", "f" * 63, "f" * 65, "sha256:" + "g" * 64, " sha256:" + "f" * 64,
        "sha512:" + "f" * 64, "sha256:sha256:" + "f" * 64, "0" * 64, "SHA256:" + "0" * 64,
    ])
    def test_malformed_expect_is_bad_input(self, led: Ledger, url: str, runner: CliRunner,
                                           value: str) -> None:
        out = runner.invoke(cli, ["--store", url, "verify", "--expect", value])
        assert out.exit_code == 2, out.output
        lines = out.stderr.splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith("error: --expect "), lines[0]
        assert out.stdout == ""
        with pytest.raises(BadInput, match="--expect"):
            verify(led.recorder, expect=value)

    def test_expect_in_upper_case_and_where_it_was_found(self, led: Ledger, raw: Tamper, url: str,
                                                         runner: CliRunner) -> None:
        mid = raw.link(4)  # published after the first import
        result = verify(led.recorder, expect="SHA256:" + mid.upper())
        assert result.ok
        assert result.expected_at == 4
        out = runner.invoke(cli, ["--store", url, "verify", "--expect", "SHA256:" + mid.upper()])
        assert out.exit_code == 0, out.output
        assert out.stdout.splitlines()[1] == f"expected sha256:{mid} found at position 4"
        # Not on the chain: the message names the hash once, in the house form.
        wrong = runner.invoke(cli, ["--store", url, "verify", "--expect", "SHA256:" + "F" * 64])
        assert wrong.exit_code == 3
        assert f"published head sha256:{'f' * 64} is not on the chain" in wrong.stderr
        assert "sha256:sha256:" not in wrong.stderr.lower()

    def test_an_empty_ledger_has_no_published_head(self, url: str, runner: CliRunner) -> None:
        assert runner.invoke(cli, ["--store", url, "init"]).exit_code == 0
        out = runner.invoke(cli, ["--store", url, "verify"])
        assert out.stdout == f"ok: 0 events, chain intact; head sha256:{GENESIS}\n"
        # The all-zero start of every chain proves nothing, so it is refused, not passed.
        assert runner.invoke(cli, ["--store", url, "verify", "--expect", GENESIS]).exit_code == 2
        assert runner.invoke(cli, ["--store", url, "verify", "--expect", "f" * 64]).exit_code == 3

    # --- values of the wrong type or shape: tampering at the row's position, never a crash ---

    @pytest.mark.parametrize(("sql", "position", "words"), [
        ("UPDATE stored_events SET state = NULL WHERE POS = 3", 3, "state is NULL, not a blob"),
        ("UPDATE stored_events SET topic = NULL WHERE POS = 4", 4, "topic is NULL, not text"),
    ])
    def test_null_in_a_column(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner,
                              sql: str, position: int, words: str) -> None:
        raw.execute(sql)
        self.expect_failure(led, url, runner, position, words)

    @pytest.mark.parametrize("shape", [
        "not json", "an object", "a number for recorded_at", "a number for the link",
        "an extra element", "a fact without its type", "an instant without offset inside the fact",
    ])
    def test_state_of_the_wrong_shape(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner,
                                      shape: str) -> None:
        id_, at, fact, link = msgspec.json.decode(raw.state(2))
        untyped = {k: v for k, v in fact.items() if k != "type"}
        edits = {
            "not json": b"\x00 not json",
            "an object": b'{"id": "e2"}',
            "a number for recorded_at": [id_, 5, fact, link],
            "a number for the link": [id_, at, fact, 5],
            "an extra element": [id_, at, fact, link, "more"],
            "a fact without its type": [id_, at, untyped, link],
            "an instant without offset inside the fact": [id_, at, {**fact, "at": "2026-10-04T09:45"}, link],
        }
        edit = edits[shape]
        raw.set_state(2, edit if isinstance(edit, bytes) else msgspec.json.encode(edit))
        self.expect_failure(led, url, runner, 2, "no longer a valid event")

    def test_recorded_at_without_offset(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        # A valid datetime to the decoder, but not one the ledger writes (and it cannot be ordered).
        rec = decode_state(5, raw.state(5))
        naive = rec.recorded_at.replace(tzinfo=None)
        raw.set_state(5, encode_state(rec.id, naive, rec.fact, raw.link(5)))
        self.expect_failure(led, url, runner, 5, "recorded_at has no offset")

    def test_envelope_fields_inside_the_stored_fact(self, led: Ledger, raw: Tamper, url: str,
                                                    runner: CliRunner) -> None:
        # Decodable, and the link still matches (it hashes the fact without them): content
        # the chain does not cover, which the ledger never writes.
        id_, at, fact, link = msgspec.json.decode(raw.state(2))
        raw.set_state(2, msgspec.json.encode([id_, at, {**fact, "id": "someone-else"}, link]))
        self.expect_failure(led, url, runner, 2, "envelope fields inside the fact")

    @pytest.mark.parametrize("position", [-5, 0])
    def test_row_below_the_first_position_with_a_state_not_its_own(self, led: Ledger, raw: Tamper, url: str,
                                                                  runner: CliRunner, position: int) -> None:
        # Another row's state under a new id: SQLite used to take it for the earlier format.
        raw.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state, POS) "
            "VALUES ('forged', 1, 'probe_failed', %s, %s)", (raw.state(1), position),
        )
        self.expect_failure(led, url, runner, position, "event inserted", last_good=0)

    @pytest.mark.parametrize(("position", "last_good"), [(N + 5, N), (N + 1, N), (0, 0), (-1, 0)])
    def test_key_index_row_pointing_nowhere(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner,
                                            position: int, last_good: int) -> None:
        raw.execute("INSERT INTO ledger_index (key, position) VALUES ('s:web', %s)", (position,))
        self.expect_failure(led, url, runner, position, "names no event", last_good=last_good)

    def test_key_index_row_under_another_key(self, led: Ledger, raw: Tamper, url: str,
                                             runner: CliRunner) -> None:
        raw.execute("UPDATE ledger_index SET key = 's:other' WHERE position = 3 AND substr(key, 1, 2) = 's:'")
        self.expect_failure(led, url, runner, 3, "key index row altered (filed under 's:other'")

    def test_key_index_row_repeated_under_another_key(self, led: Ledger, raw: Tamper, url: str,
                                                      runner: CliRunner) -> None:
        # Reads of s:other would now meet event 3: it is in their service's history.
        raw.execute("INSERT INTO ledger_index (key, position) VALUES ('zz:other', 3)")
        self.expect_failure(led, url, runner, 3, "a second key index row 'zz:other'")

    def test_key_index_row_removed_names_its_position(self, led: Ledger, raw: Tamper, url: str,
                                                      runner: CliRunner) -> None:
        raw.execute("DELETE FROM ledger_index WHERE position = 5")
        self.expect_failure(led, url, runner, 5, "the event has no key index row")

    def test_the_first_problem_is_reported_whichever_table_it_is_in(self, led: Ledger, raw: Tamper, url: str,
                                                                    runner: CliRunner) -> None:
        raw.execute("DELETE FROM ledger_index WHERE position = 6")
        raw.set_state(4, b"garbled")
        self.expect_failure(led, url, runner, 4, "no longer a valid event")


class TestSQLiteTamper(TamperContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'ledger.db'}"

    @pytest.fixture
    def raw(self, tmp_path: Path) -> Tamper:
        return SQLiteTamper(str(tmp_path / "ledger.db"))

    # SQLite keeps each value's own type whatever the column's: any may turn up anywhere.

    def test_every_state_cast_to_text(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        raw.execute("UPDATE stored_events SET state = CAST(state AS TEXT)")
        self.expect_failure(led, url, runner, 1, "state is text, not a blob")

    @pytest.mark.parametrize(("sql", "words"), [
        ("UPDATE stored_events SET state = 5 WHERE rowid = 2", "state is an integer, not a blob"),
        ("UPDATE stored_events SET state = 2.5 WHERE rowid = 2", "state is a real number, not a blob"),
        ("UPDATE stored_events SET originator_id = CAST(originator_id AS BLOB) WHERE rowid = 2",
         "originator_id is a blob, not text"),
        ("UPDATE stored_events SET originator_id = NULL WHERE rowid = 2", "originator_id is NULL, not text"),
        ("UPDATE stored_events SET topic = X'00' WHERE rowid = 2", "topic is a blob, not text"),
    ])
    def test_value_of_another_type_in_the_log(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner,
                                              sql: str, words: str) -> None:
        raw.execute(sql)
        self.expect_failure(led, url, runner, 2, words)

    @pytest.mark.parametrize(("value", "shown"), [("abc", "'abc'"), (2.5, "2.5"), (b"\x02", "b'\\x02'")])
    def test_key_index_position_of_another_type(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner,
                                                value: object, shown: str) -> None:
        raw.execute("INSERT INTO ledger_index (key, position) VALUES ('s:web', %s)", (value,))
        last_good = 2 if value == 2.5 else N  # met where it sorts: among the numbers, or after them
        self.expect_failure(led, url, runner, shown, "altered (its position is", last_good=last_good)

    def test_key_index_key_of_another_type(self, led: Ledger, raw: Tamper, url: str,
                                           runner: CliRunner) -> None:
        raw.execute("UPDATE ledger_index SET key = CAST(key AS BLOB) WHERE position = 3")
        self.expect_failure(led, url, runner, 3, "key index row altered (filed under b'")

    def test_key_index_position_null(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        # The table rebuilt without its constraints: anyone with the file can.
        raw.execute("ALTER TABLE ledger_index RENAME TO old_index")
        raw.execute("CREATE TABLE ledger_index (key TEXT, position INTEGER)")
        raw.execute("INSERT INTO ledger_index SELECT key, position FROM old_index")
        raw.execute("INSERT INTO ledger_index VALUES ('s:web', NULL)")
        self.expect_failure(led, url, runner, "NULL", "altered (its position is NULL)", last_good=0)


@pytest.mark.postgres
class TestPostgresTamper(TamperContract):
    @pytest.fixture
    def url(self, pg_admin_url: str) -> Iterator[str]:
        with scratch_database(pg_admin_url) as url:
            yield url

    @pytest.fixture
    def raw(self, url: str) -> Tamper:
        return PostgresTamper(url)

    # PostgreSQL keeps a column's type: a DBA changes it for every row, or drops a constraint.

    def test_state_column_made_text(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        raw.execute("ALTER TABLE stored_events ALTER COLUMN state TYPE text "
                    "USING convert_from(state, 'UTF8')")
        self.expect_failure(led, url, runner, 1, "state is text, not a blob")

    def test_position_column_made_text(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        raw.execute("ALTER TABLE stored_events ALTER COLUMN notification_id DROP DEFAULT")
        raw.execute("ALTER TABLE stored_events ALTER COLUMN notification_id TYPE text")
        self.expect_failure(led, url, runner, "'1'", "position altered (it is text)", last_good=0)

    def test_event_without_a_position(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        raw.execute("ALTER TABLE stored_events ALTER COLUMN notification_id DROP NOT NULL")
        raw.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state, notification_id) "
            "VALUES ('forged', 1, 'probe_failed', %s, NULL)", (raw.state(1),),
        )
        self.expect_failure(led, url, runner, "NULL", "event inserted without a position (id 'forged')",
                            last_good=0)

    def test_duplicate_position(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        raw.execute("DROP INDEX stored_events_notification_id_idx")
        last = list(led.records())[-1]
        fact = ProbeFailed(service="web", probe="forged", at=last.recorded_at)
        raw.insert_event(3, "forged-3", last.recorded_at, fact)
        # Whichever of the two rows at 3 comes first, position 3 is named.
        result = verify(led.recorder)
        assert not result.ok
        assert (result.problem or "").startswith("position 3: "), result.problem
        assert result.position == 2
        assert runner.invoke(cli, ["--store", url, "verify"]).exit_code == 3

    def test_key_index_position_null(self, led: Ledger, raw: Tamper, url: str, runner: CliRunner) -> None:
        raw.execute("ALTER TABLE ledger_index DROP CONSTRAINT ledger_index_pkey")
        raw.execute("ALTER TABLE ledger_index ALTER COLUMN position DROP NOT NULL")
        raw.execute("INSERT INTO ledger_index (key, position) VALUES ('s:web', NULL)")
        self.expect_failure(led, url, runner, "NULL", "altered (its position is NULL)", last_good=0)
