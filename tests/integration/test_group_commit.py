"""Group commit (``cli.group_commit``): requests written in one transaction, each answered as if alone."""

from __future__ import annotations

import json

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.group_commit import Job, Writer, _disjoint, write_group
from ledger.application import Ledger
from ledger.errors import BadInput
from ledger.ingest.lines import prepare_lines
from ledger.persistence.port import AppendResult, Conflict
from tests.lines import import_lines


def probe(id_: str, where: str = "paris") -> bytes:
    return json.dumps({"type": "probe_failed", "service": "workspace", "probe": where,
                       "at": "2026-10-04T09:15:00Z", "id": id_}).encode()


def incident(name: str, service: str) -> bytes:
    return json.dumps({"type": "incident_opened", "service": service, "incident": name,
                       "at": "2026-10-04T09:00:00Z", "impact": "outage", "id": f"{name}-{service}"}).encode()


def job(*lines: bytes) -> Job:
    return Job(list(prepare_lines(lines)), "line")


def outcome(j: Job) -> AppendResult | str:
    if j.error is not None:
        return f"{type(j.error).__name__}: {j.error}"
    assert j.result is not None
    return j.result


def test_each_request_gets_its_own_summary(ledger: Ledger) -> None:
    import_lines(ledger, [probe("old")])  # position 1
    jobs = [job(probe("a1"), probe("a2")), job(probe("a2"), probe("old"), probe("b1")),
            job(), job(probe("a1", "london")), job(probe("c1"))]
    write_group(ledger, jobs)
    assert [outcome(j) for j in jobs] == [
        AppendResult(2, 0, 2, 3),
        AppendResult(1, 2, 4, 4),  # a2 came with the request before it, old was there
        AppendResult(0, 0, None, None),
        AppendResult(0, 0, None, None, [Conflict(1, "a1", 2)]),  # a1, other content: not kept
        AppendResult(1, 0, 5, 5),
    ]
    assert [r.id for r in ledger.records()] == ["old", "a1", "a2", "b1", "c1"]


def test_a_bad_request_fails_alone(ledger: Ledger) -> None:
    # The third job names incident i1 for another service: the group's transaction fails on it,
    # and each job is written again alone, in order.
    jobs = [job(probe("x1")), job(incident("i1", "api")), job(incident("i1", "web"), probe("x2")),
            job(probe("x3"))]
    write_group(ledger, jobs)
    assert isinstance(jobs[2].error, BadInput)
    assert "line 1" in str(jobs[2].error)
    assert [outcome(j) for j in (jobs[0], jobs[1], jobs[3])] == [
        AppendResult(1, 0, 1, 1), AppendResult(1, 0, 2, 2), AppendResult(1, 0, 3, 3)]
    assert [r.id for r in ledger.records()] == ["x1", "i1-api", "x3"]  # nothing of the bad one


def test_the_writer_answers_every_queued_request(ledger: Ledger) -> None:
    """Requests submitted at once are written in groups and each gets its own answer."""
    results: dict[int, AppendResult] = {}

    async def main() -> None:
        writer = Writer()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(writer.run, ledger)

            async def post(n: int) -> None:
                results[n] = await writer.submit(job(probe(f"w{n}"), probe(f"w{n + 1}")))

            async with anyio.create_task_group() as posts:
                for n in range(40):
                    posts.start_soon(post, n)
            tasks.cancel_scope.cancel()

    anyio.run(main)
    assert sum(r.appended for r in results.values()) == 41  # w0..w40
    assert sum(r.skipped for r in results.values()) == 39
    positions = sorted(p for r in results.values() if r.first_position is not None
                       for p in range(r.first_position, (r.last_position or 0) + 1))
    recorded = {r.position: r.id for r in ledger.records()}
    assert positions == sorted(recorded) == list(range(1, 42))


LINES = st.one_of(
    st.builds(probe, st.sampled_from(["p1", "p2", "p3", "p4"]), st.sampled_from(["paris", "london"])),
    st.builds(incident, st.sampled_from(["i1", "i2"]), st.sampled_from(["api", "web"])),
)
GROUPS = st.lists(st.lists(st.lists(LINES, max_size=4), min_size=1, max_size=5), min_size=1, max_size=3)


@pytest.mark.postgres
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=GROUPS)
def test_a_group_is_the_requests_one_after_another(pair: tuple[Ledger, Ledger],
                                                   groups: list[list[list[bytes]]]) -> None:
    """Grouped on the store under test, alone one by one on SQLite: the same answers, the same log."""
    grouped, alone = pair
    for group in groups:
        jobs = [job(*lines) for lines in group]
        write_group(grouped, jobs)
        for lines, j in zip(group, jobs, strict=True):
            one = job(*lines)
            one.write(alone)
            assert outcome(j) == outcome(one)
    assert [(r.position, r.id, r.fact) for r in grouped.records()] == [
        (r.position, r.id, r.fact) for r in alone.records()]


def owned(n: int, lines: list[bytes]) -> list[bytes]:
    """``lines`` with every probe id made request ``n``'s own: no id in two requests of a group."""
    return [line.replace(b'"id": "p', f'"id": "r{n}-p'.encode()) for line in lines]


PROBES = st.builds(probe, st.sampled_from(["p1", "p2", "p3"]), st.sampled_from(["paris", "london"]))
DISJOINT = st.lists(st.lists(st.lists(PROBES, max_size=4), min_size=2, max_size=6), min_size=1, max_size=3)


@pytest.mark.postgres
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=DISJOINT, again=st.booleans())
def test_a_disjoint_group_is_written_as_one_batch(pair: tuple[Ledger, Ledger],
                                                  groups: list[list[list[bytes]]], again: bool) -> None:
    """Requests sharing no id are one batch; each still gets what it would have got alone, in order."""
    grouped, alone = pair
    for g, group in enumerate(groups):
        # Ids repeated inside a request (a repeat or a conflict), and across groups when `again`.
        requests = [owned(0 if again else g * 10 + n, lines) if n == 0 else owned(g * 10 + n, lines)
                    for n, lines in enumerate(group)]
        jobs = [job(*lines) for lines in requests]
        assert _disjoint(jobs)  # the one-batch path
        write_group(grouped, jobs)
        for lines, j in zip(requests, jobs, strict=True):
            one = job(*lines)
            one.write(alone)
            assert outcome(j) == outcome(one)
    assert [(r.position, r.id, r.fact) for r in grouped.records()] == [
        (r.position, r.id, r.fact) for r in alone.records()]
