"""The import's batch path for plain lines (``lines._prepare_plain``): the rows of the line-by-line path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

import ledger
from benchmarks.generate import generate_lines
from cli import demo
from ledger.errors import BadInput
from ledger.events import ContractRegistered
from ledger.ingest.lines import MAX_LINE, LineSplitter, _prepare_numbered, _prepare_plain, prepare_chunk
from ledger.persistence.rows import Prepared
from ledger.policy_check import load_policy

_encode = msgspec.json.Encoder().encode


def _batch(data: bytes) -> list[Prepared]:
    splitter, rows = LineSplitter(), []
    prepare_chunk(splitter, data, MAX_LINE, rows)
    prepare_chunk(splitter, b"", MAX_LINE, rows)
    return rows


def _line_by_line(data: bytes) -> list[Prepared]:
    splitter, rows = LineSplitter(), []
    _prepare_numbered(splitter.feed(data), MAX_LINE, rows, splitter)
    _prepare_numbered(splitter.finish(), MAX_LINE, rows, splitter)
    return rows


def _taken(data: bytes) -> bool:
    splitter = LineSplitter()
    first, pieces = splitter.pieces(data)
    return _prepare_plain(first, pieces, [], splitter)


def _demo_lines() -> list[bytes]:
    return [_encode(fact) for fact in demo.demo_facts(demo.demo_month())]


def test_generated_lines_take_the_batch_path_and_give_the_same_rows() -> None:
    data = "".join(generate_lines(3_000, 7, 3)).encode()
    assert _taken(data)
    rows = _batch(data)
    assert rows == _line_by_line(data)
    assert all(type(row) is Prepared for row in rows)


def test_every_demo_fact_gives_the_same_rows() -> None:
    data = b"\n".join(_demo_lines()) + b"\n"
    assert _taken(data)
    assert _batch(data) == _line_by_line(data)
    policy = load_policy((Path(ledger.__file__).parent / "examples" / "sla-a.toml").read_bytes())
    contract = _encode(ContractRegistered(policy=policy))
    whole = data + contract + b"\n" + data  # a contract: line by line
    assert not _taken(whole)
    assert _batch(whole) == _line_by_line(whole)


def _outcome(prepare: Callable[[bytes], list[Prepared]], data: bytes) -> list[Prepared] | str:
    """The rows ``prepare`` gives, or the one-line error it refuses the input with."""
    try:
        return prepare(data)
    except BadInput as exc:
        return str(exc)


@pytest.mark.parametrize("extra", [
    b'{"type":"probe_recovered","service":"s","probe":"p","at":"2025-01-01T00:00:00Z"}',  # no id
    b'{"id":"x","position":7,"type":"probe_recovered","service":"s","probe":"p","at":"2025-01-01T00:00:00Z"}',
    b'{"id":"x","recorded_at":"2025-01-02T00:00:00Z","type":"probe_recovered","service":"s","probe":"p",'
    b'"at":"2025-01-01T00:00:00Z"}',
    b'{"id":"x","type":"probe_recovered","service":"s","probe":"p","at":"2025-01-01T00:00:00+02:00"}',
    b'{"id":"x","type":"incident_opened","service":"s","incident":"i","at":"2025-01-01T00:00:00Z",'
    b'"impact":"outage","severity":"2"}',
    b'{"id":"x","type":"probe_failed","service":"s","probe":"p","at":"2025-01-01T00:00:00Z","detail":"a\\"b"}',
    b'{"id":"x","type":"probe_recovered","service":"s","probe":"p","at":"0001-01-01T00:00:00Z"}',
    b"   ",
])
def test_a_line_of_another_shape_gives_the_same_rows(extra: bytes) -> None:
    data = "".join(generate_lines(300, 3, 1)).encode()
    data = data[: len(data) // 2] + extra + b"\n" + data[len(data) // 2 :]
    assert _outcome(_batch, data) == _outcome(_line_by_line, data)


@pytest.mark.parametrize("bad", [
    b'{"id":"x","id":"y","type":"probe_recovered","service":"s","probe":"p","at":"2025-01-01T00:00:00Z"}',
    b'{"id":"x","type":"probe_recovered","service":"s","probe":"p","at":"2025-01-01T00:00:00Z","at":null}',
    b'{"id":"x","type":"probe_recovered","service":"s","probe":"p"}',
    b'{"id":"x","type":"nothing"}',
    b"not json",
])
def test_a_bad_line_is_named_as_line_by_line(bad: bytes) -> None:
    data = "".join(generate_lines(300, 3, 1)).encode()
    lines = data.splitlines(keepends=True)
    data = b"".join([*lines[:150], bad + b"\n", *lines[150:]])
    with pytest.raises(BadInput) as line_by_line:
        _line_by_line(data)
    with pytest.raises(BadInput) as batch:
        _batch(data)
    assert str(batch.value) == str(line_by_line.value)
    assert str(batch.value).startswith("line 151:")
