"""The append's writer thread: statements in order, the first error reported, the rest cancelled."""

from __future__ import annotations

import threading

import pytest

from ledger.persistence.append import Writer as _Writer


def test_unthreaded_statements_run_at_once() -> None:
    ran: list[str] = []
    with _Writer(threaded=False) as writer:
        found = writer.submit(lambda: ran.append(threading.current_thread().name) or {"x"})
        assert found.done()
        assert ran == [threading.current_thread().name]
        assert writer.result(found) == {"x"}
        with pytest.raises(RuntimeError, match="now"):
            writer.submit(lambda: (_ for _ in ()).throw(RuntimeError("now")))


def test_statements_run_in_order_on_one_thread() -> None:
    ran: list[tuple[int, str]] = []
    with _Writer() as writer:
        futures = [writer.submit(lambda i=i: ran.append((i, threading.current_thread().name)) or i)
                   for i in range(50)]
        assert writer.result(futures[30]) == 30
        writer.finish()
    assert [i for i, _ in ran] == list(range(50))
    assert {name for _, name in ran} != {threading.current_thread().name}
    assert len({name for _, name in ran}) == 1


def test_a_result_reports_the_first_earlier_error() -> None:
    def fail(what: str) -> None:
        raise RuntimeError(what)

    with _Writer() as writer:
        writer.submit(fail, "insert failed")
        writer.submit(fail, "transaction aborted")
        found = writer.submit(lambda: {"x"})
        with pytest.raises(RuntimeError, match=r"^insert failed$"):
            writer.result(found)


def test_an_error_cancels_statements_not_yet_started() -> None:
    gate = threading.Event()
    ran: list[int] = []
    finished: list[bool] = []

    def append_then_fail() -> None:
        with _Writer() as writer:
            writer.submit(lambda: finished.append(gate.wait(5)))
            for i in range(3):
                writer.submit(ran.append, i)
            threading.Timer(0.2, gate.set).start()  # the running statement ends after the error
            raise ValueError("bad line")

    with pytest.raises(ValueError, match="bad line"):
        append_then_fail()
    assert finished == [True]  # the exit waited for the running statement...
    assert ran == []  # ...and dropped those not started
