from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, BeforeValidator, Field

from propdesk.auth.dependencies import require_staff
from propdesk.db.session import tenant_transaction
from propdesk.service.plain_dates import plain_date
from propdesk.service.problems import ProblemError, field_error
from propdesk.tenancy import TenantContext
from reporting import activity

# A query parameter the endpoint does not take (`?project_id=`) is refused by every
# service app (`propdesk.service.query_params`), not ignored.
router = APIRouter(prefix="/v1", tags=["activity"])

MAX_RANGE_DAYS = 366
DEFAULT_DAYS = 30
# The furthest ahead of UTC a project's clock can be (Kiribati, UTC+14).
LATEST_OFFSET = timedelta(hours=14)
# The calendar the platform knows (dispatch's working calendars: years 2000-2100). Days
# outside it hold nothing to count, and near date's own ends the default range would not
# even be computable (`to` minus 30 days before year 1).
FIRST_DAY = date(2000, 1, 1)
LAST_DAY = date(2100, 12, 31)
# A day of the platform's calendar, YYYY-MM-DD: `date_parsing`, then `greater_than_equal` /
# `less_than_equal` (the bounds on the date itself, so their messages name the days).
LocalDay = Annotated[date, Field(ge=FIRST_DAY, le=LAST_DAY), BeforeValidator(plain_date)]


def utc_now() -> datetime:
    """The clock the default range is read from (a dependency: tests set the hour)."""
    return datetime.now(UTC)


def default_range(now: datetime, since: date | None, until: date | None) -> tuple[date, date]:
    """The days asked for, or by default the last `DEFAULT_DAYS` up to today. Days are
    each project's local days, and the server's clock is not a project's: from 16:00 UTC
    it is already tomorrow in Shanghai. So "today" is the latest date anywhere (a project
    behind UTC simply has nothing counted on that day yet)."""
    until = until or (now.astimezone(UTC) + LATEST_OFFSET).date()
    return since or max(until - timedelta(days=DEFAULT_DAYS), FIRST_DAY), until


def range_problem(since: date, until: date, *, until_given: bool) -> ProblemError | None:
    """The days asked for, checked: `from` not after `to`, at most MAX_RANGE_DAYS apart.
    The field named is one the caller sent: `from` when `to` is the default (today)."""
    to = f"'to' ({until})" if until_given else f"'to' (default: today, {until})"
    if since > until:
        return ProblemError(
            422,
            "Invalid date range",
            code="invalid-range",
            detail=f"'from' ({since}) is after {to}.",
            errors=[
                field_error("query.from", "before_or_equal_to", "'from' must not be after 'to'")
            ],
        )
    if (until - since).days > MAX_RANGE_DAYS:
        return ProblemError(
            422,
            "Date range too long",
            code="invalid-range",
            detail=f"'from' ({since}) is {(until - since).days} days before {to}; "
            f"at most {MAX_RANGE_DAYS}.",
            errors=[
                field_error(
                    "query.to" if until_given else "query.from",
                    "max_days",
                    f"at most {MAX_RANGE_DAYS} days",
                )
            ],
        )
    return None


class ActivityRow(BaseModel):
    project_id: UUID
    project_code: str | None
    day: date
    event_type: str
    count: int


@router.get("/activity", response_model=list[ActivityRow])
async def get_activity(
    request: Request,
    since: Annotated[
        LocalDay | None,
        Query(
            alias="from",
            description="first local day, YYYY-MM-DD (default: 30 days before `to`,"
            " from 2000-01-01)",
        ),
    ] = None,
    until: Annotated[
        LocalDay | None,
        Query(
            alias="to",
            description="last local day, YYYY-MM-DD (default: today, the latest date of"
            " any time zone)",
        ),
    ] = None,
    project_id: UUID | None = Query(None, alias="project"),
    ctx: TenantContext = require_staff(),
    now: datetime = Depends(utc_now),
) -> list[dict]:
    until_given = until is not None
    since, until = default_range(now, since, until)
    if (problem := range_problem(since, until, until_given=until_given)) is not None:
        raise problem
    async with tenant_transaction(request.app.state.resources.sessions, ctx) as session:
        return await activity.activity(session, since=since, until=until, project_id=project_id)
