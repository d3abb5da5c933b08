"""Working-time arithmetic over a `WorkCalendar`: the functions SLA clocks are built on.

All instants are timezone-aware; results are in UTC. Durations are measured on the
real time line (UTC), so a zone with daylight saving still counts real seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

from propdesk.calendar.days import coverage, is_working_day
from propdesk.calendar.model import END_OF_DAY, WorkCalendar

# A calendar with no working day in three years is misconfigured; stop rather than spin.
MAX_SEARCH_DAYS = 3 * 366
_ONE_DAY = timedelta(days=1)


def _aware(instant: datetime, name: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")
    return instant.astimezone(UTC)


def working_periods(cal: WorkCalendar, first_day: date) -> Iterator[tuple[datetime, datetime]]:
    """The working periods (UTC start, UTC end) from `first_day` (local date) onward."""
    zone = cal.zone
    d = first_day
    for _ in range(MAX_SEARCH_DAYS):
        if is_working_day(cal, d):
            for start, end in cal.hours.periods:
                # A period to 24:00 ends at the next midnight.
                last = datetime.combine(d + _ONE_DAY, time.min, tzinfo=zone)
                yield (
                    datetime.combine(d, start, tzinfo=zone).astimezone(UTC),
                    (
                        last if end == END_OF_DAY else datetime.combine(d, end, tzinfo=zone)
                    ).astimezone(UTC),
                )
        d += _ONE_DAY
    raise ValueError(f"no working time within {MAX_SEARCH_DAYS} days of {first_day}")


def is_working_time(cal: WorkCalendar, instant: datetime) -> bool:
    local = _aware(instant, "instant").astimezone(cal.zone)
    if not is_working_day(cal, local.date()):
        return False
    t = local.time()
    return any(start <= t and (t < end or end == END_OF_DAY) for start, end in cal.hours.periods)


def next_working_start(cal: WorkCalendar, instant: datetime) -> datetime:
    """`instant` itself when it is working time, else the start of the next working period."""
    at = _aware(instant, "instant")
    for start, end in working_periods(cal, at.astimezone(cal.zone).date()):
        if at < end:
            return max(start, at)
    raise AssertionError("unreachable: working_periods raises when exhausted")


def uncovered_years(cal: WorkCalendar, start: datetime, end: datetime | None = None) -> list[int]:
    """The years no holiday data covers among the project's local dates from `start` to
    `end` (inclusive; `end` defaults to `start`), e.g. from a complaint's receipt to the
    working start it is due at. Working time computed there counts weekdays only
    (`UncoveredPolicy.WEEKDAYS`) or raises, so a caller reports them.

    Local dates, never UTC ones: 2027-01-01 01:30 in Shanghai is still 2026 in UTC. Empty
    for a calendar that does not observe public holidays (no holiday data is missing)."""
    first = _aware(start, "start").astimezone(cal.zone).date()
    last = _aware(end, "end").astimezone(cal.zone).date() if end is not None else first
    if not cal.hours.observe_public_holidays:
        return []
    first, last = min(first, last), max(first, last)
    return [y for y in range(first.year, last.year + 1) if not coverage(y, cal.platform).covered]


def add_working_duration(cal: WorkCalendar, start: datetime, duration: timedelta) -> datetime:
    """The instant when `duration` of working time has elapsed after `start`.

    24 working hours from Friday 16:00 with 8-hour days lands on Wednesday 16:00 (or later
    across a holiday). A zero duration returns `start` unchanged.
    """
    at = _aware(start, "start")
    if duration < timedelta(0):
        raise ValueError("duration must not be negative")
    if duration == timedelta(0):
        return at
    remaining = duration
    for period_start, period_end in working_periods(cal, at.astimezone(cal.zone).date()):
        if period_end <= at:
            continue
        begin = max(period_start, at)
        available = period_end - begin
        if remaining <= available:
            return begin + remaining
        remaining -= available
    raise AssertionError("unreachable: working_periods raises when exhausted")


def working_seconds_between(cal: WorkCalendar, a: datetime, b: datetime) -> float:
    """Working seconds in [a, b); negative when b is before a."""
    ua, ub = _aware(a, "a"), _aware(b, "b")
    if ub < ua:
        return -working_seconds_between(cal, b, a)
    total = 0.0
    for period_start, period_end in working_periods(cal, ua.astimezone(cal.zone).date()):
        if period_start >= ub:
            break
        lo, hi = max(period_start, ua), min(period_end, ub)
        if hi > lo:
            total += (hi - lo).total_seconds()
    return total
