"""Which days are working days, and which years the calendar covers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum

from propdesk.calendar.model import (
    CalendarNotCovered,
    DayKind,
    HolidayOverrides,
    UncoveredPolicy,
    WorkCalendar,
)
from propdesk.calendar.official import official_special_day, package_covers


class CoverageSource(StrEnum):
    PACKAGE = "chinese-calendar"
    OPERATOR = "operator"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class YearCoverage:
    year: int
    covered: bool
    source: CoverageSource


def coverage(year: int, platform: HolidayOverrides | None = None) -> YearCoverage:
    """Is `year` known? An operator load wins over the package (it may correct it)."""
    if platform is not None and year in platform.complete_years:
        return YearCoverage(year, True, CoverageSource.OPERATOR)
    if package_covers(year):
        return YearCoverage(year, True, CoverageSource.PACKAGE)
    return YearCoverage(year, False, CoverageSource.NONE)


def uncovered_warning(year: int) -> str:
    """The one wording for a year without holiday data, wherever it is reported (start-up
    log, coverage API, a work order computed across it)."""
    return (
        f"no holiday data for {year}: working time in {year} counts weekdays only until an "
        f"operator loads it (PUT /v1/calendars/years/{year})"
    )


@dataclass(frozen=True, slots=True)
class DayVerdict:
    working: bool
    name: str  # "" for an ordinary day, else the holiday / make-up day's name
    source: str  # "local", "operator", "chinese-calendar", "weekday", "uncovered"


def day_verdict(cal: WorkCalendar, d: date) -> DayVerdict:
    special = cal.local.days.get(d)
    if special is not None:
        return DayVerdict(special.kind is DayKind.WORKDAY, special.name, "local")
    ordinary = d.weekday() in cal.hours.weekdays
    if not cal.hours.observe_public_holidays:
        return DayVerdict(ordinary, "", "weekday")
    special = cal.platform.days.get(d)
    if special is not None:
        return DayVerdict(special.kind is DayKind.WORKDAY, special.name, "operator")
    if d.year in cal.platform.complete_years:
        # The operator's list replaces the package's for that year.
        return DayVerdict(ordinary, "", "weekday")
    if package_covers(d.year):
        special = official_special_day(d)
        if special is not None:
            return DayVerdict(special.kind is DayKind.WORKDAY, special.name, "chinese-calendar")
        return DayVerdict(ordinary, "", "weekday")
    if cal.uncovered is UncoveredPolicy.RAISE:
        raise CalendarNotCovered(d.year)
    return DayVerdict(ordinary, "", "uncovered")


def is_working_day(cal: WorkCalendar, d: date) -> bool:
    return day_verdict(cal, d).working
