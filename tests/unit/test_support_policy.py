"""The [support] policy section (INTERFACE.md 6.2): resolution, one-line errors naming the field."""

from __future__ import annotations

import re
from datetime import timedelta

import msgspec
import pytest

from ledger.errors import BadInput
from ledger.policy import PolicyFile, resolve
from ledger.policy_check import load_policy
from tests.integration.test_support_examples import POLICY_B, POLICY_D

BASE = POLICY_B.split(b"[support]")[0]


def test_resolved_sections() -> None:
    b = resolve(load_policy(POLICY_B)).support
    assert b is not None
    assert [(t.severity, t.kind, t.open_time, t.business_days) for t in b.targets] == [
        ("production_down", "per_ticket", timedelta(hours=1), None),
        ("serious", "per_ticket", timedelta(hours=4), None),
        ("moderate", "per_ticket", None, 1),
        ("limited", "per_ticket", None, 2),
    ]
    assert b.quota is not None
    assert (b.quota.year_starts, b.quota.exempt, b.quota.warn_below) == ((1, 1), {"bug", "global_issue"},
                                                                          timedelta(hours=2))
    assert b.timezone.key == "Europe/Zurich"  # the contract's zone when the section names none
    d = resolve(load_policy(POLICY_D)).support
    assert d is not None
    assert (d.engagement_level, d.engagement_within) == ("level3", timedelta(minutes=10))
    assert [(c.country, c.offset_days) for c in d.closures] == [("CA", 0), ("GB", 0), ("AU", -1)]


def test_a_policy_without_support_encodes_as_before() -> None:
    pf = load_policy(BASE)
    assert b"support" not in msgspec.json.encode(pf)
    assert resolve(pf).support is None
    assert msgspec.json.decode(msgspec.json.encode(pf), type=PolicyFile) == pf


@pytest.mark.parametrize(("support", "field"), [
    ('hours = ["Mon-Fri 17:00-08:00"]', "support.hours[0]"),
    ('hours = []', "support.hours"),
    ('hours = ["Mon-Fri 08:00-17:00"]\ntimezone = "Mars/Base"', "support.timezone"),
    ('hours = ["Mon-Fri 08:00-17:00"]\nholidays = "XX"', "support.holidays"),
    ('hours = ["Mon-Fri 08:00-17:00"]\nclosures = [{ holidays = "GB", window = "5-9" }]',
     "support.closures[0].window"),
    ('hours = ["Mon-Fri 08:00-17:00"]\ntargets = [{ severity = "a" }]', "support.targets[0]"),
    ('hours = ["Mon-Fri 08:00-17:00"]\ntargets = [{ severity = "a", first_response = "soon" }]',
     "support.targets[0].first_response"),
    ('hours = ["Mon-Fri 08:00-17:00"]\ntargets = [{ severity = "a", first_response = "0h" }]',
     "support.targets[0].first_response"),
    ('hours = ["Mon-Fri 08:00-17:00"]\ntargets = [{ severity = "a", first_response = "1h" }, '
     '{ severity = "a", mean_first_response = "1h" }]', "support.targets[1].severity"),
    ('hours = ["Mon-Fri 08:00-17:00"]\nquota = { hours_per = "0" }', "support.quota.hours_per"),
    ('hours = ["Mon-Fri 08:00-17:00"]\nquota = { hours_per = "1000", year_starts = "02-29" }',
     "support.quota.year_starts"),
    ('hours = ["Mon-Fri 08:00-17:00"]\nquota = { hours_per = "1000", exempt = ["bug", "bug"] }',
     "support.quota.exempt"),
    ('hours = ["Mon-Fri 08:00-17:00"]\nengagement = { level = "l3", within = "400d" }',
     "support.engagement.within"),
    ('hours = ["Mon-Fri 08:00-17:00"]\nrecovery = { max_data_loss = "a day" }',
     "support.recovery.max_data_loss"),
    ('hours = ["Mon-Fri 08:00-17:00"]\nsla = 1', "support"),
])
def test_bad_support_values_name_the_field(support: str, field: str) -> None:
    with pytest.raises(BadInput) as info:
        load_policy(BASE + b"[support]\n" + support.encode() + b"\n")
    message = str(info.value)
    assert "\n" not in message
    assert f"`{field}" in message


HOURS = 'hours = ["Mon-Fri 08:00-17:00"]\n'


@pytest.mark.parametrize(("support", "field"), [
    ('holidays = "CH\\n"', "support.holidays"),
    ('holidays = "ch"', "support.holidays"),
    ('closures = [{ holidays = "GB\\n", window = "12-25" }]', "support.closures[0].holidays"),
    ('quota = { hours_per = "1000\\n" }', "support.quota.hours_per"),
    ('quota = { hours_per = "1e3" }', "support.quota.hours_per"),
    ('quota = { hours_per = "1000", year_starts = "01-01\\n" }', "support.quota.year_starts"),
    ('quota = { hours_per = "1000", year_starts = " 1-01" }', "support.quota.year_starts"),
    ('timezone = "Europe/Zurich\\u0000"', "support.timezone"),
    ('targets = [{ severity = "a\\u0085", first_response = "1h" }]', "support.targets[0].severity"),
    ('engagement = { level = "l3\\n", within = "1h" }', "support.engagement.level"),
])
def test_support_strings_match_whole(support: str, field: str) -> None:
    # No msgspec pattern on the types (a `$` lets a trailing line feed through; issue 17's start-up):
    # the shape of each string is checked whole where a policy comes in.
    with pytest.raises(BadInput, match=rf"^policy: field `{re.escape(field)}`: "):
        load_policy(BASE + b"[support]\n" + (HOURS + support).encode() + b"\n")


def test_a_recorded_policy_is_read_back_as_recorded() -> None:
    # A policy recorded when the types' patterns let a trailing line feed through still decodes
    # and resolves: the types say what a recorded policy may hold, the checks what a new one may.
    recorded = load_policy(POLICY_B)
    assert recorded.support is not msgspec.UNSET
    assert recorded.support.quota is not None
    quota = msgspec.structs.replace(recorded.support.quota, year_starts="01-01\n")
    old = msgspec.structs.replace(recorded, support=msgspec.structs.replace(recorded.support, quota=quota))
    again = msgspec.json.decode(msgspec.json.encode(old), type=PolicyFile)
    assert again == old
    rules = resolve(again).support
    assert rules is not None
    assert rules.quota is not None
    assert rules.quota.year_starts == (1, 1)


@pytest.mark.parametrize("span", ["Mon 08:00 -Fri 17:00", "Mon 08:00- Fri 17:00", "Mon 08:00-Fri 17:00",
                                  "Fri 16:00-Mon 05:00"])
def test_a_span_across_days_is_spelled_as_section_6_2_writes_it(span: str) -> None:
    # "DAY HH:MM - DAY HH:MM": these were accepted, the stray space too.
    hours = f'hours = ["Mon-Fri 08:00-12:00", "{span}"]\n'
    spelled = " - ".join(part.strip() for part in re.split(r"(?<=[0-9]) ?- ?(?=[A-Z])", span))
    with pytest.raises(BadInput) as info:
        load_policy(BASE + b"[support]\n" + hours.encode())
    assert str(info.value) == (f'policy: field `support.hours[1]`: a span across days is written "{spelled}" '
                               f"(one space each side of the dash), got {span!r}")
    # A policy recorded before the rule reads as it always did.
    recorded = load_policy(BASE + b"[support]\n" + hours.replace(span, spelled).encode())
    assert recorded.support is not msgspec.UNSET
    old = msgspec.structs.replace(recorded, support=msgspec.structs.replace(
        recorded.support, hours=("Mon-Fri 08:00-12:00", span)))
    assert resolve(old).support == resolve(recorded).support
