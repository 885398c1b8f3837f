"""A follower restarted on a ledger it did not fold: it reads the groups the new facts touch, nothing else.

Both stores. The view is rebuilt to the head; one more fact arrives about one service; a
fresh follower (as after a restart) catches up. It must not fold the ledger from its
start: what it reads is every contract's versions, then the touched service group's facts
through the key index, and its tables still equal ``ledger report``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from cli.demo import demo_facts
from ledger.application import Ledger
from ledger.events import ContractAmended, ContractRegistered, ProbeFailed, Recorded
from ledger.persistence.keys import probe_prefix
from ledger.persistence.port import LedgerRecorder
from projections.tracked import open_view
from projections.tracked.projection import ReportingProjection
from tests.integration.test_reporting import MONTH, assert_tables_match_reports, ledger_cli, register


def _counting(reader: Any, read: set[int]) -> None:
    """Record every position ``reader`` hands out, whatever the read."""

    def wrap(name: str, position: Callable[[Any], int]) -> None:
        inner = getattr(reader, name)

        def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:
            for row in inner(*args, **kwargs):
                read.add(position(row))
                yield row

        setattr(reader, name, counted)

    wrap("read_keyed_states", lambda row: row[0])
    wrap("read_position_states", lambda row: row[0])
    wrap("read_records", lambda rec: rec.position)
    wrap("read_key_prefix", lambda rec: rec.position)


def _service(rec: Recorded) -> str | None:
    return getattr(rec.fact, "service", None)


def test_a_restarted_follower_reads_only_the_touched_group(
    ledger: Ledger, store_url: str, runner: CliRunner
) -> None:
    contracts = register(ledger)
    ledger.append_facts(demo_facts(MONTH))
    ledger_cli(runner, store_url, "projections", "rebuild")
    records = list(ledger.records())
    services = {v.policy.contract.service: cid for cid, vs in ledger.contracts().items() for v in vs}
    assert len(services) == len(contracts) >= 4  # one service per contract: one group each
    touched = sorted(services)[0]
    last = max(r.fact.at for r in records if isinstance(r.fact, ProbeFailed) and r.fact.service == touched)
    ledger.append(ProbeFailed(service=touched, probe="eu-west", at=last + timedelta(minutes=1),
                              id="restart-probe"))
    head = ledger.recorder.last_position()

    projection = ReportingProjection(open_view(ledger.recorder))
    read: set[int] = set()
    _counting(projection.reader, read)
    assert projection.catch_up() == head
    others = {r.position for r in records if _service(r) not in (None, touched)}
    assert others, "the other services have facts"
    assert not read & others, "a fact of an untouched service was read"
    assert projection.state.groups.loads == 1  # the touched group only
    assert not projection.state.whole
    versions = {r.position for r in records if isinstance(r.fact, ContractRegistered | ContractAmended)}
    # What it read: the versions, the touched service's facts (and what refers to them), the new fact.
    assert read - versions - {head}, "the touched service's facts were read"
    assert assert_tables_match_reports(store_url, runner, rebuilt=False) > 0


def test_many_prefixes_in_one_read_equal_one_read_each(ledger: Ledger) -> None:
    # `read_key_prefixes` (the follower's tickets of many contracts at once) against `read_key_prefix`.
    register(ledger)
    ledger.append_facts(demo_facts(MONTH))
    head = ledger.recorder.last_position()
    prefixes = ["s:", "k:", "u:", "i:", "no-such-key:", "s:" + "x" * 40]
    for chosen in (prefixes, prefixes[:1], [], prefixes[2:4]):
        one_by_one = sorted({r.position for p in chosen for r in ledger.recorder.read_key_prefix(p, head)})
        together = [r.position for r in ledger.recorder.read_key_prefixes(chosen, head)]
        assert together == one_by_one
        assert together == sorted(together)
    assert [r.position for r in ledger.recorder.read_key_prefixes(["s:"], head - 5)] == sorted(
        r.position for r in ledger.recorder.read_key_prefix("s:", head - 5))


def test_many_ranges_and_edges_in_one_read_equal_one_read_each(ledger: Ledger) -> None:
    # `read_key_ranges_states` and `edge_keys` (a window's probe days of many services at once)
    # against `read_key_range_states` and `edge_key`, one range at a time.
    register(ledger)
    ledger.append_facts(demo_facts(MONTH))
    head = ledger.recorder.last_position()
    ranges = [("p:", "p;"), ("s:", "s:m"), ("k:", "k:\U0010ffff"), ("zz:", "zz;"),
              ("p:workspace/", "p:workspace0"), ("s:b", "s:a")]
    for chosen in (ranges, ranges[:1], [], ranges[3:5]):
        for upto in (head, head - 7):
            one_by_one = {p: s for lo, hi in chosen
                          for p, s in ledger.recorder.read_key_range_states(lo, hi, upto)}
            together = list(ledger.recorder.read_key_ranges_states(chosen, upto))
            assert together == sorted(one_by_one.items())
            for last in (False, True):
                assert ledger.recorder.edge_keys(chosen, upto, last=last) == [
                    ledger.recorder.edge_key(lo, hi, upto, last=last) for lo, hi in chosen]
    assert any(ledger.recorder.edge_keys(ranges, head))
    # Every probe of every service with its first day, in one statement on PostgreSQL.
    prefixes = [probe_prefix(s) for s in ("workspace", "biings", "no-such-service", "optimy-ca")]
    for upto in (head, head // 2, 1):
        got = ledger.recorder.first_keys_by_name(prefixes, upto, 10)
        assert got == LedgerRecorder.first_keys_by_name(ledger.recorder, prefixes, upto, 10)
        expected = []
        for prefix in prefixes:
            keys = _keys_under(ledger, prefix, upto)
            names = {k[:-10] for k in keys}  # <prefix><name>@
            expected.append(sorted(min(k for k in keys if k.startswith(name)) for name in names))
        assert got == expected
    assert sum(map(len, ledger.recorder.first_keys_by_name(prefixes, head, 10))) >= 5


def test_parts_in_one_read_equal_each_part_read_alone(ledger: Ledger) -> None:
    # `read_key_parts_states` (a rebuild's group in two statements on PostgreSQL) against the keyed
    # and range reads it stands for, part by part: keys alone, ranges alone, both, empty parts, a key
    # in two parts, a key and a range over the same facts, bounds below the head.
    register(ledger)
    ledger.append_facts(demo_facts(MONTH))
    head = ledger.recorder.last_position()
    services = sorted({k[2:] for k in _keys_under(ledger, "s:", head)})
    assert services
    keys = [f"s:{services[0]}", "k:no-such-contract", f"s:{services[-1]}"]
    ranges = [(probe_prefix(s), probe_prefix(s)[:-1] + "0") for s in services[:2]]
    ranges += [("u:", "u;"), ("zz:", "zz;")]
    parts: list[tuple[list[str], list[tuple[str, str]]]] = [
        (keys, ranges[:1]), ([], ranges), (keys[:1], []), ([], []), (["t:no-such-ticket"], []),
        (keys[1:], ranges[2:]), (["s:" + services[0]], [("s:", "s;")])]
    for chosen in (parts, parts[:1], [], parts[3:5], parts[2:3], [parts[1], parts[1]]):
        for upto in (head, head - 7, 1):
            got = ledger.recorder.read_key_parts_states(chosen, upto)
            expected: list[tuple[int, int, bytes]] = []
            for n, (part_keys, part_ranges) in enumerate(chosen):
                rows = dict(ledger.recorder.read_keyed_states(part_keys, upto)) if part_keys else {}
                for lo, hi in part_ranges:
                    rows.update(ledger.recorder.read_key_range_states(lo, hi, upto))
                expected.extend((n, p, rows[p]) for p in sorted(rows))
            assert [(n, p, bytes(s)) for n, p, s in got] == expected
            assert got == LedgerRecorder.read_key_parts_states(ledger.recorder, chosen, upto)
    assert len(ledger.recorder.read_key_parts_states(parts, head)) > 10


def test_serving_a_rebuild_reads_the_same(ledger: Ledger) -> None:
    # A rebuild worker's recorder (`serve_rebuild`): the same rows from every read it makes; on
    # PostgreSQL its reads run on one session it keeps, which keeps one generic plan a statement.
    register(ledger)
    ledger.append_facts(demo_facts(MONTH))
    head = ledger.recorder.last_position()
    services = sorted({k[2:] for k in _keys_under(ledger, "s:", head)})
    parts: list[tuple[list[str], list[tuple[str, str]]]] = [
        ([f"s:{s}" for s in services], [(probe_prefix(s), probe_prefix(s)[:-1] + "0") for s in services]),
        ([], [("u:", "u;")])]
    uptos = [upto for upto in (head, head - 7) for _ in range(7)]  # past psycopg's five runs: prepared
    before = [ledger.recorder.read_key_parts_states(parts, upto) for upto in uptos]
    positions = sorted({p for _, p, _ in before[0]})
    read_before = list(ledger.recorder.read_position_states(positions))
    ledger.recorder.serve_rebuild()
    after = [ledger.recorder.read_key_parts_states(parts, upto) for upto in uptos]
    assert after == before
    assert len(before[0]) > 10
    assert list(ledger.recorder.read_position_states(positions)) == read_before
    from ledger.persistence.postgres.recorder import PostgresLedgerRecorder

    if isinstance(ledger.recorder, PostgresLedgerRecorder):
        # One session kept for the reads (the pool handed its sessions out in turn), planning once.
        for _ in range(3):
            rows = ledger.recorder._fetch("SELECT current_setting('plan_cache_mode')", ())
            assert rows == [("force_generic_plan",)]
        pids = {ledger.recorder._fetch("SELECT pg_backend_pid()", ())[0][0] for _ in range(5)}
        assert len(pids) == 1
        with pytest.raises(psycopg.errors.DivisionByZero):  # given back to the pool, which resets it
            ledger.recorder._fetch("SELECT 1 / 0", ())
        setting = ledger.recorder._fetch("SELECT current_setting('plan_cache_mode')", ())
        assert setting == [("force_generic_plan",)]
        assert list(ledger.recorder.read_position_states(positions)) == read_before


def _keys_under(ledger: Ledger, prefix: str, upto: int) -> list[str]:
    from ledger.persistence.keys import index_keys

    return sorted({k for r in ledger.records() if r.position <= upto for k in index_keys(r.fact)
                   if k.startswith(prefix)})
