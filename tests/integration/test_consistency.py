"""Issue 14: what a new fact must agree with in what the ledger holds, on every path in, on both stores.

Names that would name two things, contract facts that would not make the next
version, ``recorded_at`` the ledger did not give, ids recorded with other content:
``ledger append`` (fields and ``--json``), ``import`` in this process and through
the packing child (``parallel_from=1`` forces it), ``contract register``/``amend``.
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest
from click.testing import CliRunner

import ledger.persistence.append as append_path  # import_file takes append_packed from there
from ledger.application import Ledger
from ledger.bootstrap import open_ledger
from ledger.errors import BadInput, NotFound, StoreError
from ledger.events import ContractAmended, ContractRegistered, IncidentOpened
from ledger.persistence.port import AppendResult, Conflict, IdConflict
from ledger.policy_check import load_policy
from ledger.verify import verify
from tests.cli.test_cli import events, one_line_error, run
from tests.conftest import StepClock
from tests.integration.test_store_contract import snapshot
from tests.lines import import_lines

FILLER = b'{"type":"probe_failed","service":"svc-%d","probe":"p","at":"2026-10-04T09:%02d:00Z","id":"e%d"}'


def filler(n: int, start: int = 0) -> list[bytes]:
    return [FILLER % (i % 7, i % 60, i) for i in range(start, start + n)]


def body(rows: list[bytes]) -> bytes:
    return b"\n".join(rows) + b"\n"


def incident(name: str, service: str, id_: str | None = None, minute: int = 0) -> bytes:
    obj = {"type": "incident_opened", "service": service, "incident": name,
           "at": f"2026-10-05T10:{minute:02d}:00Z", "impact": "outage"}
    if id_ is not None:
        obj["id"] = id_
    return json.dumps(obj).encode()


def window(name: str, service: str) -> bytes:
    return json.dumps({"type": "maintenance_announced", "service": service, "maintenance": name,
                       "announced_at": "2026-10-01T00:00:00Z", "starts_at": "2026-10-10T01:00:00Z",
                       "ends_at": "2026-10-10T02:00:00Z"}).encode()


def declaration(name: str, service: str) -> bytes:
    return json.dumps({"type": "force_majeure_declared", "service": service, "declaration": name,
                       "starts_at": "2026-10-12T00:00:00Z", "ends_at": "2026-10-12T01:00:00Z",
                       "reason": "storm"}).encode()


def exclusion(name: str, service: str, contract: str | None = None, hour: int = 0) -> bytes:
    obj = {"type": "exclusion_declared", "service": service, "exclusion": name, "category": "third_party",
           "starts_at": f"2026-10-12T{hour:02d}:00:00Z", "ends_at": f"2026-10-12T{hour + 1:02d}:00:00Z",
           "reason": "CDN"}
    if contract is not None:
        obj["contract"] = contract
    return json.dumps(obj).encode()


POLICY = """
[contract]
id = "{cid}"
customer = "ACME SA"
service = "{service}"
timezone = "{timezone}"
currency = "EUR"
monthly_fee = "1200.00"
{extra}

[availability]
target = "{target}"
"""


def policy_text(cid: str = "acme", *, service: str = "platform", timezone: str = "Europe/Paris",
                target: str = "99.9", effective_from: str | None = None) -> str:
    extra = "" if effective_from is None else f'effective_from = "{effective_from}"'
    return POLICY.format(cid=cid, service=service, timezone=timezone, target=target, extra=extra)


def contract_line(kind: str, **terms: Any) -> bytes:
    policy = load_policy(policy_text(**terms).encode())
    fact = (ContractRegistered if kind == "registered" else ContractAmended)(policy=policy)
    return msgspec.json.encode(fact)




class Passes:
    """Which ways ``import_file`` took: the packed one (and whether it gave way), the checking one."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.packed: list[str] = []
        real = append_path.append_packed

        def spy(*args: Any, **kwargs: Any) -> AppendResult:
            try:
                result = real(*args, **kwargs)
            except IdConflict:
                self.packed.append("gave way")
                raise
            self.packed.append("kept")
            return result

        monkeypatch.setattr(append_path, "append_packed", spy)


@pytest.fixture
def passes(monkeypatch: pytest.MonkeyPatch) -> Passes:
    return Passes(monkeypatch)


def both_ways(pair: tuple[Ledger, Ledger], rows: list[bytes]) -> tuple[str, str]:
    """Import ``rows`` through the packing child into one store and in-process into the other: the errors."""
    a, b = pair
    errors = []
    for attempt in (lambda: a.import_file(io.BytesIO(body(rows)), parallel_from=1),
                    lambda: import_lines(b, rows)):
        with pytest.raises(BadInput) as caught:
            attempt()
        errors.append(str(caught.value))
    return errors[0], errors[1]


# --- 1. one name, one thing ----------------------------------------------------------


NAME_CLASHES = [
    # (first use, reuse, the message's field and what the first use names)
    (incident("INC-1", "web"), incident("INC-1", "api"),
     "field `incident`: INC-1 already names an incident of service web"),
    (window("mw-1", "web"), window("mw-1", "api"),
     "field `maintenance`: mw-1 already names a maintenance window of service web"),
    (declaration("fm-1", "web"), declaration("fm-1", "api"),
     "field `declaration`: fm-1 already names a force-majeure declaration of service web"),
    (exclusion("ex-1", "web", "c1"), exclusion("ex-1", "web", "c2"),
     "field `exclusion`: ex-1 already names an exclusion of service web for contract c1"),
    (exclusion("ex-1", "web", "c1"), exclusion("ex-1", "web"),
     "field `exclusion`: ex-1 already names an exclusion of service web for contract c1"),
    # Declarations and exclusions share one namespace: exclusion_revoked.ref names either.
    (declaration("x-1", "web"), exclusion("x-1", "web"),
     "field `exclusion`: x-1 already names a force-majeure declaration of service web"),
    (exclusion("x-1", "web"), declaration("x-1", "api"),
     "field `declaration`: x-1 already names an exclusion of service web"),
]


@pytest.mark.parametrize(("first", "reuse", "message"), NAME_CLASHES)
def test_a_name_reused_for_another_scope_is_refused(ledger: Ledger, first: bytes, reuse: bytes,
                                                    message: str) -> None:
    # Earlier in the same file: the position the first use was to get.
    with pytest.raises(BadInput) as caught:
        import_lines(ledger, [*filler(2), first, *filler(1, start=10), reuse])
    assert str(caught.value) == f"line 5: {message} (position 3)"
    assert ledger.recorder.last_position() == 0
    # In the store.
    import_lines(ledger, [*filler(2), first])
    before = snapshot(ledger)
    with pytest.raises(BadInput) as caught:
        import_lines(ledger, [*filler(3, start=10), reuse])
    assert str(caught.value) == f"line 4: {message} (position 3)"
    assert snapshot(ledger) == before


def test_reusing_a_name_for_the_same_scope_stays_accepted(ledger: Ledger) -> None:
    # A repeated opening, a re-announcement, the same exclusion declared again.
    lines = [incident("INC-1", "web", "o1"), incident("INC-1", "web", "o2", minute=30),
             window("mw-1", "web"), window("mw-1", "web").replace(b"2026-10-01T00", b"2026-10-02T00"),
             exclusion("ex-1", "web", "c1"), exclusion("ex-1", "web", "c1", hour=5)]
    assert import_lines(ledger, lines[:3]).appended == 3
    assert import_lines(ledger, lines[3:]).appended == 3
    again = msgspec.json.decode(incident("INC-1", "web", "o3", minute=45), type=IncidentOpened)
    assert ledger.append(again).appended == 1


def test_a_name_clash_through_append_names_the_field(ledger: Ledger) -> None:
    import_lines(ledger, [incident("INC-1", "web")])
    with pytest.raises(BadInput, match=r"^field `incident`: INC-1 already names an incident of service web "
                                       r"\(position 1\)$"):
        ledger.append(msgspec.json.decode(incident("INC-1", "api"), type=IncidentOpened))
    assert ledger.recorder.last_position() == 1


def test_a_name_clash_through_the_command_line(runner: CliRunner, store_url: str, tmp_path: Path) -> None:
    assert run(runner, store_url, "append", "incident_opened", "--service", "web", "--incident", "INC-1",
               "--at", "2026-10-04T09:20:00Z", "--impact", "outage").exit_code == 0
    line = one_line_error(run(runner, store_url, "append", "incident_opened", "--service", "api",
                              "--incident", "INC-1", "--at", "2026-10-04T09:20:00Z", "--impact", "outage"))
    assert line == "error: field `incident`: INC-1 already names an incident of service web (position 1)"
    line = one_line_error(run(runner, store_url, "append", "--json", incident("INC-1", "api").decode()))
    assert line.startswith("error: field `incident`: INC-1 already names")
    path = tmp_path / "clash.ndjson"
    path.write_bytes(body([*filler(2), incident("INC-1", "api")]))
    result = run(runner, store_url, "import", str(path))
    assert result.exit_code == 2
    assert one_line_error(result) == ("error: line 3: field `incident`: INC-1 already names an incident "
                                      "of service web (position 1)")
    assert len(events(runner, store_url)) == 1


def test_a_recorded_opening_repeated_in_a_file_is_no_clash(ledger: Ledger) -> None:
    # The checks concern the facts appended: a repeat of a recorded fact gives no name again.
    import_lines(ledger, [incident("INC-1", "web", "o1")])
    result = import_lines(ledger, [incident("INC-1", "web", "o1"), incident("INC-2", "api", "o2")])
    assert (result.appended, result.skipped) == (1, 1)


@pytest.mark.parametrize("where", ["store", "file"])
def test_a_name_clash_in_a_large_file_through_the_packing_child(
    pair: tuple[Ledger, Ledger], passes: Passes, where: str,
) -> None:
    # The child sends each batch's names; the writer checks them against the store (and
    # the batches before) before inserting, and gives way to the checking pass, which
    # refuses the line as the in-process import does. Nothing is kept.
    rows = filler(25000, start=100)
    first, reuse = incident("INC-9", "svc-1", "o1"), incident("INC-9", "svc-2", "o2")
    if where == "store":
        for led in pair:
            import_lines(led, [first])
    else:
        rows[3] = first  # first batch
    rows[21000] = reuse  # third batch
    before = [snapshot(led) for led in pair]
    errors = both_ways(pair, rows)
    assert errors[0] == errors[1]
    assert errors[0] == ("line 21001: field `incident`: INC-9 already names an incident of service svc-1 "
                         f"(position {1 if where == 'store' else 4})")
    assert [snapshot(led) for led in pair] == before
    assert passes.packed == ["gave way"]


def test_names_given_by_a_large_file_are_kept_for_later_appends(pair: tuple[Ledger, Ledger],
                                                                passes: Passes) -> None:
    a, b = pair
    rows = filler(25000, start=100)
    rows[5] = incident("INC-9", "svc-1", "o1")
    rows[15000] = incident("INC-9", "svc-1", "o2", minute=3)  # same scope, a later batch
    rows[24000] = window("mw-9", "svc-3")
    assert a.import_file(io.BytesIO(body(rows)), parallel_from=1) == import_lines(b, rows)
    assert passes.packed == ["kept"]
    assert list(a.recorder.read_raw()) == list(b.recorder.read_raw())
    for led in pair:
        with pytest.raises(BadInput, match=r"INC-9 already names an incident of service svc-1 \(position 6"):
            import_lines(led, [incident("INC-9", "svc-4")])
        with pytest.raises(BadInput, match=r"mw-9 already names a maintenance window of service svc-3 "
                                           r"\(position 24001\)"):
            import_lines(led, [window("mw-9", "svc-4")])


def test_a_store_made_before_the_names_table_gets_it_filled_once(store_url: str, clock: StepClock) -> None:
    led = open_ledger(store_url, clock=clock)
    try:
        import_lines(led, [*filler(3), incident("INC-1", "web", "o1"), incident("INC-1", "web", "o2"),
                          exclusion("ex-1", "web", "c1")])
    finally:
        led.close()
    _drop_names_table(store_url)
    led = open_ledger(store_url, clock=clock)
    try:
        with pytest.raises(BadInput, match=r"^line 1: field `incident`: INC-1 already names an incident of "
                                           r"service web \(position 4\)$"):
            import_lines(led, [incident("INC-1", "api")])
        with pytest.raises(BadInput, match=r"ex-1 already names an exclusion of service web for contract c1 "
                                           r"\(position 6\)$"):
            import_lines(led, [exclusion("ex-1", "web")])
        assert import_lines(led, [incident("INC-2", "api")]).appended == 1
        assert verify(led.recorder).ok
    finally:
        led.close()


def test_a_store_that_cannot_make_its_names_table_is_read_but_not_appended_to(
    store_url: str, clock: StepClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A reader's role (PostgreSQL) or a read-only file (SQLite) on a store made before the table.
    led = open_ledger(store_url, clock=clock)
    try:
        import_lines(led, [incident("INC-1", "web")])
    finally:
        led.close()
    _drop_names_table(store_url)
    if store_url.startswith("sqlite"):
        from eventsourcing.persistence import OperationalError

        from ledger.persistence.sqlite.recorder import SQLiteLedgerRecorder

        def refuse(self: object) -> None:
            raise OperationalError("attempt to write a readonly database")

        monkeypatch.setattr(SQLiteLedgerRecorder, "_create_names", refuse)
    else:
        from ledger.persistence.postgres.recorder import PostgresLedgerRecorder

        def refuse(self: object, curs: object) -> None:
            raise psycopg.errors.InsufficientPrivilege("permission denied for table stored_events")

        monkeypatch.setattr(PostgresLedgerRecorder, "_lock_table", refuse)
    led = open_ledger(store_url, clock=clock)
    try:
        assert [r.position for r in led.records()] == [1]
        with pytest.raises(StoreError, match="no names table"):
            import_lines(led, [incident("INC-1", "api")])
    finally:
        led.close()


def _drop_names_table(url: str) -> None:
    if url.startswith("sqlite"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            conn.execute("DROP TABLE ledger_names")
            conn.commit()
        finally:
            conn.close()
    else:
        with psycopg.connect(url) as pg:
            pg.execute("DROP TABLE ledger_names")


# --- 2. contract facts make the next version, on every path --------------------------------


def test_contract_facts_an_import_would_have_ignored_are_refused(ledger: Ledger) -> None:
    import_lines(ledger, [contract_line("registered")])
    before = snapshot(ledger)
    cases = [
        (contract_line("registered", target="99.5"),
         "field `policy.contract.id`: contract `acme` is already registered (position 1)"),
        (contract_line("amended", cid="other", effective_from="2026-11"),
         "field `policy.contract.id`: contract `other` is not registered; register it first"),
        (contract_line("registered", cid="new", effective_from="2026-11"),
         "field `policy.contract.effective_from`: only an amendment has an effective_from"),
        (contract_line("amended", timezone="UTC", effective_from="2026-11"),
         "field `policy.contract.timezone`: an amendment keeps the contract's time zone (Europe/Paris)"),
        (contract_line("amended", service="elsewhere", effective_from="2026-11"),
         "field `policy.contract.service`: an amendment keeps the contract's service (platform)"),
    ]
    for line, message in cases:
        with pytest.raises(BadInput) as caught:
            import_lines(ledger, [*filler(1), line])
        assert str(caught.value).startswith(f"line 2: {message}")
        assert snapshot(ledger) == before


def test_amendments_start_strictly_later_months(ledger: Ledger) -> None:
    # Version 1 is in force from the beginning: the first amendment may start any month.
    lines = [contract_line("registered"), contract_line("amended", target="99.5", effective_from="2020-01"),
             contract_line("amended", target="99.6", effective_from="2026-11")]
    assert import_lines(ledger, lines).appended == 3  # the versions before in the same file count
    for month in ("2026-11", "2026-10"):
        with pytest.raises(BadInput, match=rf"^line 1: field `policy.contract.effective_from`: {month} is "
                                           r"not after 2026-11, from which version 3 is in force"):
            import_lines(ledger, [contract_line("amended", target="99.7", effective_from=month)])
    assert [v.version for v in ledger.contracts()["acme"]] == [1, 2, 3]
    later = contract_line("amended", target="99.7", effective_from="2026-12")
    assert import_lines(ledger, [later]).appended == 1


def test_contract_facts_through_the_packing_child(pair: tuple[Ledger, Ledger], passes: Passes) -> None:
    rows = filler(25000, start=100)
    rows[2] = contract_line("registered")
    rows[12000] = contract_line("amended", target="99.5", effective_from="2026-11")
    a, b = pair
    assert a.import_file(io.BytesIO(body(rows)), parallel_from=1) == import_lines(b, rows)
    assert passes.packed == ["kept"]
    assert [v.version for v in a.contracts()["acme"]] == [1, 2]
    bad = filler(25000, start=50000)
    bad[22000] = contract_line("amended", timezone="UTC", effective_from="2027-01")
    errors = both_ways(pair, bad)
    assert errors[0] == errors[1]
    assert errors[0].startswith("line 22001: field `policy.contract.timezone`: an amendment keeps")
    assert passes.packed == ["kept", "gave way"]
    assert a.recorder.last_position() == 25000


def test_amend_refuses_a_new_time_zone_or_service_and_stays_idempotent(ledger: Ledger) -> None:
    ledger.register_contract(load_policy(policy_text().encode()))
    v2 = load_policy(policy_text(target="99.5", effective_from="2026-11").encode())
    assert ledger.amend_contract(v2).version == 2
    assert ledger.amend_contract(v2).version == 2  # the same file again changes nothing
    for terms, field in [({"timezone": "UTC"}, "timezone"), ({"service": "other"}, "service")]:
        changed = load_policy(policy_text(effective_from="2026-12", **terms).encode())
        with pytest.raises(BadInput, match=rf"^field `contract.{field}`: an amendment keeps the contract's"):
            ledger.amend_contract(changed)
    with pytest.raises(BadInput, match=r"^field `contract.effective_from`: 2026-10 is not after 2026-11"):
        ledger.amend_contract(load_policy(policy_text(target="99.1", effective_from="2026-10").encode()))
    with pytest.raises(NotFound):
        ledger.amend_contract(load_policy(policy_text(cid="nope", effective_from="2026-12").encode()))
    assert ledger.recorder.last_position() == 2


def test_contract_facts_through_append_json(runner: CliRunner, store_url: str, tmp_path: Path) -> None:
    policy = tmp_path / "acme.toml"
    policy.write_text(policy_text())
    assert run(runner, store_url, "contract", "register", str(policy)).exit_code == 0
    line = one_line_error(run(runner, store_url, "append", "--json",
                              contract_line("registered", target="99.5").decode()))
    assert line.startswith("error: field `policy.contract.id`: contract `acme` is already registered")
    line = one_line_error(run(runner, store_url, "append", "--json",
                              contract_line("amended", timezone="UTC", effective_from="2026-11").decode()))
    assert line.startswith("error: field `policy.contract.timezone`: ")
    amended = tmp_path / "acme-utc.toml"
    amended.write_text(policy_text(timezone="UTC", effective_from="2026-11"))
    line = one_line_error(run(runner, store_url, "contract", "amend", str(amended)))
    # Named by its file, as the file's own checks are (hAM).
    assert line.startswith(f"error: {amended}: field `contract.timezone`: "
                           "an amendment keeps the contract's time zone")
    assert "a new contract id is the way" in line
    assert len(events(runner, store_url)) == 1


# --- 3. recorded_at is the ledger's -------------------------------------------------------


def test_append_takes_no_recorded_at_or_position(ledger: Ledger) -> None:
    fact = msgspec.json.decode(incident("INC-1", "web"), type=IncidentOpened)
    for field, value in (("recorded_at", fact.at), ("position", 7)):
        with pytest.raises(BadInput, match=rf"^field `{field}`: set by the ledger"):
            ledger.append(msgspec.structs.replace(fact, **{field: value}))
    assert ledger.recorder.last_position() == 0


@pytest.mark.parametrize("extra", ['"recorded_at":"2026-10-05T10:00:00Z"', '"position":1'])
def test_append_json_with_an_envelope_field_is_bad_input(runner: CliRunner, store_url: str,
                                                          extra: str) -> None:
    line = incident("INC-1", "web").decode()[:-1] + ", " + extra + "}"
    assert one_line_error(run(runner, store_url, "append", "--json", line)).startswith(
        f"error: field `{extra.split(':')[0].strip(chr(34))}`: set by the ledger")
    assert events(runner, store_url) == []


def test_import_refuses_a_recorded_at_after_its_own_instant(ledger: Ledger) -> None:
    # StepClock: one reading per import, the first 2026-11-01T12:00:01Z, then a second later each.
    line = filler(1, start=5)[0][:-1] + b',"recorded_at":"%s"}'
    with pytest.raises(BadInput, match=r"^line 2: field `recorded_at`: 2026-11-01T12:00:02\+00:00 is later "
                                       r"than this import's own instant, 2026-11-01T12:00:01\+00:00$"):
        import_lines(ledger, [*filler(1), line % b"2026-11-01T12:00:02Z"])
    assert ledger.recorder.last_position() == 0
    assert import_lines(ledger, [line % b"2026-11-01T12:00:02Z"]).appended == 1  # at the instant itself


def test_the_packing_child_refuses_a_recorded_at_after_the_import(pair: tuple[Ledger, Ledger]) -> None:
    rows = filler(25000, start=100)
    rows[20000] = rows[20000][:-1] + b',"recorded_at":"2999-01-01T00:00:00Z"}'
    errors = both_ways(pair, rows)
    assert errors[0] == errors[1]
    assert errors[0].startswith("line 20001: field `recorded_at`: 2999-01-01T00:00:00+00:00 is later than")
    assert [led.recorder.last_position() for led in pair] == [0, 0]


# --- 4. ids recorded with other content ----------------------------------------------------


def test_an_id_recorded_with_other_content_is_a_conflict_not_a_duplicate(ledger: Ledger) -> None:
    import_lines(ledger, filler(5))  # e0..e4 at positions 1..5
    other = filler(1, start=3)[0].replace(b'"probe":"p"', b'"probe":"q"')  # e3, other content
    rows = [filler(1, start=1)[0], other, *filler(2, start=10),
            filler(1, start=10)[0], filler(1, start=11)[0].replace(b'"p"', b'"r"')]
    result = import_lines(ledger, rows)
    assert result.appended == 2
    assert result.skipped == 2  # e1 (recorded) and e10 (line 3 again): the same content
    assert result.conflicts == [Conflict(2, "e3", 4), Conflict(6, "e11", 7)]
    assert [r.id for r in ledger.records()][-2:] == ["e10", "e11"]
    assert list(ledger.records())[3].fact.probe == "p"  # type: ignore[union-attr]


def test_conflicts_through_the_packing_child_are_those_of_the_checking_path(
    pair: tuple[Ledger, Ledger], passes: Passes,
) -> None:
    rows = filler(25000, start=100)
    rows[7] = rows[3].replace(b'"probe":"p"', b'"probe":"q"')  # the same batch: the child sees it
    first = [*rows]
    a, b = pair
    result = a.import_file(io.BytesIO(body(rows)), parallel_from=1)
    assert result == import_lines(b, rows)
    assert passes.packed == ["kept"]
    assert result.conflicts == [Conflict(8, "e103", 4)]
    assert (result.appended, result.skipped) == (24999, 0)
    # Across batches and against the store: the packed pass gives way, the checking pass reports.
    rows = filler(25000, start=100000)
    rows[20000] = rows[1].replace(b'"probe":"p"', b'"probe":"q"')
    rows[24000] = first[9].replace(b'"probe":"p"', b'"probe":"q"')
    result = a.import_file(io.BytesIO(body(rows)), parallel_from=1)
    assert result == import_lines(b, rows)
    assert passes.packed == ["kept", "gave way"]
    assert result.conflicts == [Conflict(20001, "e100001", 24999 + 2), Conflict(24001, "e109", 9)]
    assert list(a.recorder.read_raw()) == list(b.recorder.read_raw())
    assert verify(a.recorder).ok


def test_the_command_line_reports_each_conflict(runner: CliRunner, store_url: str, tmp_path: Path) -> None:
    path = tmp_path / "in.ndjson"
    path.write_bytes(body(filler(3)))
    assert run(runner, store_url, "import", str(path)).exit_code == 0
    path.write_bytes(body([filler(1)[0].replace(b'"p"', b'"x"'), *filler(3), *filler(1, start=5)]))
    result = run(runner, store_url, "import", str(path))
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "conflict: line 1: id e0 is already recorded with other content (position 1); not imported",
        "imported 1 event, 3 already recorded, 1 conflicting (positions 4-4)",
    ]
    quiet = run(runner, store_url, "import", "-q", str(path))
    assert quiet.stderr.splitlines() == [
        "conflict: line 1: id e0 is already recorded with other content (position 1); not imported"]
    line = one_line_error(run(runner, store_url, "append", "--json",
                              filler(1, start=1)[0].decode().replace('"p"', '"y"')))
    assert line == ("error: field `id`: e1 is already recorded with other content (position 2); "
                    "nothing appended")
    assert run(runner, store_url, "append", "--json", filler(1, start=1)[0].decode()).stdout.strip() == "2"
    assert len(events(runner, store_url)) == 4


class _Pipe(io.BytesIO):
    def seekable(self) -> bool:
        return False


def test_a_pipe_prepared_in_the_child_is_checked_as_in_process(pair: tuple[Ledger, Ledger],
                                                               passes: Passes) -> None:
    # Input that cannot be read twice is prepared in the child and checked by the writer.
    a, b = pair
    rows = filler(12000)
    rows[4] = incident("INC-1", "web")
    rows[11000] = rows[3].replace(b'"probe":"p"', b'"probe":"q"')
    result = a.import_file(_Pipe(body(rows)), parallel_from=1)
    assert result == import_lines(b, rows)
    assert result.conflicts == [Conflict(11001, "e3", 4)]
    assert passes.packed == []
    rows = filler(12000, start=20000)
    rows[11000] = incident("INC-1", "api")
    with pytest.raises(BadInput, match=r"^line 11001: field `incident`: INC-1 already names an incident of "
                                       r"service web \(position 5\)$"):
        a.import_file(_Pipe(body(rows)), parallel_from=1)
    assert a.recorder.last_position() == 11999
