"""Evaluating contract-months from a ``Known`` index, a failing month marked rather than raised."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from ledger.contracts import ContractVersion
from ledger.events import Recorded
from ledger.persistence.port import LedgerRecorder
from ledger.policy import Policy, PolicyFile, SupportSection, resolve
from projections.affected import BeforeFloor, Known, Pair
from projections.credit import Stretch
from projections.model import Credit, Report
from projections.tracked.rows import Item, failure, support_rows

if TYPE_CHECKING:
    from projections.availability import HolidaysUsed
    from projections.support_model import SupportReport


_QUIET: dict[bytes, Credit] = {}  # quiet months' credits by ``_credit_key``, for every evaluator


def _credit_key(pf: PolicyFile) -> bytes:
    """The policy file without what names the contract (id, customer, service): what a quiet credit reads."""
    named = msgspec.structs.replace(pf.contract, id="", customer="", service="")
    return msgspec.json.encode(msgspec.structs.replace(pf, contract=named))


class Evaluator:
    """Evaluates contract-months from a ``Known`` index (policies resolved once per version).

    An index that keeps positions only needs ``reader`` to fetch each month's facts,
    unless the caller passes them.
    """

    def __init__(self, known: Known, reader: LedgerRecorder | None = None,
                 store_errors: tuple[type[BaseException], ...] | None = None,
                 policies: dict[tuple[str, int], tuple[Policy, Credit]] | None = None) -> None:
        """``policies``: a cache of resolved policies to share with other evaluators (one per group)."""
        self.known = known
        self.reader = reader
        # What is the store's failure, not the month's: the reader's backend says.
        self.store_errors = store_errors if store_errors is not None else getattr(
            reader, "store_errors", LedgerRecorder.store_errors)
        self._policies: dict[tuple[str, int], tuple[Policy, Credit]] = {} if policies is None else policies
        self._quiet: dict[bytes, Credit] = _QUIET

    def _resolved(self, contract: str, version: ContractVersion) -> tuple[Policy, Credit]:
        from projections.availability import quiet_credit

        key = (contract, version.version)
        resolved = self._policies.get(key)
        if resolved is None:
            policy = resolve(version.policy)
            # A quiet month's credit does not depend on whose contract it is: contracts made
            # from one template share it (20,000 contracts: 20,000 credit folds otherwise).
            same = _credit_key(version.policy)
            quiet = self._quiet.get(same)
            if quiet is None:
                quiet = self._quiet[same] = quiet_credit(policy)
            resolved = self._policies[key] = (policy, quiet)
        return resolved

    def _records(self, pair: Pair, records: list[Recorded] | None) -> list[Recorded]:
        """``records``, or what ``Known.positions_for`` names, read through the reader."""
        if records is not None:
            return records
        positions = self.known.positions_for(*pair)
        if not positions:
            return []
        if self.reader is None:
            raise ValueError("an index of positions needs a reader to fetch the facts")
        return list(self.reader.read_positions(positions))

    def report(self, pair: Pair, upto: int, records: list[Recorded] | None = None) -> Report:
        """The pair's report from the facts folded so far (``upto`` is the last position folded).

        ``records``: what ``Known.positions_for`` named, fetched by the caller.
        """
        return self._report(pair, upto, self._records(pair, records))[0]

    def _report(self, pair: Pair, upto: int,
                records: list[Recorded]) -> tuple[Report, list[Stretch], HolidaysUsed]:
        """The report, the month's downtime stretches the same fold found, the holidays that shaped them."""
        from projections.availability import evaluate_with_stretches, quiet_report

        contract, month = pair
        version = self.known.version_in_force(contract, month)
        policy, quiet = self._resolved(contract, version)
        if not records:
            # Most held months have no fact at all (every month up to the clock is held).
            return quiet_report(policy, version.version, month, as_of_position=upto, credit=quiet), [], {}
        evaluation, stretches, shaped = evaluate_with_stretches(records, policy, version.version, month,
                                                                as_of_position=upto,
                                                                instants=self.known.instants)
        return evaluation.report, stretches, shaped

    def support(self, pair: Pair, upto: int, records: list[Recorded] | None = None,
                stretches: tuple[list[Stretch], HolidaysUsed] | None = None) -> SupportReport | None:
        """The pair's support figures as ``ledger support`` gives them; None without a [support] section.

        ``stretches``: the month's downtime stretches (for engagement), by the availability fold's
        own definition, with the holidays that shaped them; computed here
        (``downtime_stretches_used``) if not given.
        """
        contract, month = pair
        version = self.known.version_in_force(contract, month)
        if not isinstance(version.policy.support, SupportSection):
            return None
        from projections.availability import downtime_stretches_used
        from projections.support import evaluate_support

        policy, _ = self._resolved(contract, version)
        records = self._records(pair, records)
        if stretches is None:
            stretches = downtime_stretches_used(records, policy, month) if records else ([], {})
        runs, shaped = stretches
        return evaluate_support(records, policy, version.version, month, as_of_position=upto,
                                stretches=runs, stretch_holidays=shaped)

    def evaluate_or_failure(self, pair: Pair, upto: int, records: list[Recorded] | None = None) -> list[Item]:
        """The pair's report and support rows (with a [support] section), or the month marked failed.

        An error of either fold stops one month (both of its parts: the failed table has one row
        per contract-month), not the view. An error of the store (reading the month's facts) is
        not the month's: it propagates.
        """
        try:
            records = self._records(pair, records)
            report, runs, shaped = self._report(pair, upto, records)
            support = self.support(pair, upto, records, (runs, shaped))
        except (BeforeFloor, *self.store_errors):
            raise  # the store's failure, or a window too short for the month: not the month's
        except Exception as exc:
            return [failure(pair, upto, exc)]
        return [report] if support is None else [report, support_rows(support)]

