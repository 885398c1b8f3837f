"""Calendar arithmetic: month bounds in a zone, business days and business hours.

Everything here is pure. Instants go in and come out as aware datetimes; the
results are in UTC so that callers can subtract them without surprises.

Wall-clock times that do not exist (a DST gap) or exist twice (a DST fold) are
resolved the PEP 495 way with ``fold=0``: an ambiguous time is its *first*
occurrence, and a time inside a gap is read with the offset in force before the
gap, which lands it as many minutes after the gap as it was into it (02:30 in a
02:00->03:00 gap becomes 03:30). That rule is deterministic and never moves an
instant backwards.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from typing import Final
from zoneinfo import ZoneInfo

import msgspec

from ledger.cache import cache_root, cached_text
from ledger.errors import BadInput

_DAY = timedelta(days=1)

# The time the ledger accepts: instants from the Unix epoch to the end of 2999 (UTC), far
# inside what datetime holds (years 1 to 9999), so that whatever is computed from accepted
# input (a month's bounds in any zone, a notice of 366 business days, a claim deadline, a
# replay point) stays representable. Months are those the accepted instants fall in, in
# any zone (UTC-12 to UTC+14): 1969-12 to 3000-01, so that every accepted fact lies in a
# month that can be reported.
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(2999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
FIRST_YEAR, LAST_YEAR = EARLIEST.year, LATEST.year
INSTANT_RANGE: Final = "1970-01-01T00:00:00Z and 2999-12-31T23:59:59.999999Z"  # "between ..."
FIRST_MONTH: Final = (1969, 12)
LAST_MONTH: Final = (3000, 1)
MONTH_RANGE: Final = "1969-12 to 3000-01"
# What ``split_month`` reads, as ``re.fullmatch(_MONTH_RE, month)`` would (``fullmatch``, not
# `^...$`, which lets a trailing newline through; [0-9] is ASCII only, where int() would also
# take "+3", " 3", "3_0" or full-width digits). Read by hand: compiling it cost every command's
# start-up (issue 17); tests/unit/test_input_hygiene.py holds the two to each other.
_MONTH_RE: Final = r"([0-9]{4})-(0[1-9]|1[0-2])"
_MONTH_NUMBERS: Final = frozenset(f"{n:02d}" for n in range(1, 13))



# Public holidays of a country code in a year: ``holiday_dates`` (the installed package) or a
# lookup that prefers the dates pinned in the ledger (``HolidayBook``, below).
HolidayLookup = Callable[[str, int], frozenset[date]]


class CalendarRules(msgspec.Struct, frozen=True):
    """A contract's business calendar: its zone, its public holidays and its opening hours."""

    timezone: ZoneInfo
    holidays: str | None  # "CA", "BE", "CA-ON" (country, optional subdivision)
    opens: time
    closes: time


def split_month(month: str) -> tuple[int, int]:
    """Year and month number of an exact "YYYY-MM", any year 0000 to 9999 (ValueError otherwise).

    The one month parser: month arithmetic (``projections.affected.add_months``) reads the
    edge months too, which ``parse_month`` refuses because no zone can bound them.
    """
    year = month[:4]
    if not (len(month) == 7 and month[4] == "-" and year.isascii() and year.isdigit()
            and month[5:] in _MONTH_NUMBERS):
        raise ValueError(f"not a month (YYYY-MM): {month!r}")
    return int(year), int(month[5:])


def parse_month(month: str) -> tuple[int, int]:
    """Year and month number of an exact "YYYY-MM" whose bounds any zone can compute (ValueError otherwise).

    Years 2 to 9998: every zone's local midnights of such a month are datetimes. What the
    folds can evaluate, which is wider than what input may name (``check_month``): a store
    written before the input range was bounded may hold facts in any such month.
    """
    parsed = split_month(month)
    if 2 <= parsed[0] <= 9998:
        return parsed
    raise ValueError(f"not a month (YYYY-MM): {month!r}")


def check_month(month: str, what: str) -> str:
    """``month`` if it is exact "YYYY-MM" from 1969-12 to 3000-01, else BadInput naming ``what``."""
    try:
        ok = FIRST_MONTH <= parse_month(month) <= LAST_MONTH
    except ValueError:
        ok = False
    if not ok:
        raise BadInput(f"{what}: expected a month YYYY-MM from {MONTH_RANGE}, got {month!r}")
    return month


def in_range(instant: datetime) -> bool:
    """Whether an aware instant lies between ``EARLIEST`` and ``LATEST``."""
    # The local year decides all but the first and last year (an offset is under a day).
    return FIRST_YEAR < instant.year < LAST_YEAR or EARLIEST <= instant <= LATEST


_RFC3339: Final = msgspec.json.Decoder(datetime)


def rfc3339(text: str) -> datetime | None:
    """``text`` read as an RFC 3339 timestamp (naive when it has no offset); None if it is none."""
    try:
        return _RFC3339.decode(msgspec.json.encode(text))
    except msgspec.ValidationError:
        return None


def check_instant(instant: datetime, what: str) -> datetime:
    """``instant`` if ``in_range``, else BadInput naming ``what`` (a field or an option)."""
    if not in_range(instant):
        raise BadInput(f"{what}: must lie between {INSTANT_RANGE}, got {instant.isoformat()}")
    return instant


def first_of_next_month(year: int, mon: int) -> date:
    """The first day of the month after ``year``-``mon``."""
    return date(year + 1, 1, 1) if mon == 12 else date(year, mon + 1, 1)


def local_instant(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of wall-clock ``clock`` on ``day`` in ``tz`` (gaps and folds: fold=0)."""
    if clock == time.max:
        # "24:00" closes a business day: that is the next local midnight, not 23:59:59.999999.
        return local_instant(day + _DAY, time(0), tz)
    return wall_instant(day, clock, tz)


def wall_instant(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """``local_instant`` for a time of day read off an instant: 23:59:59.999999 is itself, not "24:00"."""
    return datetime.combine(day, clock, tzinfo=tz).astimezone(UTC)


def local_midnight(day: date, tz: ZoneInfo) -> datetime:
    """The UTC instant at which ``day`` begins in ``tz``."""
    return local_instant(day, time(0), tz)


def month_bounds(month: str, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of ``month`` in ``tz``, as aware UTC datetimes (DST months are 1 h off)."""
    year, mon = parse_month(month)
    return local_midnight(date(year, mon, 1), tz), local_midnight(first_of_next_month(year, mon), tz)


@lru_cache(maxsize=256)
def holiday_dates(code: str, year: int) -> frozenset[date]:
    """Public holidays of ``code`` ("CA", "BE", "CA-ON") in ``year``; cached per (code, year).

    Exactly the installed ``holidays`` package's dates, read from the disk cache
    (``holidays_cache_dir``) when they were computed before by the same package version:
    importing the package costs more than a whole report (issue 17).
    """
    text = _cached(f"dates-{code}-{year}", lambda: "".join(f"{d.isoformat()}\n" for d in
                                                          sorted(_package_dates(code, year))))
    return frozenset(date.fromisoformat(line) for line in text.splitlines())


def _package_dates(code: str, year: int) -> frozenset[date]:
    import holidays  # deferred: the package's import costs start-up time

    country, _, subdiv = code.partition("-")
    table = holidays.country_holidays(country, subdiv=subdiv or None, years=year)
    return frozenset(table.keys())


@lru_cache(maxsize=1)
def supported_holidays() -> dict[str, list[str]]:
    """The ``holidays`` package's countries and their subdivisions (``list_supported_countries``), cached."""

    def compute() -> str:
        import holidays

        return msgspec.json.encode(holidays.list_supported_countries(), order="sorted").decode()

    return msgspec.json.decode(_cached("supported", compute), type=dict[str, list[str]])


def holidays_cache_dir() -> str | None:
    """Where computed holiday tables are kept, one directory per ``holidays`` version (None: no cache).

    Under ``ledger.cache.cache_root``; None when there is no cache or the package's version
    cannot be read without importing it.
    """
    root = cache_root()
    version = _holidays_version()
    if root is None or version is None:
        return None
    return os.path.join(root, f"holidays-{version}")


@lru_cache(maxsize=1)
def _holidays_version() -> str | None:
    """The installed ``holidays`` distribution's version, from its ``.dist-info`` name (no import)."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("holidays")
    if spec is None or spec.origin is None:
        return None
    site = os.path.dirname(os.path.dirname(spec.origin))
    try:
        names = os.listdir(site)
    except OSError:
        return None
    found = [n[len("holidays-"):-len(".dist-info")] for n in names
             if n.startswith("holidays-") and n.endswith(".dist-info")]
    return found[0] if len(found) == 1 else None


def _cached(name: str, compute: Callable[[], str]) -> str:
    """The text cached under ``name`` for the installed ``holidays`` release, else ``compute()``."""
    where = holidays_cache_dir()
    return cached_text(os.path.join(where, name) if where is not None else None, compute)


def is_business_day(day: date, calendar: CalendarRules, holidays: HolidayLookup | None = None) -> bool:
    """Monday to Friday and not a public holiday of the calendar's country (if it names one).

    ``holidays``: where the dates come from (default: the installed package, ``holiday_dates``).
    """
    if day.weekday() >= 5:
        return False
    if calendar.holidays is None:
        return True
    lookup = holiday_dates if holidays is None else holidays
    return day not in lookup(calendar.holidays, day.year)


# Instants beyond what a datetime can hold, for comparisons only: a business day's opening or
# closing that lies past datetime's limits is after (or before) every instant that exists.
_TOO_LATE = datetime.max.replace(tzinfo=UTC)
_TOO_EARLY = datetime.min.replace(tzinfo=UTC)


def _business_instant(day: date, clock: time, tz: ZoneInfo) -> datetime:
    """``local_instant``, or a stand-in past the end (or before the start) of datetime's range."""
    try:
        return local_instant(day, clock, tz)
    except OverflowError:
        return _TOO_LATE if day.year > 1 else _TOO_EARLY


def _utc(instant: datetime) -> datetime:
    """``instant`` in UTC, or a stand-in when its UTC reading is past datetime's limits."""
    try:
        return instant.astimezone(UTC)
    except OverflowError:
        return _TOO_LATE if instant.year > 1 else _TOO_EARLY


def _local_date(instant: datetime, tz: ZoneInfo) -> date:
    """The date of ``instant`` in ``tz``, clamped to datetime's range near its limits."""
    try:
        return instant.astimezone(tz).date()
    except OverflowError:
        return date.max if instant.year > 1 else date.min


def add_business_days(instant: datetime, n: int, calendar: CalendarRules,
                      holidays: HolidayLookup | None = None) -> datetime | None:
    """``instant`` moved forward ``n`` business days in the calendar's zone, same wall-clock time (UTC).

    None when that instant does not exist: it falls past the end of datetime's range (year
    9999), so no notice counted that way is ever enough. Callers treat None as never reached.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    try:
        local = instant.astimezone(calendar.timezone)
    except OverflowError:
        return None  # within hours of datetime's limits: no wall clock to keep
    # Each business day is at least one calendar day: too few days left, do not even count.
    if n > date.max.toordinal() - local.toordinal():
        return None
    day, left = local.date(), n
    try:
        if not n:  # moved by nothing: the instant itself, also the second time a fold shows its clock
            return instant.astimezone(UTC)
        while left:
            day += _DAY
            if is_business_day(day, calendar, holidays):
                left -= 1
        # Keep the wall-clock time; a time that falls in a gap or fold on the target day is
        # resolved with fold=0 (see the module docstring), whatever fold the start had: ``time()``
        # carries the start's fold, which would pick a fold's second occurrence (as the support
        # clock's ``_business_days`` does not).
        return wall_instant(day, local.time().replace(tzinfo=None, fold=0), calendar.timezone)
    except OverflowError:
        return None


def business_intervals(
    start: datetime, end: datetime, calendar: CalendarRules, holidays: HolidayLookup | None = None
) -> Iterator[tuple[datetime, datetime]]:
    """The pieces of [start, end) that fall in business hours, in order, as UTC datetimes.

    Total near datetime's limits: a business day whose hours cannot be written as a datetime
    lies outside every [start, end) that can, and is clipped to it.
    """
    tz = calendar.timezone
    # Compare in UTC: datetimes sharing one ZoneInfo compare by wall clock, wrong in a DST fold.
    start, end = _utc(start), _utc(end)
    # One day of slack each side: a business day's hours may sit across a UTC date line.
    first = max(_local_date(start, tz).toordinal() - 1, date.min.toordinal())
    last = min(_local_date(end, tz).toordinal() + 1, date.max.toordinal())
    for ordinal in range(first, last + 1):
        day = date.fromordinal(ordinal)
        if is_business_day(day, calendar, holidays):
            opens = _business_instant(day, calendar.opens, tz)
            closes = _business_instant(day, calendar.closes, tz)
            lo, hi = max(opens, start), min(closes, end)
            if lo < hi:
                yield lo, hi



@cache
def package_version() -> str:
    """``holidays <version>``: the source of dates taken from the installed package.

    Read from its ``.dist-info`` name (no import of the package or of ``importlib.metadata``,
    which a report does not otherwise load), else from its metadata; once per process (the
    installed package does not change under it, and a rebuild asks once per month).
    """
    found = _holidays_version()
    if found is None:
        from importlib.metadata import version

        found = version("holidays")
    return f"holidays {found}"


class HolidayBook:
    """Holiday dates for one figure: pinned where the ledger pins them, else the package's.

    Remembers every country-year it gave and where from, for the report and its digest.
    Hashed by identity: a calendar built on one book is cached apart from any other.
    The package's version is read only when a date is taken from it.
    """

    def __init__(self, pins: dict[tuple[str, int], frozenset[date]] | None = None,
                 package: HolidayLookup = holiday_dates, source: str | None = None) -> None:
        self.pins = pins or {}
        self.package = package
        self._source = source
        self.used: dict[tuple[str, int], tuple[str, frozenset[date]]] = {}

    @property
    def source(self) -> str:
        """What dates not pinned are named by: ``holidays <version>`` unless given."""
        if self._source is None:
            self._source = package_version()
        return self._source

    def __call__(self, country: str, year: int) -> frozenset[date]:
        key = (country, year)
        got = self.used.get(key)
        if got is None:
            pinned = self.pins.get(key)
            got = ("pinned", pinned) if pinned is not None else (self.source, self.package(country, year))
            self.used[key] = got
        return got[1]
