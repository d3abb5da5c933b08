"""Request and response bodies of the dispatch API (kept apart from the tables)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic_core import PydanticCustomError

from propdesk.auth.roles import Role
from propdesk.events.contracts.vocabulary import CATEGORIES, GRADES
from propdesk.service.input_types import JSON_INT, Instant, JsonBool, JsonInt
from propdesk.service.plain_dates import plain_date
from propdesk.service.text import NO_NUL_MESSAGE, NO_NUL_RULE, has_nul

# Required text (a reason, a note, a resolution): surrounding whitespace is dropped, and
# text that is only whitespace is too short (`string_too_short`), as intake's.
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
# A photo's reference (an upload id or a URL), never empty and never a whole document.
PhotoRef = Annotated[str, StringConstraints(min_length=1, max_length=500)]
# A department's code or kind, as a routing rule's `department` and a board's path.
DepartmentName = Annotated[str, StringConstraints(min_length=1, max_length=100)]

# The years a calendar may hold (an operator-loaded year, a local day, a shift): the
# platform's calendar data starts in 2000 and plans no further than 2100. Beyond them
# PostgreSQL stores ±infinity (or a year Python cannot read back), never a real day.
FIRST_YEAR, LAST_YEAR = 2000, 2100
YEARS = f"between {FIRST_YEAR} and {LAST_YEAR}"
MAX_SHIFT = timedelta(days=7)  # longer is a typo (a month, a year), not a shift


def out_of_years(value: date | datetime) -> bool:
    """A date, or an instant in its own offset's calendar, outside FIRST_YEAR..LAST_YEAR."""
    return not FIRST_YEAR <= value.year <= LAST_YEAR


def calendar_day(value: Any) -> date:
    """A day (`plain_date`: YYYY-MM-DD and nothing more) of a year between FIRST_YEAR and
    LAST_YEAR: rules `date_parsing`, `range`."""
    day = plain_date(value)
    if out_of_years(day):
        raise PydanticCustomError("range", f"a date {YEARS}")
    return day


PlainDate = Annotated[date, BeforeValidator(calendar_day)]
DayName = Annotated[str, Field(max_length=200)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        """Text PostgreSQL can store: a NUL anywhere in a field (or in the strings of its
        list or mapping) is a 422 naming the field, rule `no_nul`."""
        if _holds_nul(value):
            raise PydanticCustomError(NO_NUL_RULE, NO_NUL_MESSAGE)
        return value


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return has_nul(value)
    if isinstance(value, list | tuple):
        return any(_holds_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    return False


class RejectIn(Body):
    reason: Text


class ProgressIn(Body):
    note: Text
    site_visit: JsonBool = False
    photo_refs: list[PhotoRef] = Field(default_factory=list, max_length=50)


class CompensationIn(Body):
    amount: str = Field(
        pattern=r"^\d{1,12}(\.\d{1,2})?$", description="in yuan, e.g. 200.00 (at most 12 digits)"
    )
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$", description="ISO 4217, e.g. CNY")
    description: Text


class ResolveIn(Body):
    resolution: Text
    compensation: CompensationIn | None = None
    decisions: list[Text] = Field(
        default_factory=list,
        max_length=50,
        description="plan or finance decisions that need approval",
    )


class SignOffIn(Body):
    comment: str | None = Field(default=None, max_length=4000)


class FeedbackIn(Body):
    channel: Literal["phone", "sms", "wechat", "visit", "letter", "email", "app"]
    content: Text
    commitment: str | None = Field(default=None, max_length=4000)


class FollowUpIn(Body):
    note: Text


class ReassignIn(Body):
    department_code: DepartmentName | None = None
    handler_id: UUID | None = None
    reason: Text


class HandOverIn(Body):
    to_staff_id: UUID
    reason: Text


class CloseIn(Body):
    callback_result: Literal["satisfied", "basically_satisfied", "dissatisfied"] = Field(
        description="the callback's result (回访); dissatisfied is refused with 409: reopen"
    )
    note: str | None = Field(default=None, max_length=4000)


class ReopenIn(Body):
    reason: Text


NOT_STAFF_ROLES = frozenset({Role.OPERATOR, Role.INTEGRATION})
STAFF_ROLES = ", ".join(repr(r.value) for r in Role if r not in NOT_STAFF_ROLES)

# What complaint events carry (a rule naming anything else could never match).
CategoryName = Literal[CATEGORIES]  # type: ignore[valid-type]
GradeName = Literal[GRADES]  # type: ignore[valid-type]


class RoutingRuleIn(Body):
    department: str = Field(min_length=1, max_length=100, description="department code or kind")
    category: CategoryName | None = None
    grade: GradeName | None = None
    building: str | None = Field(default=None, min_length=1, max_length=64)
    place: str | None = Field(default=None, min_length=1, max_length=100)
    project_id: UUID | None = None
    handler_role: Role | None = None
    handler_staff_id: UUID | None = None
    inform: list[DepartmentName] = Field(default_factory=list, max_length=20)
    priority: Annotated[int, Field(ge=-1000, le=1000), JSON_INT] = 0
    note: str = Field(default="", max_length=1000)

    @field_validator("handler_role", mode="after")
    @classmethod
    def _staff_role(cls, value: Role | None) -> Role | None:
        """A role some staff member can have: no one on a department's roster is the
        platform's operator or a partner system's key."""
        if value in NOT_STAFF_ROLES:
            raise PydanticCustomError("enum", f"Input should be a staff role: {STAFF_ROLES}")
        return value

    @field_validator("inform", mode="after")
    @classmethod
    def _inform_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise PydanticCustomError("unique", "each department at most once")
        return value


class YearIn(Body):
    # At least one: every year's schedule has holidays, and a year loaded empty would count
    # as covered, silencing the warning that it is not.
    holidays: dict[PlainDate, DayName] = Field(
        min_length=1, description="date → holiday name (days off)"
    )
    workdays: dict[PlainDate, DayName] = Field(
        default_factory=dict, description="date → name of make-up working days (调休上班)"
    )
    source: str = Field(default="", max_length=500, description="e.g. the State Council notice")


class HoursIn(Body):
    periods: list[str] = Field(min_length=1, examples=[["08:30-12:00", "13:30-17:30"]])
    # At least one: with no working day the next working start never comes (the calendar
    # gives up after three years), so after-hours orders would wait for a hand-over to the
    # service center forever and the calendar's own view could not say when work resumes.
    weekdays: list[JsonInt] = Field(
        default=[0, 1, 2, 3, 4], min_length=1, description="0 (Monday) to 6 (Sunday), each once"
    )
    observe_public_holidays: JsonBool = True

    @field_validator("weekdays", mode="after")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(not 0 <= d <= 6 for d in value):
            raise PydanticCustomError("range", "weekdays are 0 (Monday) to 6 (Sunday)")
        if len(set(value)) != len(value):
            raise PydanticCustomError("unique", "each weekday at most once")
        return value


class LocalDayIn(Body):
    kind: Literal["holiday", "workday"]
    name: DayName = ""
    tenant_wide: JsonBool = False


class ShiftIn(Body):
    staff_id: UUID
    project_id: UUID
    starts_at: Instant = Field(description=f"with a UTC offset, a year {YEARS}")
    ends_at: Instant = Field(
        description=f"with a UTC offset, after starts_at, at most {MAX_SHIFT.days} days later"
    )
    note: str | None = Field(default=None, max_length=1000)

    @field_validator("starts_at", "ends_at", mode="after")
    @classmethod
    def _in_years(cls, value: datetime) -> datetime:
        if out_of_years(value):
            raise PydanticCustomError("range", f"a time {YEARS}")
        return value


class AcceptIn(Body):
    """Accepting takes nothing; a body, if sent, is an empty JSON object (or null)."""


def work_order_out(row: Any, **extra: Any) -> dict[str, Any]:
    out = row.as_dict()
    out.update(extra)
    return out
