"""Stored calendar data: operator-loaded years, tenant/project local days, working hours;
and the assembly of a project's `WorkCalendar` from them."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.store.directory import get_project
from dispatch.store.routing_cache import invalidate
from propdesk.calendar import (
    DayKind,
    HolidayOverrides,
    SpecialDay,
    UncoveredPolicy,
    WorkCalendar,
    WorkingHours,
)


async def platform_overrides(session: AsyncSession) -> HolidayOverrides:
    rows = await session.execute(
        text("SELECT year, holidays, workdays FROM dispatch.platform_calendar_years")
    )
    merged = HolidayOverrides()
    for r in rows:
        merged = merged.merged(
            HolidayOverrides.for_year(
                r.year,
                holidays={date.fromisoformat(k): v for k, v in r.holidays.items()},
                workdays={date.fromisoformat(k): v for k, v in r.workdays.items()},
            )
        )
    return merged


async def loaded_years(session: AsyncSession) -> list[dict]:
    rows = await session.execute(
        text(
            "SELECT year, source, loaded_by, loaded_at,"
            " (SELECT count(*) FROM jsonb_object_keys(holidays)) AS h,"
            " (SELECT count(*) FROM jsonb_object_keys(workdays)) AS w"
            " FROM dispatch.platform_calendar_years"
            " ORDER BY year"
        )
    )
    return [
        {
            "year": r.year,
            "source": r.source,
            "loaded_by": r.loaded_by,
            "loaded_at": r.loaded_at,
            "holidays": r.h,
            "workdays": r.w,
        }
        for r in rows
    ]


async def save_year(
    session: AsyncSession,
    year: int,
    holidays: dict[date, str],
    workdays: dict[date, str],
    *,
    source: str,
    loaded_by: str,
) -> None:
    invalidate(session)
    await session.execute(
        text(
            "INSERT INTO dispatch.platform_calendar_years"
            " (year, holidays, workdays, source, loaded_by)"
            " VALUES (:y, CAST(:h AS jsonb), CAST(:w AS jsonb), :s, :by)"
            " ON CONFLICT (year) DO UPDATE SET holidays = excluded.holidays,"
            " workdays = excluded.workdays, source = excluded.source,"
            " loaded_by = excluded.loaded_by, loaded_at = now()"
        ),
        {
            "y": year,
            "h": orjson.dumps({d.isoformat(): n for d, n in holidays.items()}).decode(),
            "w": orjson.dumps({d.isoformat(): n for d, n in workdays.items()}).decode(),
            "s": source,
            "by": loaded_by,
        },
    )


async def local_days(session: AsyncSession, project_id: UUID) -> HolidayOverrides:
    """Tenant-wide days, with the project's own days on top."""
    rows = await session.execute(
        text(
            "SELECT project_id, day, kind, name FROM dispatch.calendar_days"
            " WHERE project_id = :p OR project_id IS NULL"
            " ORDER BY project_id NULLS FIRST"
        ),
        {"p": project_id},
    )
    days = {r.day: SpecialDay(DayKind(r.kind), r.name) for r in rows}
    return HolidayOverrides.local(days)


async def list_local_days(session: AsyncSession, project_id: UUID, year: int) -> list[dict]:
    rows = await session.execute(
        text(
            "SELECT project_id, day, kind, name FROM dispatch.calendar_days"
            " WHERE (project_id = :p OR project_id IS NULL)"
            " AND day >= make_date(:y, 1, 1) AND day < make_date(:y + 1, 1, 1) ORDER BY day"
        ),
        {"p": project_id, "y": year},
    )
    return [
        {
            "day": r.day,
            "kind": r.kind,
            "name": r.name,
            "scope": "project" if r.project_id else "tenant",
        }
        for r in rows
    ]


async def put_local_day(
    session: AsyncSession,
    tenant_id: UUID,
    project_id: UUID | None,
    day: date,
    kind: DayKind,
    name: str,
) -> None:
    invalidate(session)
    await session.execute(
        text(
            "INSERT INTO dispatch.calendar_days (tenant_id, project_id, day, kind, name)"
            " VALUES (:t, :p, :d, :k, :n)"
            " ON CONFLICT (tenant_id,"
            " coalesce(project_id, '00000000-0000-0000-0000-000000000000'::uuid), day)"
            " DO UPDATE SET kind = excluded.kind, name = excluded.name"
        ),
        {"t": tenant_id, "p": project_id, "d": day, "k": kind.value, "n": name},
    )


async def set_working_hours(session: AsyncSession, project_id: UUID, hours: WorkingHours) -> bool:
    invalidate(session)
    result = await session.execute(
        text(
            "UPDATE dispatch.projects SET working_hours = CAST(:h AS jsonb), updated_at = now()"
            " WHERE id = :id"
        ),
        {"id": project_id, "h": orjson.dumps(hours_record(hours)).decode()},
    )
    return bool(result.rowcount)


def hours_record(hours: WorkingHours) -> dict:
    return {
        "periods": hours.as_strings(),
        "weekdays": sorted(hours.weekdays),
        "observe_public_holidays": hours.observe_public_holidays,
    }


def hours_from_record(record: dict | None) -> WorkingHours:
    if not record:
        return WorkingHours()
    return WorkingHours.parse(
        record["periods"],
        weekdays=record.get("weekdays", (0, 1, 2, 3, 4)),
        observe_public_holidays=record.get("observe_public_holidays", True),
    )


async def project_calendar(
    session: AsyncSession,
    project_id: UUID,
    *,
    uncovered: UncoveredPolicy = UncoveredPolicy.RAISE,
    platform: HolidayOverrides | None = None,
) -> WorkCalendar:
    """The project's calendar; an unknown project gets the platform defaults (Shanghai)."""
    project = await get_project(session, project_id)
    return WorkCalendar(
        time_zone=project.time_zone if project else "Asia/Shanghai",
        hours=hours_from_record(project.working_hours if project else None),
        platform=platform if platform is not None else await platform_overrides(session),
        local=await local_days(session, project_id),
        uncovered=uncovered,
    )
