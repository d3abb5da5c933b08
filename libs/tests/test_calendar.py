"""Working calendars: holidays, make-up days, time zones, uncovered and operator-loaded years."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from propdesk.calendar import (
    CalendarNotCovered,
    CoverageSource,
    DayKind,
    HolidayOverrides,
    SpecialDay,
    UncoveredPolicy,
    WorkCalendar,
    WorkingHours,
    add_working_duration,
    coverage,
    day_verdict,
    is_working_day,
    is_working_time,
    next_working_start,
    uncovered_warning,
    uncovered_years,
    working_seconds_between,
)

SH = ZoneInfo("Asia/Shanghai")
URUMQI = ZoneInfo("Asia/Urumqi")
NINE_TO_SIX = WorkingHours(periods=((time(9), time(18)),))
CAL = WorkCalendar(time_zone="Asia/Shanghai", hours=NINE_TO_SIX)


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)


def test_weekday_office_hours_and_late_night() -> None:
    # 2026-11-24 is a Tuesday.
    assert is_working_time(CAL, sh(2026, 11, 24, 10, 0))
    assert not is_working_time(CAL, sh(2026, 11, 24, 23, 30))
    assert not is_working_time(CAL, sh(2026, 11, 24, 18, 0))  # end is exclusive
    assert next_working_start(CAL, sh(2026, 11, 24, 23, 30)) == sh(2026, 11, 25, 9, 0)
    # Inside working time the next start is the instant itself.
    assert next_working_start(CAL, sh(2026, 11, 24, 10, 0)) == sh(2026, 11, 24, 10, 0)


def test_lunch_break_is_not_working_time() -> None:
    cal = WorkCalendar(hours=WorkingHours())  # 08:30-12:00, 13:30-17:30
    assert not is_working_time(cal, sh(2026, 11, 24, 12, 30))
    assert next_working_start(cal, sh(2026, 11, 24, 12, 30)) == sh(2026, 11, 24, 13, 30)
    assert working_seconds_between(cal, sh(2026, 11, 24, 0), sh(2026, 11, 25, 0)) == 7.5 * 3600


def test_national_day_is_a_holiday() -> None:
    # 2026-10-01 is a Thursday, but National Day.
    verdict = day_verdict(CAL, date(2026, 10, 1))
    assert not verdict.working and verdict.name == "National Day"
    assert not is_working_time(CAL, sh(2026, 10, 1, 10, 0))
    # The holiday runs to 10-07 (inclusive); 10-08 (Thursday) is the first working day back.
    assert next_working_start(CAL, sh(2026, 9, 30, 18, 0)) == sh(2026, 10, 8, 9, 0)


def test_make_up_working_day_2026() -> None:
    # 2026-10-10 is a Saturday worked in lieu of National Day (调休).
    assert date(2026, 10, 10).weekday() == 5
    assert is_working_day(CAL, date(2026, 10, 10))
    assert is_working_time(CAL, sh(2026, 10, 10, 10, 0))
    # An ordinary Saturday is not.
    assert not is_working_day(CAL, date(2026, 10, 17))
    # 24 working hours from Friday 2026-10-09 09:00 (9 h per day): Fri 9 h, Sat (make-up) 9 h,
    # then 6 h on Monday 10-12 → 15:00.
    assert add_working_duration(CAL, sh(2026, 10, 9, 9, 0), timedelta(hours=24)) == sh(
        2026, 10, 12, 15, 0
    )


def test_add_working_duration_across_weekend_and_holiday() -> None:
    # Thursday 2026-09-24 17:00 + 24 working hours: Thu 1 h; Fri 09-25 to Sun 09-27 are the
    # Mid-autumn Festival; Mon 28, Tue 29 = 18 h; Wed 30 → 5 h → 14:00.
    assert add_working_duration(CAL, sh(2026, 9, 24, 17, 0), timedelta(hours=24)) == sh(
        2026, 9, 30, 14, 0
    )
    # From the evening before National Day, the clock waits until 10-08.
    assert add_working_duration(CAL, sh(2026, 9, 30, 20, 0), timedelta(hours=1)) == sh(
        2026, 10, 8, 10, 0
    )
    assert add_working_duration(CAL, sh(2026, 9, 30, 20, 0), timedelta(0)) == sh(2026, 9, 30, 20, 0)


def test_working_seconds_between_is_inverse_of_add() -> None:
    start = sh(2026, 9, 28, 11, 17)
    for hours in (1, 8, 9, 24, 100):
        end = add_working_duration(CAL, start, timedelta(hours=hours))
        assert working_seconds_between(CAL, start, end) == hours * 3600
        assert working_seconds_between(CAL, end, start) == -hours * 3600


def test_time_zone_other_than_shanghai() -> None:
    cal = WorkCalendar(time_zone="Asia/Urumqi", hours=NINE_TO_SIX)
    # 2026-11-24 02:30 UTC is 10:30 in Shanghai but 08:30 in Urumqi (UTC+6).
    instant = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    assert is_working_time(CAL, instant)
    assert not is_working_time(cal, instant)
    start = next_working_start(cal, instant)
    assert start == datetime(2026, 11, 24, 9, 0, tzinfo=URUMQI)
    assert start == datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
    # 19:30 Shanghai is 17:30 Urumqi: closed in Shanghai, open in Urumqi.
    evening = sh(2026, 11, 24, 19, 30)
    assert not is_working_time(CAL, evening)
    assert is_working_time(cal, evening)


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_working_time(CAL, datetime(2026, 11, 24, 10))


def test_2027_is_uncovered_and_raises() -> None:
    assert coverage(2026) == coverage(2026)
    assert coverage(2026).covered and coverage(2026).source is CoverageSource.PACKAGE
    cov = coverage(2027)
    assert not cov.covered and cov.source is CoverageSource.NONE
    with pytest.raises(CalendarNotCovered) as err:
        is_working_time(CAL, sh(2027, 3, 1, 10, 0))
    assert err.value.year == 2027
    # Running from late December into 2027 is refused too, not silently guessed.
    with pytest.raises(CalendarNotCovered):
        add_working_duration(CAL, sh(2026, 12, 31, 10, 0), timedelta(hours=24))


def test_uncovered_weekdays_policy_keeps_going() -> None:
    cal = WorkCalendar(hours=NINE_TO_SIX, uncovered=UncoveredPolicy.WEEKDAYS)
    assert day_verdict(cal, date(2027, 3, 1)).source == "uncovered"
    assert is_working_time(cal, sh(2027, 3, 1, 10, 0))  # a Monday


def test_operator_loaded_2027_makes_it_covered() -> None:
    # The State Council's notice for 2027 (as an operator would type it in); 2027-02-06 is
    # a Saturday declared a working day for the example.
    loaded = HolidayOverrides.for_year(
        2027,
        holidays={date(2027, 1, 1): "New Year's Day", date(2027, 2, 8): "Spring Festival"},
        workdays={date(2027, 2, 6): "Spring Festival"},
    )
    cov = coverage(2027, loaded)
    assert cov.covered and cov.source is CoverageSource.OPERATOR
    cal = WorkCalendar(hours=NINE_TO_SIX, platform=loaded)
    assert not is_working_time(cal, sh(2027, 1, 1, 10, 0))  # Friday, holiday
    assert not is_working_time(cal, sh(2027, 2, 8, 10, 0))  # Monday, holiday
    assert is_working_time(cal, sh(2027, 2, 6, 10, 0))  # Saturday, make-up day
    assert is_working_time(cal, sh(2027, 3, 1, 10, 0))  # ordinary Monday
    assert not is_working_time(cal, sh(2027, 3, 6, 10, 0))  # ordinary Saturday
    # 2026-12-31 (Thursday) 17:00 + 2 h: 1 h that day, 2027-01-01 is off, weekend, Monday 10:00.
    assert add_working_duration(cal, sh(2026, 12, 31, 17, 0), timedelta(hours=2)) == sh(
        2027, 1, 4, 10, 0
    )


def test_operator_load_validation() -> None:
    with pytest.raises(ValueError, match="not in year"):
        HolidayOverrides.for_year(2027, holidays={date(2026, 1, 1): "x"})
    with pytest.raises(ValueError, match="both"):
        HolidayOverrides.for_year(
            2027, holidays={date(2027, 1, 1): "x"}, workdays={date(2027, 1, 1): "y"}
        )


def test_local_overrides_win_but_do_not_cover_a_year() -> None:
    local = HolidayOverrides.local(
        {
            date(2026, 10, 2): SpecialDay(DayKind.WORKDAY, "service center on duty"),
            date(2026, 11, 24): SpecialDay(DayKind.HOLIDAY, "site closed: water works"),
            date(2027, 1, 4): SpecialDay(DayKind.WORKDAY, "local"),
        }
    )
    cal = WorkCalendar(hours=NINE_TO_SIX, local=local)
    assert is_working_time(cal, sh(2026, 10, 2, 10, 0))
    assert not is_working_time(cal, sh(2026, 11, 24, 10, 0))
    assert day_verdict(cal, date(2026, 11, 24)).source == "local"
    assert is_working_day(cal, date(2027, 1, 4))  # the local day itself is known
    with pytest.raises(CalendarNotCovered):
        is_working_day(cal, date(2027, 1, 5))


def test_platform_correction_of_a_package_year() -> None:
    # A correction for one day of a year the package covers, without replacing the year.
    fix = HolidayOverrides(days={date(2026, 11, 24): SpecialDay(DayKind.HOLIDAY, "correction")})
    cal = WorkCalendar(hours=NINE_TO_SIX, platform=fix)
    assert day_verdict(cal, date(2026, 11, 24)).source == "operator"
    assert is_working_day(cal, date(2026, 10, 10))  # the package still answers the rest
    assert coverage(2026, fix).source is CoverageSource.PACKAGE


def test_projects_that_ignore_public_holidays() -> None:
    every_day = WorkingHours(
        periods=((time(8), time(20)),), weekdays=frozenset(range(7)), observe_public_holidays=False
    )
    cal = WorkCalendar(hours=every_day)
    assert is_working_time(cal, sh(2026, 10, 1, 10, 0))
    assert is_working_time(cal, sh(2027, 10, 1, 10, 0))  # no holiday data needed


def test_working_hours_validation() -> None:
    with pytest.raises(ValueError):
        WorkingHours(periods=((time(12), time(9)),))
    with pytest.raises(ValueError):
        WorkingHours(periods=((time(9), time(12)), (time(11), time(13))))
    with pytest.raises(ValueError):
        WorkingHours(periods=())
    hours = WorkingHours.parse(["08:30-12:00", "13:30-17:30"], weekdays=[0, 1, 2, 3, 4, 5])
    assert hours.as_strings() == ["08:30-12:00", "13:30-17:30"]
    assert 5 in hours.weekdays


@pytest.mark.parametrize(
    "period",
    [
        "08:00-05:00-12:00",  # read as a time with a UTC offset: a 500 when compared
        "08:00+08:00-12:00+08:00",
        "08-12",
        "0800-1200",
        "T08:00-T12:00",
        "08:00:00.5-12:00",
        "08:60-09:00",
        "24:00-24:00",
        "12:00-24:30",
    ],
)
def test_a_period_is_hh_mm_dash_hh_mm_and_nothing_looser(period: str) -> None:
    with pytest.raises(ValueError, match=re.escape(period)):
        WorkingHours.parse([period])


def test_a_period_may_end_at_24_00_and_the_day_has_no_gap() -> None:
    round_the_clock = WorkingHours.parse(["00:00-24:00"], weekdays=range(7))
    assert round_the_clock.as_strings() == ["00:00-24:00"]
    cal = WorkCalendar(
        hours=WorkingHours.parse(["00:00-24:00"], weekdays=range(7), observe_public_holidays=False)
    )
    late = sh(2026, 11, 24, 23, 59, 59) + timedelta(microseconds=999_999)
    assert is_working_time(cal, late)
    assert is_working_time(cal, sh(2026, 11, 25, 0, 0))
    # Working time runs on through midnight: a day is 24 hours of it.
    assert working_seconds_between(cal, sh(2026, 11, 24, 12, 0), sh(2026, 11, 25, 12, 0)) == 86400
    evening = WorkCalendar(
        hours=WorkingHours.parse(["18:00-24:00"], weekdays=range(7), observe_public_holidays=False)
    )
    assert next_working_start(evening, sh(2026, 11, 24, 12, 0)) == sh(2026, 11, 24, 18, 0)
    assert not is_working_time(evening, sh(2026, 11, 25, 0, 0))
    assert (
        working_seconds_between(evening, sh(2026, 11, 24, 23, 0), sh(2026, 11, 25, 19, 0))
        == 2 * 3600
    )


def test_calendar_with_no_working_days_stops() -> None:
    local = HolidayOverrides.local({})
    cal = WorkCalendar(
        hours=WorkingHours(weekdays=frozenset(), observe_public_holidays=False), local=local
    )
    with pytest.raises(ValueError, match="no working time"):
        next_working_start(cal, sh(2026, 11, 24, 10, 0))


# The dispatcher's hand-over search on New Year's Eve with no 2027 data loaded: the years
# to report are the project's local ones, from receipt to the working start found.
OFFICE = WorkCalendar(hours=WorkingHours(), uncovered=UncoveredPolicy.WEEKDAYS)


def test_new_years_eve_search_walks_into_an_uncovered_year() -> None:
    received = sh(2026, 12, 31, 23, 0)
    assert not is_working_time(OFFICE, received)
    due = next_working_start(OFFICE, received)
    # New Year's Day is a public holiday, but nobody has loaded 2027: a Friday, "working".
    assert due == sh(2027, 1, 1, 8, 30)
    assert day_verdict(OFFICE, due.astimezone(SH).date()).source == "uncovered"
    # The receipt's own year is covered; the search is what crossed into 2027.
    assert uncovered_years(OFFICE, received) == []
    assert uncovered_years(OFFICE, received, due) == [2027]
    assert uncovered_years(OFFICE, due, received) == [2027]  # either order


def test_local_new_year_while_utc_is_still_in_the_old_one() -> None:
    received = sh(2027, 1, 1, 1, 30)
    assert received.astimezone(UTC).year == 2026  # what the UTC check looked at
    assert coverage(received.astimezone(UTC).year).covered
    assert uncovered_years(OFFICE, received) == [2027]
    due = next_working_start(OFFICE, received)
    assert due == sh(2027, 1, 1, 8, 30)
    assert uncovered_years(OFFICE, received, due) == [2027]


def test_uncovered_years_across_zones_and_loaded_years() -> None:
    # At 17:30 UTC on 2026-12-31 Shanghai (UTC+8) is in 2027, Urumqi (UTC+6) not yet.
    instant = datetime(2026, 12, 31, 17, 30, tzinfo=UTC)
    urumqi = WorkCalendar(time_zone="Asia/Urumqi", uncovered=UncoveredPolicy.WEEKDAYS)
    assert uncovered_years(OFFICE, instant) == [2027]  # 01:30 on 2027-01-01 in Shanghai
    assert uncovered_years(urumqi, instant) == []  # 23:30 on 2026-12-31 in Urumqi
    # Once an operator loads 2027, nothing is guessed and New Year's Day is a day off.
    loaded = HolidayOverrides.for_year(2027, holidays={date(2027, 1, 1): "New Year's Day"})
    cal = WorkCalendar(hours=WorkingHours(), platform=loaded, uncovered=UncoveredPolicy.WEEKDAYS)
    received = sh(2026, 12, 31, 23, 0)
    due = next_working_start(cal, received)
    assert due == sh(2027, 1, 4, 8, 30)  # Friday off, then the weekend
    assert uncovered_years(cal, received, due) == []
    # A project that ignores public holidays needs no holiday data at all.
    every_day = WorkCalendar(hours=WorkingHours(observe_public_holidays=False))
    assert uncovered_years(every_day, received, sh(2028, 1, 1, 9, 0)) == []
    # Every year passed through is named, not only the first and the last.
    assert uncovered_years(OFFICE, received, sh(2029, 1, 2, 9, 0)) == [2027, 2028, 2029]
    with pytest.raises(ValueError, match="timezone-aware"):
        uncovered_years(OFFICE, datetime(2026, 12, 31, 23, 0))


def test_one_wording_for_an_uncovered_year() -> None:
    text = uncovered_warning(2027)
    assert text.startswith("no holiday data for 2027")
    assert "PUT /v1/calendars/years/2027" in text
