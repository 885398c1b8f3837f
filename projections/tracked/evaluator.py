"""Evaluating contract-months from a ``Known`` index, a failing month marked rather than raised."""

from __future__ import annotations

from ledger.events import Recorded
from ledger.persistence.port import LedgerRecorder
from ledger.policy import Policy, resolve
from projections.affected import Known, Pair
from projections.model import Credit, Report
from projections.tracked.rows import Failed, failure


class Evaluator:
    """Evaluates contract-months from a ``Known`` index (policies resolved once per version).

    An index that keeps positions only needs ``reader`` to fetch each month's facts,
    unless the caller passes them.
    """

    def __init__(self, known: Known, reader: LedgerRecorder | None = None,
                 store_errors: tuple[type[BaseException], ...] | None = None) -> None:
        self.known = known
        self.reader = reader
        # What is the store's failure, not the month's: the reader's backend says.
        self.store_errors = store_errors if store_errors is not None else getattr(
            reader, "store_errors", LedgerRecorder.store_errors)
        self._policies: dict[tuple[str, int], tuple[Policy, Credit]] = {}

    def report(self, pair: Pair, upto: int, records: list[Recorded] | None = None) -> Report:
        """The pair's report from the facts folded so far (``upto`` is the last position folded).

        ``records``: what ``Known.positions_for`` named, fetched by the caller.
        """
        from projections.availability import evaluate, quiet_credit, quiet_report

        contract, month = pair
        version = self.known.version_in_force(contract, month)
        key = (contract, version.version)
        resolved = self._policies.get(key)
        if resolved is None:
            policy = resolve(version.policy)
            resolved = self._policies[key] = (policy, quiet_credit(policy))
        policy, quiet = resolved
        if records is None:
            positions = self.known.positions_for(contract, month)
            records = []
            if positions:
                if self.reader is None:
                    raise ValueError("an index of positions needs a reader to fetch the facts")
                records = list(self.reader.read_positions(positions))
        if not records:
            # Most held months have no fact at all (every month up to the clock is held).
            return quiet_report(policy, version.version, month, as_of_position=upto, credit=quiet)
        return evaluate(records, policy, version.version, month, as_of_position=upto).report

    def report_or_failure(
        self, pair: Pair, upto: int, records: list[Recorded] | None = None
    ) -> Report | Failed:
        """``report``, or the month marked failed: an error of the fold stops one month, not the view.

        An error of the store (reading the month's facts) is not the month's: it propagates.
        """
        try:
            return self.report(pair, upto, records)
        except self.store_errors:
            raise
        except Exception as exc:
            return failure(pair, upto, exc)
