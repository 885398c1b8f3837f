"""Escaping for terminals and spreadsheets, and URL redaction: pure functions, properties."""

from __future__ import annotations

import csv
import io
import string

from hypothesis import given
from hypothesis import strategies as st

from ledger.text import MAX_ERROR, csv_text, printable, shortened, visible
from ledger.urls import redact, scrub, url_secrets

UNSAFE = {*map(chr, range(0x20)), "\x7f", *map(chr, range(0x80, 0xA0)), "\u061c", "\u200e", "\u200f",
          "\u2028", "\u2029", *map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))}
hostile = st.text(st.sampled_from(sorted(UNSAFE)) | st.characters() | st.sampled_from("=+-@\\'\","))


@given(hostile)
def test_printable_leaves_nothing_a_terminal_acts_on(text: str) -> None:
    shown = printable(text)
    assert not UNSAFE & set(shown)
    assert len(shown.splitlines()) <= 1
    assert printable(shown) == shown  # escaping twice changes nothing


@given(st.text(alphabet=string.printable.replace("\x0b", "").replace("\x0c", "")))
def test_printable_escapes_as_python_writes_escapes(text: str) -> None:
    # The usual spellings: \t \n \r for those three, \xHH for the others.
    assert printable(text) == "".join(
        {"\t": "\\t", "\n": "\\n", "\r": "\\r"}.get(c, c) for c in text
    )


@given(hostile)
def test_printable_skips_the_table_only_for_text_it_would_not_change(text: str) -> None:
    # ``printable`` returns printable text (str.isprintable) as it is, without the escape table:
    # the same as translating it with the whole table (issue 17: the table is made on first use).
    table = {ord(c): printable(c) for c in UNSAFE}
    assert printable(text) == text.translate(table)
    assert csv_text(text) == csv_text(text).translate(table)
    assert all(not c.isprintable() for c in UNSAFE)


def test_printable_spellings() -> None:
    assert printable("a\x1b[2Jb\x07\x7f\x85\x9b") == "a\\x1b[2Jb\\x07\\x7f\\x85\\x9b"
    assert printable("\u202eevil\u2066x\u2069\u2028\u061c") == "\\u202eevil\\u2066x\\u2069\\u2028\\u061c"
    assert printable("é 中文 🙂 \\n") == "é 中文 🙂 \\n"  # ordinary text and backslashes as they are


@given(hostile)
def test_visible_is_printable_but_the_blanks_of_a_page(text: str) -> None:
    # For HTML pages: tab, LF and CR are blanks there and stay; every other control and bidi
    # character is escaped as the terminal outputs escape it.
    shown = visible(text)
    assert not (UNSAFE - {"\t", "\n", "\r"}) & set(shown)
    assert shown == "".join(c if c in "\t\n\r" else printable(c) for c in text)


def test_visible_spellings() -> None:
    assert visible("a\tb\nc\r\u202e12\x1b") == "a\tb\nc\r\\u202e12\\x1b"


@given(hostile)
def test_a_csv_cell_is_no_formula_and_one_line(text: str) -> None:
    cell = csv_text(text)
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert not UNSAFE & set(cell)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([cell, "1"])
    assert len(out.getvalue().splitlines()) == 1
    assert next(csv.reader(io.StringIO(out.getvalue()))) == [cell, "1"]
    if text.startswith(("=", "+", "-", "@", "\t", "\r")):
        assert cell == "'" + printable(text)
    else:
        assert cell == printable(text)


def test_formula_cells() -> None:
    assert csv_text('=HYPERLINK("http://evil.example","x")') == '\'=HYPERLINK("http://evil.example","x")'
    assert csv_text("@SUM(A1)") == "'@SUM(A1)"
    assert csv_text("\tx") == "'\\tx"
    assert csv_text("a=b") == "a=b"


# A leading "§" that nothing else in the URLs holds: finding the password means it leaked.
passwords = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zs"), exclude_characters="@&?#/§"),
                    min_size=2, max_size=20).map(lambda p: "§" + p)


@given(passwords)
def test_a_url_is_shown_without_its_password(password: str) -> None:
    for url in (f"postgresql://alice:{password}@db.example:5432/ledger",
                f"postgresq://alice:{password}@db.example/ledger",  # a mistyped scheme too
                f"postgresql://db.example/ledger?sslmode=require&password={password}"):
        assert "§" not in redact(url)
        assert "§" not in scrub(f"store URL {url}: refused; the password was {password}", url)


def test_redaction_examples() -> None:
    assert redact("postgresql://alice:s3cr%40t@h:5432/db?sslmode=require") == \
        "postgresql://alice:***@h:5432/db?sslmode=require"
    assert redact("postgresql://alice:p@ss@h/db") == "postgresql://alice:***@h/db"  # an unescaped @
    assert redact("postgresql://h/db?sslpassword=abc&password=xyz") == \
        "postgresql://h/db?sslpassword=***&password=***"
    assert redact("postgresql://alice@h:5432/db") == "postgresql://alice@h:5432/db"
    assert redact("sqlite:///ledger.db") == "sqlite:///ledger.db"
    assert set(url_secrets("postgresql://alice:s3cr%40t@h/db")) == {"s3cr%40t", "s3cr@t"}


@given(st.text(max_size=3000))
def test_shortened_keeps_a_line_whole_up_to_the_limit_and_says_what_it_left_out(text: str) -> None:
    short = shortened(text)
    if len(text) <= MAX_ERROR:
        assert short == text
        return
    assert len(short) <= MAX_ERROR + 60
    cut = len(text) - 600 - 300
    assert short == f"{text[:600]}...[{cut:,} of {len(text):,} characters left out]...{text[-300:]}"
