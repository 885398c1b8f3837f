"""paused_gc: cyclic collection off inside, restored after (even on an error), never turned on."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ledger.runtime import paused_gc


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_off_inside_and_back_on_after_even_on_error() -> None:
    gc.enable()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()

    def fail_inside() -> None:
        with paused_gc():
            assert not gc.isenabled()
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_inside()
    assert gc.isenabled()


def test_left_off_when_it_was_off_and_nests() -> None:
    gc.disable()
    with paused_gc():
        with paused_gc():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert not gc.isenabled()
