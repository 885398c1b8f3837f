"""Key prefixes are ranges in byte order, whatever the database's collation.

Contracts are found by the key prefix ``k:``. Under a linguistic collation
(en-US) ``"k:a"`` sorts after ``"k;"``, so a range read in the database's order
found no contract at all.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from ledger.bootstrap import open_ledger
from ledger.policy_check import load_policy
from tests.conftest import StepClock
from tests.pgserver import scratch_database

POLICY = """
[contract]
id = "{id}"
customer = "ACME"
service = "web"
timezone = "Europe/Paris"
currency = "EUR"
monthly_fee = "1000.00"
[availability]
target = "99.9"
outage_when = "any"
probes = ["paris"]
[credits]
tiers = [{{ below = "99.9", percent = "10" }}]
cap_percent = "100"
"""
# What a linguistic collation reorders: punctuation, digits, case, accents.
IDS = ["-first", "0-zero", "ACME", "Zeta", "_under", "acme", "zz", "été", "k;not-a-prefix"]
EN_US = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'"


def register_all(url: str) -> set[str]:
    led = open_ledger(url, clock=StepClock())
    try:
        for id_ in IDS:
            led.register_contract(load_policy(POLICY.format(id=id_).encode()))
        return set(led.contracts())
    finally:
        led.close()


def test_every_contract_is_found_whatever_its_id(store_url: str) -> None:
    assert register_all(store_url) == set(IDS)


@pytest.fixture
def en_us_url(pg_admin_url: str) -> Iterator[str]:
    with scratch_database(pg_admin_url, EN_US) as url:
        yield url


def test_a_new_store_in_an_en_us_database_finds_every_contract(en_us_url: str) -> None:
    assert register_all(en_us_url) == set(IDS)
    with psycopg.connect(en_us_url) as conn:
        row = conn.execute("SELECT 'k:a' < 'k;'").fetchone()
        assert row == (False,)  # the database's own order would have lost them


def test_a_key_index_made_before_it_was_byte_ordered_is_read_correctly(en_us_url: str) -> None:
    # The index table as stores created before COLLATE "C" have it: the database's collation.
    with psycopg.connect(en_us_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger_index (key text NOT NULL, position bigint NOT NULL, "
                     "PRIMARY KEY (key, position))")
    assert register_all(en_us_url) == set(IDS)
    with psycopg.connect(en_us_url) as conn:
        row = conn.execute("SELECT c.collname FROM pg_attribute a JOIN pg_collation c "
                           "ON c.oid = a.attcollation "
                           "WHERE a.attrelid = 'ledger_index'::regclass AND a.attname = 'key'").fetchone()
        assert row == ("default",)  # still the old table: the reads compared bytes themselves


def _id_collation(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT c.collname FROM pg_attribute a JOIN pg_collation c "
                           "ON c.oid = a.attcollation "
                           "WHERE a.attrelid = 'stored_events'::regclass AND a.attname = 'originator_id'"
                           ).fetchone()
        assert row is not None
        return str(row[0])


def test_a_new_log_compares_its_ids_as_bytes_and_finds_them_through_its_key(en_us_url: str) -> None:
    # COLLATE "C": the id's primary key compares bytes (cheaper for each insert); ids are only
    # ever compared for equality, so a lookup under the database's collation still uses it.
    assert register_all(en_us_url) == set(IDS)
    assert _id_collation(en_us_url) == "C"
    with psycopg.connect(en_us_url) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r[0] for r in conn.execute(
            "EXPLAIN SELECT originator_id FROM stored_events "
            "WHERE originator_id = ANY(string_to_array(%s, E'\\x1f'))", ("a\x1fb",)).fetchall())
        assert "stored_events_pkey" in plan, plan


def test_a_log_made_before_its_ids_were_byte_ordered_is_kept_and_used(en_us_url: str) -> None:
    # The log as stores created before COLLATE "C" have it (the library's table): left as it is.
    with psycopg.connect(en_us_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE stored_events (originator_id text NOT NULL, originator_version bigint "
                     "NOT NULL, topic text, state bytea, notification_id bigserial, "
                     "PRIMARY KEY (originator_id, originator_version))")
    assert register_all(en_us_url) == set(IDS)
    assert register_all(en_us_url) == set(IDS)  # again: every id recorded, found as such
    assert _id_collation(en_us_url) == "default"
