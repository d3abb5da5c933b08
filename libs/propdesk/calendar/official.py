"""China's public holidays and make-up working days, from the `chinese-calendar` package.

The package is the single source for the years it knows (2004 to 2026 in 1.11); a new
release of the package extends the range with no change here. Years past its range come
from an operator load (see `model.HolidayOverrides.for_year`), never from a table kept in
this repository.
"""

from __future__ import annotations

from datetime import date

import chinese_calendar

from propdesk.calendar.model import DayKind, SpecialDay

# The package validates every call by scanning min/max of its tables; the calendar code
# asks about every day it walks, so read the two tables once.
_HOLIDAYS: dict[date, str] = dict(chinese_calendar.holidays)
_WORKDAYS: dict[date, str] = dict(chinese_calendar.workdays)
FIRST_YEAR: int = min(_HOLIDAYS).year
LAST_YEAR: int = max(_HOLIDAYS).year


def package_covers(year: int) -> bool:
    return FIRST_YEAR <= year <= LAST_YEAR


def official_special_day(d: date) -> SpecialDay | None:
    """The package's verdict for a covered date: a holiday, a make-up workday, or None
    (an ordinary day: the weekday rule applies). Callers check coverage first."""
    name = _WORKDAYS.get(d)
    if name is not None:
        return SpecialDay(DayKind.WORKDAY, name)
    name = _HOLIDAYS.get(d)
    if name is not None:
        return SpecialDay(DayKind.HOLIDAY, name)
    return None
