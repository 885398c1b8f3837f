"""The reporting view's quiet months: the short path gives exactly what the fold gives.

The view holds every month up to the ledger's clock, most of them without a fact; they
are computed by ``quiet_report`` with a credit worked out once per policy version. Any
difference from ``evaluate`` on no facts (a digest, a second of T, a credit field) would
make a row differ from ``ledger report``.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from cli.demo import example_policy_paths
from ledger.policy import Policy, resolve
from ledger.policy_check import load_policy
from projections.availability import evaluate, quiet_credit, quiet_report
from projections.model import to_json
from tests.unit.factories import SEED_A, SEED_B, SEED_C_EN, SEED_D, policy

POLICIES: list[Policy] = [
    *(resolve(load_policy(p.read_bytes(), source=p.name)) for p in example_policy_paths()),
    *(policy(t) for t in (SEED_A, SEED_B, SEED_C_EN, SEED_D)),
    # A target of 100 % is met by a quiet month (exactly: 100 >= 100).
    policy(SEED_B.replace('target = "99.5"', 'target = "100"').replace('below = "99.5"', 'below = "100"')),
]

months = st.builds(lambda y, m: f"{y:04d}-{m:02d}", st.integers(2, 9998), st.integers(1, 12))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(POLICIES), months, st.integers(1, 5), st.integers(0, 10**6))
def test_a_quiet_month_is_what_the_fold_gives_without_facts(
    pol: Policy, month: str, version: int, position: int
) -> None:
    fold = evaluate([], pol, version, month, as_of_position=position).report
    quick = quiet_report(pol, version, month, as_of_position=position, credit=quiet_credit(pol))
    assert to_json(quick) == to_json(fold)


def test_daylight_saving_months_and_a_target_of_100_percent() -> None:
    for pol in POLICIES:
        for month in ("2026-03", "2026-10", "2026-11", "2028-02"):
            fold = evaluate([], pol, 1, month, as_of_position=7).report
            assert quiet_report(pol, 1, month, as_of_position=7, credit=quiet_credit(pol)) == fold
    strict = POLICIES[-1]
    quiet = quiet_report(strict, 1, "2026-10", as_of_position=7, credit=quiet_credit(strict))
    assert (quiet.target_met, quiet.credit.percent, quiet.credit.amount) == (True, "0", "0.00")
