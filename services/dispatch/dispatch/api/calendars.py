"""Working calendars: coverage, a project's calendar, operator-loaded years, local days."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Query
from starlette.requests import Request

from dispatch.api.deps import project_not_found, transaction
from dispatch.api.schemas import (
    FIRST_YEAR,
    LAST_YEAR,
    YEARS,
    HoursIn,
    LocalDayIn,
    PlainDate,
    YearIn,
)
from dispatch.store import calendars as store
from dispatch.store import directory
from propdesk.auth.dependencies import require_operator, require_staff, require_tenant_wide
from propdesk.auth.roles import Role
from propdesk.calendar import (
    DayKind,
    HolidayOverrides,
    UncoveredPolicy,
    WorkingHours,
    coverage,
    day_verdict,
    is_working_time,
    next_working_start,
    uncovered_warning,
)
from propdesk.service.problems import invalid
from propdesk.tenancy import TenantContext

router = APIRouter(prefix="/v1/calendars", tags=["calendars"])
ANYONE = tuple(Role)  # tenant staff and the operator
ADMINS = (Role.TENANT_ADMIN,)


def coverage_report(
    platform: HolidayOverrides, today: date, latest: date | None = None
) -> dict[str, Any]:
    """This year and next: a year nobody covers is a warning, never a silent guess. With
    `latest`, the local dates of several places run from `today` to `latest`: every year
    one of them is in, and the next, are reported."""
    last = (latest or today).year + 1
    years = [coverage(y, platform) for y in range(today.year, last + 1)]
    uncovered = [c.year for c in years if not c.covered]
    return {
        "years": [{"year": c.year, "covered": c.covered, "source": c.source.value} for c in years],
        "uncovered": uncovered,
        "warnings": [uncovered_warning(y) for y in uncovered],
    }


@router.get("/coverage")
async def get_coverage(
    request: Request, ctx: TenantContext = require_staff(*ANYONE)
) -> dict[str, Any]:
    async with transaction(request, ctx) as session:
        platform = await store.platform_overrides(session)
        loaded = await store.loaded_years(session)
    return {**coverage_report(platform, *platform_dates(datetime.now(UTC))), "loaded_years": loaded}


def platform_dates(now: datetime) -> tuple[date, date]:
    """The earliest and the latest local date on earth at `now` (UTC-12 to UTC+14): the
    platform's projects may be anywhere, and Shanghai is in the next year eight hours
    before UTC is."""
    return (now - timedelta(hours=12)).date(), (now + timedelta(hours=14)).date()


@router.put("/years/{year}")
async def load_year(
    request: Request, year: int, body: YearIn, ctx: TenantContext = require_operator()
) -> dict[str, Any]:
    raw_year = request.path_params["year"]
    if not (raw_year.isascii() and raw_year.isdigit()):
        # The path's integer check is lax: it read `2099.0` as 2099.
        raise invalid("path.year", "int_parsing", "a year of digits only, e.g. 2027")
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise invalid("path.year", "range", YEARS, detail=f"year {year} is out of range")
    try:
        HolidayOverrides.for_year(year, holidays=body.holidays, workdays=body.workdays)
    except ValueError as exc:
        raise invalid("body.holidays", "same_year_no_overlap", str(exc), detail=str(exc)) from exc
    async with transaction(request, ctx) as session:
        await store.save_year(
            session, year, body.holidays, body.workdays, source=body.source, loaded_by=ctx.actor
        )
        platform = await store.platform_overrides(session)
    c = coverage(year, platform)
    return {
        "year": year,
        "covered": c.covered,
        "source": c.source.value,
        "holidays": len(body.holidays),
        "workdays": len(body.workdays),
    }


@router.get("/{project_id}")
async def project_calendar(
    request: Request,
    project_id: UUID,
    year: Annotated[int | None, Query(ge=FIRST_YEAR, le=LAST_YEAR)] = None,
    ctx: TenantContext = require_staff(*(r for r in Role if r is not Role.OPERATOR)),
) -> dict[str, Any]:
    now = datetime.now(UTC)
    async with transaction(request, ctx) as session:
        project = await directory.get_project(session, project_id)
        if project is None:
            raise project_not_found(project_id)
        cal = await store.project_calendar(session, project_id, uncovered=UncoveredPolicy.WEEKDAYS)
        local_today = now.astimezone(cal.zone).date()  # the project's year, not UTC's
        days = await store.list_local_days(session, project_id, year or local_today.year)
    report = coverage_report(cal.platform, local_today)
    today = day_verdict(cal, local_today)
    return {
        "project_id": project_id,
        "time_zone": cal.time_zone,
        "hours": store.hours_record(cal.hours),
        "local_days": days,
        "now": {
            "working_time": is_working_time(cal, now),
            "day": {"working": today.working, "name": today.name, "source": today.source},
            "next_working_start": next_working_start(cal, now),
        },
        # Readiness-independent: the service stays ready; the warning is here to be seen.
        "coverage": report["years"],
        "warnings": report["warnings"],
    }


@router.put("/{project_id}/hours")
async def put_hours(
    request: Request, project_id: UUID, body: HoursIn, ctx: TenantContext = require_staff(*ADMINS)
) -> dict[str, Any]:
    try:
        hours = WorkingHours.parse(
            body.periods,
            weekdays=body.weekdays,
            observe_public_holidays=body.observe_public_holidays,
        )
    except ValueError as exc:
        # `rule` is machine-readable; the message says what is wrong with which period.
        raise invalid(
            "body.periods",
            "format",
            f"{exc} (periods are HH:MM-HH:MM, in order, not overlapping)",
            detail=str(exc),
        ) from exc
    async with transaction(request, ctx) as session:
        if not await store.set_working_hours(session, project_id, hours):
            raise project_not_found(project_id)
    return {"project_id": project_id, "hours": store.hours_record(hours)}


@router.put("/{project_id}/days/{day}")
async def put_local_day(
    request: Request,
    project_id: UUID,
    day: Annotated[PlainDate, Path(description=f"YYYY-MM-DD, a year {YEARS}")],
    body: LocalDayIn,
    ctx: TenantContext = require_staff(*ADMINS),
) -> dict[str, Any]:
    assert ctx.tenant_id is not None
    if body.tenant_wide:
        require_tenant_wide(ctx, "A day off or working day for every project")
    async with transaction(request, ctx) as session:
        if await directory.get_project(session, project_id) is None:
            raise project_not_found(project_id)
        await store.put_local_day(
            session,
            ctx.tenant_id,
            None if body.tenant_wide else project_id,
            day,
            DayKind(body.kind),
            body.name,
        )
    return {
        "day": day,
        "kind": body.kind,
        "name": body.name,
        "scope": "tenant" if body.tenant_wide else "project",
    }
