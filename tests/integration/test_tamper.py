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
from ledger.application import Ledger, open_ledger
from ledger.events import ProbeFailed, decode_state, decode_stored, encode_state
from ledger.store import GENESIS, chain_hash
from ledger.verify import verify
from tests.conftest import StepClock
from tests.integration.test_store_contract import GOOD
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
        led.import_lines(GOOD[:4])
        led.import_lines(GOOD[4:])
        yield led
        led.close()

    def expect_failure(self, led: Ledger, url: str, runner: CliRunner, position: int, words: str,
                       last_good: int | None = None) -> None:
        result = verify(led.recorder)
        assert not result.ok
        assert result.problem is not None
        assert result.problem.startswith(f"position {position}: "), result.problem
        assert words in result.problem, result.problem
        assert result.position == (position - 1 if last_good is None else last_good)
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
        # The chain holds together again: plain verify cannot tell.
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


class TestSQLiteTamper(TamperContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return f"sqlite:///{tmp_path / 'ledger.db'}"

    @pytest.fixture
    def raw(self, tmp_path: Path) -> Tamper:
        return SQLiteTamper(str(tmp_path / "ledger.db"))


@pytest.mark.postgres
class TestPostgresTamper(TamperContract):
    @pytest.fixture
    def url(self, pg_admin_url: str) -> Iterator[str]:
        with scratch_database(pg_admin_url) as url:
            yield url

    @pytest.fixture
    def raw(self, url: str) -> Tamper:
        return PostgresTamper(url)
