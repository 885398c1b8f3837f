"""The timeline's units and order, shared by the month fold and the affected-pairs index.

Both read probe and incident facts as steps on one line of integer microseconds; the
index (``affected``) must replay them exactly as the fold (``availability``) does, or it
would miss a month the fold sees changing. So the order lives here, once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Final
from zoneinfo import ZoneInfo

from ledger.events import IncidentOpened, ProbeFailed, ProbeRecovered

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND: Final = timedelta(microseconds=1)  # (instant - EPOCH) // MICROSECOND: to_us inlined

# Within one instant, facts apply in this order (so the result never depends on arrival order):
# a failure before a recovery, an opening before a resolution. A failure and a recovery at the
# same instant are therefore a zero-length blip, not an outage that never ends.
FAIL, RECOVER = 0, 1
OPEN, RESOLVE = 0, 1
# Several openings of one incident at one instant: the worst impact is applied last, so it wins.
IMPACT_RANK: Final = {"none": 0, "degraded": 1, "outage": 2}
OUTAGE: Final = IMPACT_RANK["outage"]


def probe_rank(fact: ProbeFailed | ProbeRecovered) -> int:
    """Where a probe fact falls among the facts of its instant."""
    return FAIL if isinstance(fact, ProbeFailed) else RECOVER


def impact_rank(fact: IncidentOpened) -> int:
    """An opening's impact, ordered so that the worst of one instant is applied last."""
    return IMPACT_RANK[fact.impact]


def to_us(instant: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact)."""
    return (instant - EPOCH) // MICROSECOND


def from_us(us: int) -> datetime:
    """Inverse of ``to_us``, in UTC."""
    return EPOCH + timedelta(microseconds=us)


def local_at(us: int, tz: ZoneInfo) -> datetime:
    """The instant ``us`` in ``tz``, with a fixed-offset tzinfo.

    A fixed offset keeps later arithmetic exact: two datetimes sharing one ZoneInfo are
    subtracted and compared by wall clock, which is wrong across a DST change.
    """
    local = from_us(us).astimezone(tz)
    offset = local.utcoffset()
    assert offset is not None
    return local.replace(tzinfo=timezone(offset))


_HOUR: Final = 3_600_000_000
_NAIVE_EPOCH: Final = datetime(1970, 1, 1)


class LocalClock:
    """``local_at`` for one zone, its offset looked up once per hour instead of per instant.

    An hour is cached only if its first and last microsecond agree on the offset and the
    fold (so no change of either falls inside it); any other hour is looked up exactly.
    """

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._hours: dict[int, tuple[timedelta, timezone, int] | None] = {}

    def __call__(self, us: int) -> datetime:
        hour = us // _HOUR
        if hour in self._hours:
            cached = self._hours[hour]
        else:
            if len(self._hours) >= _MAX_HOURS:
                self._hours.clear()  # a process-wide clock (``clock_for``) stays bounded
            first, last = local_at(hour * _HOUR, self.tz), local_at((hour + 1) * _HOUR - 1, self.tz)
            offset, tzinfo = first.utcoffset(), first.tzinfo
            same = offset == last.utcoffset() and first.fold == last.fold
            cached = (offset, tzinfo, first.fold) if same and offset is not None and isinstance(
                tzinfo, timezone) else None
            self._hours[hour] = cached
        if cached is None:
            return local_at(us, self.tz)
        offset, tzinfo, fold = cached
        try:
            wall = _NAIVE_EPOCH + timedelta(microseconds=us) + offset
        except OverflowError:  # within hours of datetime's limits: the exact way says what happens
            return local_at(us, self.tz)
        return wall.replace(tzinfo=tzinfo, fold=fold)


_MAX_HOURS: Final = 1 << 16  # about 7.5 years of hours
_CLOCKS: dict[ZoneInfo, LocalClock] = {}


def clock_for(tz: ZoneInfo) -> LocalClock:
    """The process's ``LocalClock`` for ``tz``: a rebuild folds thousands of months in a few zones,
    and a clock made per month looked up two offsets for nearly every interval end."""
    clock = _CLOCKS.get(tz)
    if clock is None:
        clock = _CLOCKS[tz] = LocalClock(tz)
    return clock


def seconds(us: int) -> Decimal:
    """Exact seconds of a microsecond count, without exponent or trailing zeros ("5400", "0.25")."""
    whole, rest = divmod(us, 1_000_000)
    if rest == 0:
        return Decimal(whole)
    return Decimal(f"{whole}.{rest:06d}".rstrip("0"))
