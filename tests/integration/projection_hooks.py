"""Faults for the reporting projection, injected in the test process or in rebuild workers.

A rebuild's workers are spawned processes: they import the function they are given
by name, so a function of this module replacing ``projections.tracked.rebuilding._evaluate_groups``
in the parent runs in every worker, where it installs its fault first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

import projections.availability as availability
from projections.tracked import rebuilding

FAIL_MONTH = "LEDGER_TEST_FAIL_MONTH"  # "contract/month" whose fold raises, in a worker
MARKERS = "LEDGER_TEST_MARKERS"  # a directory where a stalled worker leaves a file named after its pid
ERROR = "injected\nfault"  # two lines: the view must keep it as one

_real_evaluate_groups = rebuilding._evaluate_groups
# The fold's entry points: ``evaluate``, and ``evaluate_with_stretches`` (what the projection calls).
_REAL: dict[str, Any] = {n: getattr(availability, n) for n in ("evaluate", "evaluate_with_stretches")}


def failing_evaluate(contract: str, month: str, name: str = "evaluate") -> Any:
    """``projections.availability.<name>``, raising for one contract-month."""

    def evaluate(records: Any, policy: Any, policy_version: int, m: str, **kwargs: Any) -> Any:
        if (policy.contract_id, m) == (contract, month):
            raise ArithmeticError(ERROR)
        return _REAL[name](records, policy, policy_version, m, **kwargs)

    return evaluate


def install_fault(monkeypatch: pytest.MonkeyPatch, contract: str, month: str) -> None:
    """In this process: the fold raises for ``contract`` in ``month``."""
    for name in _REAL:
        monkeypatch.setattr(availability, name, failing_evaluate(contract, month, name))


def failing_evaluate_groups(groups: Sequence[tuple[list[str], list[str]]], head: int, *rest: Any) -> Any:
    """A worker's task with the fold raising for the contract-month named in the environment."""
    contract, month = os.environ[FAIL_MONTH].split("/")
    for name in _REAL:
        setattr(availability, name, failing_evaluate(contract, month, name))
    return _real_evaluate_groups(groups, head, *rest)


def stalled_evaluate_groups(groups: Sequence[tuple[list[str], list[str]]], head: int, *rest: Any) -> Any:
    """A worker's task that says it is running, then hangs (until its process is ended)."""
    Path(os.environ[MARKERS], str(os.getpid())).touch()
    time.sleep(600)
    return _real_evaluate_groups(groups, head, *rest)
