"""Plain data for working calendars: working hours, special days, whole-year overrides.

A project's calendar is decided in three layers, most specific first:

1. `local`: the tenant's and the project's own days (a site closed for a local event,
   a Saturday the service center works). They never make a year "covered".
2. `platform`: years the operator loaded (`PUT /v1/calendars/years/{year}` in dispatch)
   because the `chinese-calendar` package does not know them yet. Loading a year
   declares its list of holidays and make-up working days complete.
3. the `chinese-calendar` package (public holidays and 调休 make-up working days).

A date in a year that no layer covers is *uncovered*: by default the calendar raises
`CalendarNotCovered`, so nobody silently computes a deadline across an unknown Spring
Festival. A caller that must keep going (an SLA clock) can choose `UncoveredPolicy.WEEKDAYS`
and report the gap itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, time
from enum import StrEnum
from types import MappingProxyType
from zoneinfo import ZoneInfo


class DayKind(StrEnum):
    HOLIDAY = "holiday"  # a day off, even when it falls Monday to Friday
    WORKDAY = "workday"  # a working day, even when it falls on a weekend (调休 上班)


class UncoveredPolicy(StrEnum):
    RAISE = "raise"
    WEEKDAYS = "weekdays"  # treat the configured weekdays as working days, holidays unknown


class CalendarNotCovered(LookupError):
    """Raised for a date in a year that neither the package nor an operator load covers."""

    def __init__(self, year: int) -> None:
        super().__init__(
            f"no holiday data for year {year}: load it with PUT /v1/calendars/years/{year}"
        )
        self.year = year


@dataclass(frozen=True, slots=True)
class SpecialDay:
    kind: DayKind
    name: str = ""


def _frozen(days: Mapping[date, SpecialDay]) -> Mapping[date, SpecialDay]:
    return MappingProxyType(dict(days))


@dataclass(frozen=True, slots=True)
class HolidayOverrides:
    """date → holiday | workday, plus the years this data declares complete."""

    days: Mapping[date, SpecialDay] = field(default_factory=lambda: MappingProxyType({}))
    complete_years: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.days, MappingProxyType):
            object.__setattr__(self, "days", _frozen(self.days))

    @classmethod
    def for_year(
        cls,
        year: int,
        *,
        holidays: Mapping[date, str],
        workdays: Mapping[date, str] | None = None,
    ) -> HolidayOverrides:
        """A complete year as the operator loads it (the State Council's notice)."""
        workdays = workdays or {}
        days: dict[date, SpecialDay] = {}
        for d, name in holidays.items():
            _check_year(d, year)
            days[d] = SpecialDay(DayKind.HOLIDAY, name)
        for d, name in workdays.items():
            _check_year(d, year)
            if d in days:
                raise ValueError(f"{d} is listed both as a holiday and as a working day")
            days[d] = SpecialDay(DayKind.WORKDAY, name)
        return cls(days=days, complete_years=frozenset({year}))

    @classmethod
    def local(cls, days: Mapping[date, SpecialDay]) -> HolidayOverrides:
        """Tenant or project days: they override, but never complete a year."""
        return cls(days=days)

    def merged(self, *more_specific: HolidayOverrides) -> HolidayOverrides:
        """These overrides with `more_specific` layered on top (later wins)."""
        days = dict(self.days)
        years = set(self.complete_years)
        for layer in more_specific:
            days.update(layer.days)
            years |= layer.complete_years
        return HolidayOverrides(days=days, complete_years=frozenset(years))


def _check_year(d: date, year: int) -> None:
    if d.year != year:
        raise ValueError(f"{d} is not in year {year}")


EMPTY = HolidayOverrides()


# "HH:MM-HH:MM", spaces around the dash allowed: what `as_strings` writes, nothing looser
# (`time.fromisoformat` also took "08", "0800", "T08:00" and times with a UTC offset).
_PERIOD = re.compile(r"\s*(\d{2}):(\d{2})\s*-\s*(\d{2}):(\d{2})\s*")
# A period's end "24:00": the day's last instant, read by the clock as the next midnight.
END_OF_DAY = time.max


@dataclass(frozen=True, slots=True)
class WorkingHours:
    """The working periods of a working day, in the project's local time.

    Default 08:30-12:00 and 13:30-17:30, Monday to Friday: the customer-service office
    hours most of the seed procedures assume; each project sets its own.
    """

    periods: tuple[tuple[time, time], ...] = (
        (time(8, 30), time(12, 0)),
        (time(13, 30), time(17, 30)),
    )
    weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    observe_public_holidays: bool = True

    def __post_init__(self) -> None:
        if not self.periods:
            raise ValueError("working hours need at least one period")
        previous_end: time | None = None
        for start, end in self.periods:
            if not start < end:
                raise ValueError(f"period {start}-{end} must start before it ends")
            if previous_end is not None and start < previous_end:
                raise ValueError("periods must be in order and must not overlap")
            previous_end = end
        if not self.weekdays <= frozenset(range(7)):
            raise ValueError("weekdays are 0 (Monday) to 6 (Sunday)")

    @classmethod
    def parse(
        cls,
        periods: Iterable[str],
        *,
        weekdays: Iterable[int] = (0, 1, 2, 3, 4),
        observe_public_holidays: bool = True,
    ) -> WorkingHours:
        """From strings such as "08:30-12:00" (ValueError for anything else); a period may
        end at "24:00", the end of the day (`END_OF_DAY`)."""
        parsed = []
        for p in periods:
            found = _PERIOD.fullmatch(p)
            if found is None:
                raise ValueError(f"period {p!r} is not HH:MM-HH:MM")
            sh, sm, eh, em = (int(g) for g in found.groups())
            if sh > 23 or sm > 59 or em > 59 or eh > 24 or (eh == 24 and em != 0):
                raise ValueError(f"period {p!r} names a time of day that does not exist")
            parsed.append((time(sh, sm), END_OF_DAY if eh == 24 else time(eh, em)))
        return cls(
            periods=tuple(parsed),
            weekdays=frozenset(weekdays),
            observe_public_holidays=observe_public_holidays,
        )

    def as_strings(self) -> list[str]:
        return [
            f"{s:%H:%M}-{'24:00' if e == END_OF_DAY else f'{e:%H:%M}'}" for s, e in self.periods
        ]


@dataclass(frozen=True, slots=True)
class WorkCalendar:
    """Everything needed to answer "is this instant working time?" for one project."""

    time_zone: str = "Asia/Shanghai"
    hours: WorkingHours = field(default_factory=WorkingHours)
    platform: HolidayOverrides = EMPTY
    local: HolidayOverrides = EMPTY
    uncovered: UncoveredPolicy = UncoveredPolicy.RAISE
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "zone", ZoneInfo(self.time_zone))
