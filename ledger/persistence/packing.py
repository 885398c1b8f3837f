"""How each backend packs a batch of linked rows for its insert, as pure functions.

Every packer is reached through ``PACKERS`` by the name a backend gives
(``LedgerRecorder.packing``): the appending thread and an import's child process
alike, with the rows' Merkle leaf hashes (computed where the rows are linked,
``chain.Chain.link``: on an import's packed path, the child process). This module imports nothing of the
backends: loading the PostgreSQL backend (psycopg, the library's recorder) cost the child
0.12 s before its first batch.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from itertools import chain
from typing import Final

from ledger.persistence.port import Packed, Packer

Leaves = bytes | list[tuple[int, int, bytes]]  # leaf hashes, or the nodes they complete (``Packed.leaves``)


def pack_rows(events: Sequence[tuple[str, int, str, bytes]], keys: Sequence[tuple[str, int]],
              start: int, leaves: Leaves) -> Packed:
    """The packer for SQLite: the log's rows as one flat list of four values each, the index's as they are.

    The writer binds the log's values a hundred rows a statement (``sqlite.recorder``), and a
    flat list is what such a statement takes; it is also a fifth cheaper to decode from msgpack
    than a list a row (an import's writer). The key index stays in (key, position) rows: the
    writer may give a ticket's logs their contract's key in place (``keys.own_keys``).
    """
    return Packed(list(chain.from_iterable(events)), keys, start, len(events), leaves)


# An import's linking child sends ``pack_rows``'s values to the writer as four columns (ids,
# versions, topics, states), which the writer decodes with their types and puts back in a flat
# list (``rows_from_columns``): the states then arrive as ``bytearray``, which the ``sqlite3``
# module binds as it is, while each ``bytes`` value first goes through its adaptation lookup
# (a failed ``__adapt__`` lookup on a type, an AttributeError formatted and dropped: about
# 2,300 instructions, 0.3 us a row; docs/decisions.md, issue 17, hAD). Same values, same BLOBs.
RowColumns = tuple[list[str], list[int], list[str], list[bytearray]]


def rows_columns(flat: list[object]) -> tuple[list[object], list[object], list[object], list[object]]:
    """``pack_rows``'s flat values (four a row) as their four columns."""
    return flat[0::4], flat[1::4], flat[2::4], flat[3::4]


def rows_from_columns(columns: RowColumns) -> list[object]:
    """``rows_columns`` undone: the flat list ``pack_rows`` made, the states as decoded."""
    ids, versions, topics, states = columns
    if not len(ids) == len(versions) == len(topics) == len(states):
        raise ValueError("columns of different lengths")
    flat: list[object] = [None] * (4 * len(ids))
    flat[0::4] = ids
    flat[1::4] = versions
    flat[2::4] = topics
    flat[3::4] = states
    return flat


# PostgreSQL COPY's binary format: a signature, then per row its field count and each field
# as a length and bytes, then a trailer. Built in one buffer by whoever links the rows (the
# import's child, or the appending thread), so that the writer only sends it.
_SIGNATURE: Final = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_TRAILER: Final = b"\xff\xff"
_LENGTH: Final = struct.Struct("!i").pack
_INT8: Final = struct.Struct("!iq").pack  # an int8 field: its length (8), then the value
# A row's fields up to its first text: the field count, the position as an int8 field, and
# the length of the id or key that follows. One pack call instead of three, per row.
_EVENT_HEAD: Final = struct.Struct("!hiqi").pack
_INDEX_KEY: Final = struct.Struct("!hi").pack
_INT8_LENGTH: Final = _LENGTH(8)
_POSITION: Final = struct.Struct("!q").pack


def pack_binary(events: Sequence[tuple[str, int, str, bytes]], keys: Sequence[tuple[str, int]],
                start: int, leaves: Leaves) -> Packed:
    """The packer for PostgreSQL: binary COPY data, built in any process."""
    return Packed(binary_events(events, start), binary_index(keys), start, len(events), leaves)


def binary_events(events: Sequence[tuple[str, int, str, bytes]], start: int) -> bytearray:
    """(originator_id, originator_version, topic, state) rows at ``start``, ``start + 1``...

    as binary COPY data for (notification_id, originator_id, originator_version, topic, state).
    The buffer itself, not a bytes copy of it: a batch is megabytes, and both COPY and
    msgpack take a bytearray.
    """
    out = bytearray(_SIGNATURE)
    # The fields between the id and the state (version, topic, the state's length prefix
    # comes after): the same few for every row of a batch.
    middles: dict[tuple[int, str], bytes] = {}
    position = start
    for id_, version, topic, state in events:
        middle = middles.get((version, topic))
        if middle is None:
            name = topic.encode()
            middle = middles[version, topic] = _INT8(8, version) + _LENGTH(len(name)) + name
        ident = id_.encode()
        out += _EVENT_HEAD(5, 8, position, len(ident))
        out += ident
        out += middle
        out += _LENGTH(len(state))
        out += state
        position += 1
    out += _TRAILER
    return out


def binary_index(rows: Sequence[tuple[str, int]]) -> bytearray:
    """(key, position) rows as binary COPY data."""
    out = bytearray(_SIGNATURE)
    # A batch's keys repeat (a service's, a contract's): each key's fields up to the
    # position's value (field count, the key as a field, the position's length) once.
    heads: dict[str, bytes] = {}
    for key, position in rows:
        head = heads.get(key)
        if head is None:
            name = key.encode()
            head = heads[key] = _INDEX_KEY(2, len(name)) + name + _INT8_LENGTH
        out += head
        out += _POSITION(position)
    out += _TRAILER
    return out


PACKERS: Final[dict[str, Packer]] = {"rows": pack_rows, "binary": pack_binary}
