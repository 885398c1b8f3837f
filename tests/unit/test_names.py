"""Identifiers and names refuse control characters, whichever way a line is decoded.

The check is not a msgspec pattern (``ledger.events.check_names``): it runs only
where the JSON could hold a control character, so these tests attack exactly the
cases that a too-eager shortcut would let through.
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.admission import _NAME_FIELDS, check_names, decode_fact, may_hold_control
from ledger.errors import BadInput
from ledger.events import FACT_TYPES
from ledger.ingest.lines import LineSplitter, prepare_line

PROBE = '{"type":"probe_failed","service":%s,"probe":"p","at":"2026-10-04T09:15:00Z"}'
CASES = [
    # (line, field named in the error)
    (PROBE % '"a\\u0001b"', "service"),
    (PROBE % '"a\\nb"', "service"),
    (PROBE % '"tab\\t"', "service"),
    (PROBE % '"\\u007f"', "service"),
    (PROBE % '"raw\x7fdel"', "service"),
    ('{"type":"probe_failed","service":"s","probe":"p\\r","at":"2026-10-04T09:15:00Z"}', "probe"),
    ('{"type":"probe_failed","service":"s","probe":"p","at":"2026-10-04T09:15:00Z","id":"x\\u001f"}', "id"),
    ('{"type":"incident_resolved","incident":"\\u0000","at":"2026-10-04T09:15:00Z"}', "incident"),
    ('{"type":"exclusion_revoked","ref":"r\\b","reason":"r"}', "ref"),
    ('{"type":"credit_claim_filed","contract":"c\\f","month":"2026-10","at":"2026-10-04T09:15:00Z"}',
     "contract"),
    ('{"type":"exclusion_declared","service":"s","exclusion":"x","category":"third_party",'
     '"starts_at":"2026-10-04T09:00:00Z","ends_at":"2026-10-04T10:00:00Z","reason":"r",'
     '"contract":"c\\u0002"}', "contract"),
    # C1 controls (U+0080-U+009F), escaped or raw (UTF-8 0xC2 0x80-0x9F)
    (PROBE % '"\\u0080 C1"', "service"),
    (PROBE % '"a\u0085b"', "service"),
    ('{"type":"probe_failed","service":"s","probe":"p\u009f","at":"2026-10-04T09:15:00Z"}', "probe"),
]


@pytest.mark.parametrize(("line", "field"), CASES)
def test_control_character_in_a_name_is_refused(line: str, field: str) -> None:
    for data in (line, line.encode()):
        with pytest.raises(BadInput, match=rf"^field `{field}`: must not contain control characters$"):
            decode_fact(data)
    with pytest.raises(BadInput, match=rf"^line 7: field `{field}`: must not contain control characters$"):
        prepare_line(7, line.encode() + b"\n")


@pytest.mark.parametrize(
    "line",
    [
        PROBE % '"caf\\u00e9 \\"quoted\\" back\\\\slash"',  # escapes that are not control characters
        PROBE % '"\\u00a0 no-break space, \u00b0 and \u00c2"',  # 0xC2 bytes that are not C1
        # free text keeps tab, line feed and carriage return
        '{"type":"probe_failed","service":"s","probe":"p","at":"2026-10-04T09:15:00Z","detail":"a\\nb\\tc\\r"}',
    ],
)
def test_escapes_that_are_not_control_characters_in_names_are_kept(line: str) -> None:
    fact = decode_fact(line.encode())
    assert fact == msgspec.json.decode(line.encode(), type=type(fact))


def test_every_name_field_is_checked() -> None:
    # Found from the annotations, so a new Name field is covered without a list to keep.
    assert all("id" in _NAME_FIELDS[cls] for cls in FACT_TYPES.values())
    assert set(_NAME_FIELDS[FACT_TYPES["exclusion_declared"]]) == {"service", "exclusion", "contract", "id"}
    assert set(_NAME_FIELDS[FACT_TYPES["probe_failed"]]) == {"service", "probe", "id"}


@given(st.text(min_size=1, max_size=20))
def test_may_hold_control_never_misses_one(text: str) -> None:
    # Whatever a name holds, the JSON msgspec writes for it is flagged if it decodes to a control character.
    line = msgspec.json.encode({"type": "probe_failed", "service": text, "probe": "p",
                                "at": "2026-10-04T09:15:00Z"})
    has_control = any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text)
    if has_control:
        assert may_hold_control(line)
        with pytest.raises(BadInput, match=r"^field `service`: must not contain control characters$"):
            decode_fact(line)
    else:
        check_names(decode_fact(line))


def test_splitter_flags_a_backslash_in_the_partial_line_of_the_chunk_before() -> None:
    splitter = LineSplitter(1000)
    assert splitter.feed(b'{"a":1}\n{"service":"x\\') == [(1, b'{"a":1}\n')]
    assert splitter.plain is False
    # The backslash arrived with the first chunk; the line it is in ends in the second.
    assert splitter.feed(b'u0001"}\n{"b":2}\n') == [(2, b'{"service":"x\\u0001"}\n'), (3, b'{"b":2}\n')]
    assert splitter.plain is False
    assert splitter.feed(b'{"c":3}\n{"d"') == [(4, b'{"c":3}\n')]
    assert splitter.plain is True
    assert splitter.feed(b":4}\x7f") == []
    assert splitter.finish() == [(5, b'{"d":4}\x7f')]
    assert splitter.plain is False
