"""The ledger application: one object the command line (and tests) drive.

``ledger.bootstrap`` builds it from a store URL. The clock is injected, so nothing
below the edges reads the time itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, BinaryIO

import msgspec

from ledger.calendar import check_instant, check_month
from ledger.contracts import ContractVersion, contract_versions, in_force
from ledger.errors import BadInput, NotFound
from ledger.events import (
    ContractAmended,
    ContractRegistered,
    ExclusionDeclared,
    Fact,
    ForceMajeureDeclared,
    MaintenanceAnnounced,
    Recorded,
    decode_state,
)
from ledger.persistence.keys import (
    CONTRACT,
    claims_key,
    contract_key,
    holidays_key,
    index_key,
    month_keys,
    read_related,
    read_service_states,
    reference_key,
    service_key,
)
from ledger.persistence.port import AppendResult, IdConflict, LedgerRecorder
from ledger.policy import Policy, PolicyFile, resolve
from ledger.runtime import paused_gc

if TYPE_CHECKING:
    from projections.model import Audit, Evaluation, LogCheckpoint, Report


def _rewind_point(file: BinaryIO, size: int) -> int | None:
    """Where ``file`` stands, if it can be read again from there and holds at least ``size`` more bytes."""
    try:
        if not file.seekable():
            return None
        start = file.tell()
        long_enough = len(file.read(size)) >= size
        file.seek(start)
    except (OSError, ValueError):
        return None
    return start if long_enough else None


class _Progress:
    """Passes on input bytes consumed, once each even if the input is read a second time."""

    def __init__(self, report: Callable[[int], None] | None) -> None:
        self.report = report
        self.seen = self.reported = 0

    def __call__(self, size: int) -> None:
        self.seen += size
        if self.seen > self.reported and self.report is not None:
            self.report(self.seen - self.reported)
            self.reported = self.seen

    def rewind(self) -> None:
        self.seen = 0


def utc_now() -> datetime:
    """The wall clock, in UTC (the only place the ledger reads it)."""
    return datetime.now(UTC)


class Ledger:
    """Append facts, read them back, and evaluate contract months."""

    def __init__(self, recorder: LedgerRecorder, clock: Callable[[], datetime] = utc_now,
                 url: str | None = None, reopen: Callable[[], Ledger] | None = None) -> None:
        self.recorder = recorder
        self.clock = clock
        self.url = url  # where it was opened from
        # Opens another ledger on the same store (picklable: the rebuild's worker processes
        # and a reconnecting follower open their own connection with it); from ``ledger.bootstrap``.
        self.reopen = reopen

    def close(self) -> None:
        self.recorder.close()

    # --- writing ---------------------------------------------------------------

    def append(self, fact: Fact, *, dry_run: bool = False) -> AppendResult:
        """Append one fact (idempotent on its id); BadInput if its id is recorded with other content.

        ``position`` and ``recorded_at`` are the ledger's to give: a fact carrying
        either is refused (only an import keeps an exported ``recorded_at``).
        """
        from ledger.ingest.lines import prepare_facts  # writing only: reads need no ingest
        from ledger.persistence.append import append_prepared

        if fact.position is not None:
            raise BadInput("field `position`: set by the ledger when it records a fact")
        if fact.recorded_at is not None:
            raise BadInput("field `recorded_at`: set by the ledger when it records a fact "
                           "(only an import keeps the recorded_at of an exported line)")
        result = append_prepared(self.recorder, prepare_facts([fact]), self.clock, label="",
                                 dry_run=dry_run)
        if result.conflicts:  # nothing was written: the one fact was that conflict
            c = result.conflicts[0]
            raise BadInput(f"field `id`: {c.id} is already recorded with other content "
                           f"(position {c.position}); nothing appended")
        return result

    def append_facts(self, facts: Iterable[Fact], *, dry_run: bool = False) -> AppendResult:
        """Append many facts in one all-or-nothing transaction (idempotent on ids); see ``import_file``."""
        from ledger.ingest.lines import prepare_facts
        from ledger.persistence.append import append_prepared

        return append_prepared(self.recorder, prepare_facts(facts), self.clock, label="event",
                               dry_run=dry_run)

    def import_file(
        self, file: BinaryIO, progress: Callable[[int], None] | None = None, *,
        parallel_from: int | None = None, dry_run: bool = False,
    ) -> AppendResult:
        """Import an NDJSON stream all-or-nothing; a large one is decoded in a second process.

        ``progress`` gets the number of input bytes consumed. ``dry_run``: every check
        runs, inside the write transaction, which is then rolled back (``import --dry-run``).

        Where the input is long and can be read again (a file, not a pipe), a third
        process links and packs the rows, as if none of their ids were
        recorded; if one is (a re-import), nothing is kept and the file is read
        again the checking way (see ``append_packed``). ``parallel_from``: bytes from which
        a second process decodes (default ``ledger.ingest.strategy.PARALLEL_FROM_BYTES``).
        """
        from ledger.ingest.strategy import PARALLEL_FROM_BYTES, packed_batches, prepared_batches
        from ledger.persistence.append import append_packed, append_prepared

        if parallel_from is None:
            parallel_from = PARALLEL_FROM_BYTES
        now = self.clock()  # one instant for the import, however many times it reads the file
        clock = lambda: now  # noqa: E731
        packing = self.recorder.packing
        # A dry run takes the checking path: the packed one may hand over to it half-way.
        start = None if dry_run else _rewind_point(file, parallel_from)
        if start is not None:
            counted = _Progress(progress)
            try:
                return append_packed(
                    self.recorder, lambda chain: packed_batches(file, chain, packing, counted), clock
                )
            except IdConflict:
                file.seek(start)
                counted.rewind()
                progress = counted if progress is not None else None
        batches = prepared_batches(file, progress, parallel_from=parallel_from)
        try:
            return append_prepared(self.recorder, batches, clock, dry_run=dry_run)
        finally:
            batches.close()  # stops the preparing process at once if the write failed

    def register_contract(self, policy: PolicyFile) -> ContractVersion:
        """Record version 1 of a contract; re-registering the same file changes nothing."""
        step = self._registration(policy, self.contracts().get(policy.contract.id))
        if isinstance(step, ContractVersion):
            return step
        self.append(step)
        return self.contracts()[policy.contract.id][0]

    def amend_contract(self, policy: PolicyFile) -> ContractVersion:
        """Record a new version of a contract, in force from its ``effective_from`` month."""
        step = self._amendment(policy, self.contracts().get(policy.contract.id))
        if isinstance(step, ContractVersion):
            return step
        self.append(step)
        return self.contracts()[policy.contract.id][-1]

    def validate_contract(self, policy: PolicyFile) -> str:
        """What ``register`` (no effective_from) or ``amend`` would do with ``policy``; nothing written."""
        cid = policy.contract.id
        versions = self.contracts().get(cid)
        amending = policy.contract.effective_from is not None
        step = self._amendment(policy, versions) if amending else self._registration(policy, versions)
        if isinstance(step, ContractVersion):
            return f"contract `{cid}`: valid; recorded as it is (version {step.version}), nothing to do"
        self.append(step, dry_run=True)
        version = len(versions) + 1 if versions else 1
        command = "amend" if amending else "register"
        return f"contract `{cid}`: valid; `ledger contract {command}` would record it as version {version}"

    @staticmethod
    def _registration(policy: PolicyFile, existing: list[ContractVersion] | None,
                      ) -> ContractRegistered | ContractVersion:
        """The fact that registers ``policy``, or the version already recorded as it is."""
        if existing:
            if existing[0].policy == policy and len(existing) == 1:
                return existing[0]
            raise BadInput(
                f"contract `{policy.contract.id}` is already registered "
                f"(version {len(existing)}); use `ledger contract amend`"
            )
        if policy.contract.effective_from is not None:
            raise BadInput("field `contract.effective_from`: only an amendment has an effective_from")
        return ContractRegistered(policy=policy)

    @staticmethod
    def _amendment(policy: PolicyFile, versions: list[ContractVersion] | None,
                   ) -> ContractAmended | ContractVersion:
        """The fact that amends a contract with ``policy``, or its latest version if that is ``policy``."""
        if not versions:
            raise NotFound(f"contract `{policy.contract.id}` is not registered; register it first")
        if policy.contract.effective_from is None:
            raise BadInput("field `contract.effective_from`: required to amend a contract (\"YYYY-MM\")")
        if versions[-1].policy == policy:
            return versions[-1]
        from ledger.persistence.consistency import contract_problem, contract_state

        fact = ContractAmended(policy=policy)
        problem = contract_problem(fact, contract_state(versions))
        if problem is not None:
            raise BadInput(f"field `{problem[0]}`: {problem[1]}")
        return fact

    # --- reading ---------------------------------------------------------------

    def records(self, upto: int | None = None) -> Iterator[Recorded]:
        """Every recorded fact up to position ``upto`` (all if None), in order."""
        return self.recorder.read_records(1, upto)

    def contracts(self, upto: int | None = None) -> dict[str, list[ContractVersion]]:
        """Every contract's versions as recorded up to ``upto``."""
        last = self.recorder.last_position() if upto is None else upto
        return contract_versions(self.recorder.read_key_prefix(CONTRACT, last))

    def month_records(self, contract: str, month: str, upto: int, replay_point: datetime | None = None,
                      ) -> tuple[ContractVersion, Policy, list[Recorded]]:
        """The version in force for a contract-month, its policy and every fact its figures can depend on.

        Read through the key index: the contract's versions, its service's facts that can
        touch the month (``ledger.month_read``: month buckets, a walk back per probe, the
        corrections that refer to their ids), its claims and the pinned holidays of its
        calendar's country (``calendar_pins``). The fold would ignore everything else, so
        the figures equal those from the whole ledger.
        """
        from ledger.month_read import month_records, versions_upto

        version = in_force(versions_upto(self.recorder, contract, upto), month)
        policy = resolve(version.policy)
        records = month_records(self.recorder, policy, month, upto, replay_point)
        pins = self.calendar_pins(version.policy, upto)
        if pins:
            records = sorted([*records, *pins], key=lambda r: r.position)
        return version, policy, records

    def calendar_pins(self, policy: PolicyFile, upto: int) -> list[Recorded]:
        """The ``holidays_pinned`` facts up to ``upto`` of the country a policy's business calendar names."""
        country = policy.calendar.holidays if policy.calendar is not None else None
        if country is None:
            return []
        return list(self.recorder.read_keyed([holidays_key(country)], upto))

    def service_records(self, services: Sequence[str], contracts: Sequence[str], upto: int,
                        *, with_contracts: bool = False) -> list[Recorded]:
        """Facts about ``services``, the corrections referring to them, and the claims of ``contracts``.

        With ``with_contracts``, the contracts' versions too. In position order.
        """
        keys = month_keys(services, contracts, versions=with_contracts)
        return sorted(read_related(self.recorder, keys, upto), key=lambda r: r.position)

    def events(
        self,
        service: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Recorded]:
        """Recorded facts, filtered by service (with the facts that refer to its ids) and time."""
        source: Iterable[Recorded] = self.records()
        if service is not None:
            # Through the key index: the service's facts and the contract versions name the
            # keys of everything else that belongs to it; the rest of the ledger is never read.
            last = self.recorder.last_position()
            versions = self.recorder.read_key_prefix(CONTRACT, last)
            about = [*versions, *self.recorder.read_keyed([service_key(service)], last)]
            keys = sorted(_related_keys(about, service))  # its probe reports by their range, too
            source = (decode_state(p, s) for p, s in read_service_states(self.recorder, keys, last))
        for rec in source:
            if _in_window(rec.fact, since, until):
                yield rec

    def evaluate(self, contract: str, month: str, *, upto: int | None = None,
                 replay_point: datetime | None = None) -> Evaluation:
        """Evaluate one contract-month from the facts recorded up to position ``upto``."""
        from projections.availability import evaluate  # deferred: the fold is heavy to import

        check_month(month, "month")
        last = self.recorder.last_position() if upto is None else upto
        with paused_gc():  # thousands of decoded facts, no cycles
            version, policy, records = self.month_records(contract, month, last, replay_point)
            return evaluate(records, policy, version.version, month, as_of_position=last,
                            replay_point=replay_point)

    def report(self, contract: str, month: str) -> Evaluation:
        """The month's figures as the ledger knows them now, naming the log they come from."""
        ev = self.evaluate(contract, month)
        return msgspec.structs.replace(ev, report=self.with_checkpoint(ev.report))

    def log_checkpoint(self, size: int) -> LogCheckpoint | None:
        """The first ``size`` facts' Merkle root (O(log n) reads), or None where the tree is not built."""
        from ledger.persistence.merkle_read import root_of
        from projections.model import LogCheckpoint

        root = root_of(self.recorder, size)
        return None if root is None else LogCheckpoint(size, root)

    def with_checkpoint(self, report: Report) -> Report:
        """``report`` naming the log it was computed from (INTERFACE.md section 7)."""
        return msgspec.structs.replace(report, checkpoint=self.log_checkpoint(report.as_of_position))

    def audit(self, contract: str, month: str, *, as_of: datetime | None = None,
              position: int | None = None) -> Audit:
        """Replay only what was recorded up to a point in time or a position, and explain it."""
        upto, replay_point = self.replay_upto(as_of, position)
        ev = self.evaluate(contract, month, upto=upto, replay_point=replay_point)
        from projections.model import Audit

        return Audit(as_of=as_of, as_of_position=upto, report=self.with_checkpoint(ev.report),
                     explanation=ev.explanation)

    def replay_upto(self, as_of: datetime | None, position: int | None) -> tuple[int, datetime | None]:
        """The position and replay point of ``--as-of`` / ``--position`` (the head and None without either).

        Refused in one line naming the option: a position outside 1..head (0 included), an
        as-of before the first ``recorded_at`` (saying when the log starts).
        """
        if as_of is not None and position is not None:
            raise BadInput("give --as-of or --position, not both")
        last = self.recorder.last_position()
        if position is not None:
            if not 1 <= position <= last:
                held = f"the ledger holds positions 1 to {last}" if last else "nothing is recorded yet"
                raise BadInput(f"--position {position}: {held}")
            return position, self._recorded_at(position)
        if as_of is None:
            if last == 0:
                raise NotFound("nothing is recorded yet")
            return last, None
        check_instant(as_of, "as_of")
        upto = self.recorder.position_at(as_of)
        if upto == 0:
            first = f" (the first fact was recorded at {self._recorded_at(1).isoformat()})" if last else ""
            raise NotFound(f"--as-of {as_of.isoformat()}: nothing was recorded by then{first}")
        return upto, as_of

    def _recorded_at(self, position: int) -> datetime:
        for rec in self.recorder.read_records(position, position):
            return rec.recorded_at
        raise NotFound(f"no event at position {position}")


def _related_keys(records: Iterable[Recorded], service: str) -> set[str]:
    """Index keys of the facts about ``service``: its own, and those of the ids and contracts it has."""
    own = service_key(service)
    keys = {own}
    for rec in records:
        f = rec.fact
        if isinstance(f, ContractRegistered | ContractAmended):
            if f.policy.contract.service == service:
                keys |= {contract_key(f.policy.contract.id), claims_key(f.policy.contract.id)}
        elif index_key(f) == own and (ref := reference_key(f)) is not None:
            keys.add(ref)
    return keys


def _span(fact: Fact) -> tuple[datetime, datetime] | None:
    """The stretch of time a fact is about (None for facts outside time, like corrections)."""
    if isinstance(fact, MaintenanceAnnounced | ForceMajeureDeclared | ExclusionDeclared):
        return fact.starts_at, fact.ends_at
    at = getattr(fact, "at", None)
    return (at, at) if isinstance(at, datetime) else None


def _in_window(fact: Fact, since: datetime | None, until: datetime | None) -> bool:
    span = _span(fact)
    if span is None:
        return True
    start, end = span
    if since is not None and end < since:
        return False
    return not (until is not None and start >= until)
