"""Working calendars: per-project working hours in the project's time zone, Chinese public
holidays and make-up working days, tenant and operator overrides, and the working-time
arithmetic SLA clocks use. Pure: no I/O; the services store overrides and pass them in."""

from propdesk.calendar.clock import (
    add_working_duration,
    is_working_time,
    next_working_start,
    uncovered_years,
    working_periods,
    working_seconds_between,
)
from propdesk.calendar.days import (
    CoverageSource,
    DayVerdict,
    YearCoverage,
    coverage,
    day_verdict,
    is_working_day,
    uncovered_warning,
)
from propdesk.calendar.model import (
    CalendarNotCovered,
    DayKind,
    HolidayOverrides,
    SpecialDay,
    UncoveredPolicy,
    WorkCalendar,
    WorkingHours,
)

CalendarData = HolidayOverrides  # the name the services' brief uses for an operator load

__all__ = [
    "CalendarData",
    "CalendarNotCovered",
    "CoverageSource",
    "DayKind",
    "DayVerdict",
    "HolidayOverrides",
    "SpecialDay",
    "UncoveredPolicy",
    "WorkCalendar",
    "WorkingHours",
    "YearCoverage",
    "add_working_duration",
    "coverage",
    "day_verdict",
    "is_working_day",
    "is_working_time",
    "next_working_start",
    "uncovered_warning",
    "uncovered_years",
    "working_periods",
    "working_seconds_between",
]
