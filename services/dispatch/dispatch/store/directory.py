"""The tenant directory as dispatch learned it from the tenant/project/department/staff
events: upserts from the consumers, lookups for routing and assignment."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.domain.assignment import Candidate, Shift
from dispatch.domain.ownership import StaffFacts
from dispatch.domain.routing import Department
from dispatch.store.routing_cache import invalidate
from propdesk.events.contracts.tenant import (
    DepartmentUpserted,
    ProjectUpserted,
    StaffUpserted,
    TenantUpserted,
)


async def upsert_tenant(session: AsyncSession, p: TenantUpserted) -> None:
    await session.execute(
        text(
            "INSERT INTO dispatch.tenants (id, code, name, settings) VALUES"
            " (:id, :code, :name, CAST(:settings AS jsonb))"
            " ON CONFLICT (id) DO UPDATE SET code = excluded.code, name = excluded.name,"
            " settings = excluded.settings, updated_at = now()"
        ),
        {
            "id": p.tenant_id,
            "code": p.code,
            "name": p.name,
            "settings": orjson.dumps(p.settings).decode(),
        },
    )


async def upsert_project(session: AsyncSession, tenant_id: UUID, p: ProjectUpserted) -> None:
    invalidate(session)
    await session.execute(
        text(
            "INSERT INTO dispatch.projects (id, tenant_id, code, name, time_zone, calendar)"
            " VALUES (:id, :tenant_id, :code, :name, :tz, :calendar)"
            " ON CONFLICT (id) DO UPDATE SET code = excluded.code, name = excluded.name,"
            " time_zone = excluded.time_zone, calendar = excluded.calendar, updated_at = now()"
        ),
        {
            "id": p.project_id,
            "tenant_id": tenant_id,
            "code": p.code,
            "name": p.name,
            "tz": p.time_zone,
            "calendar": p.calendar,
        },
    )


async def upsert_department(session: AsyncSession, tenant_id: UUID, p: DepartmentUpserted) -> None:
    invalidate(session)
    await session.execute(
        text(
            "INSERT INTO dispatch.departments (id, tenant_id, project_id, code, name, kind)"
            " VALUES (:id, :tenant_id, :project_id, :code, :name, :kind)"
            " ON CONFLICT (id) DO UPDATE SET project_id = excluded.project_id,"
            " code = excluded.code, name = excluded.name, kind = excluded.kind,"
            " updated_at = now()"
        ),
        {
            "id": p.department_id,
            "tenant_id": tenant_id,
            "project_id": p.project_id,
            "code": p.code,
            "name": p.name,
            "kind": p.kind,
        },
    )


async def upsert_staff(session: AsyncSession, tenant_id: UUID, p: StaffUpserted) -> None:
    await session.execute(
        text(
            "INSERT INTO dispatch.staff (id, tenant_id, project_ids, department_id, name, roles,"
            " skills, active) VALUES (:id, :tenant_id, :project_ids, :department_id, :name,"
            " :roles, :skills, :active)"
            " ON CONFLICT (id) DO UPDATE SET project_ids = excluded.project_ids,"
            " department_id = excluded.department_id, name = excluded.name,"
            " roles = excluded.roles, skills = excluded.skills, active = excluded.active,"
            " updated_at = now()"
        ),
        {
            "id": p.staff_id,
            "tenant_id": tenant_id,
            "project_ids": list(p.project_ids),
            "department_id": p.department_id,
            "name": p.name,
            "roles": list(p.roles),
            "skills": list(p.skills),
            "active": p.active,
        },
    )


@dataclass(frozen=True, slots=True)
class ProjectRow:
    id: UUID
    code: str
    time_zone: str
    working_hours: dict | None


async def get_project(session: AsyncSession, project_id: UUID) -> ProjectRow | None:
    row = (
        await session.execute(
            text("SELECT id, code, time_zone, working_hours FROM dispatch.projects WHERE id = :id"),
            {"id": project_id},
        )
    ).first()
    return ProjectRow(row.id, row.code, row.time_zone, row.working_hours) if row else None


async def project_ids_by_code(session: AsyncSession) -> dict[str, UUID]:
    rows = await session.execute(text("SELECT code, id FROM dispatch.projects"))
    return {r.code: r.id for r in rows}


async def departments_for(session: AsyncSession, project_id: UUID) -> list[Department]:
    rows = await session.execute(
        text(
            "SELECT id, code, kind, project_id FROM dispatch.departments"
            " WHERE project_id = :p OR project_id IS NULL"
        ),
        {"p": project_id},
    )
    return [Department(r.id, r.code, r.kind, r.project_id) for r in rows]


async def department_by_id(session: AsyncSession, department_id: UUID) -> Department | None:
    r = (
        await session.execute(
            text("SELECT id, code, kind, project_id FROM dispatch.departments WHERE id = :id"),
            {"id": department_id},
        )
    ).first()
    return Department(r.id, r.code, r.kind, r.project_id) if r else None


OPEN_LOAD_STATES = ("dispatched", "accepted", "in_progress", "handover_pending", "reopened")


async def candidates(
    session: AsyncSession,
    project_id: UUID,
    *,
    department_id: UUID | None = None,
    role: str | None = None,
) -> list[Candidate]:
    """Staff of the project (in a department, or with a role) with their open load."""
    where = ["s.project_ids @> ARRAY[CAST(:p AS uuid)]"]
    params: dict[str, object] = {"p": project_id, "open": list(OPEN_LOAD_STATES)}
    if department_id is not None:
        where.append("s.department_id = :d")
        params["d"] = department_id
    if role is not None:
        where.append(":role = ANY (s.roles)")
        params["role"] = role
    rows = await session.execute(
        text(
            "SELECT s.id, s.department_id, s.roles, s.skills, s.active, s.last_assigned_at,"
            " (SELECT count(*) FROM dispatch.work_orders w WHERE w.tenant_id = s.tenant_id"
            "  AND w.handler_id = s.id AND w.state = ANY (:open)) AS open_load"
            " FROM dispatch.staff s WHERE " + " AND ".join(where)
        ),
        params,
    )
    return [
        Candidate(
            staff_id=r.id,
            department_id=r.department_id,
            roles=frozenset(r.roles),
            skills=frozenset(r.skills),
            active=r.active,
            open_load=r.open_load,
            last_assigned_at=r.last_assigned_at,
        )
        for r in rows
    ]


async def shifts_at(session: AsyncSession, project_id: UUID, at: datetime) -> list[Shift]:
    """Shifts of the project around `at` (enough to tell who is on duty, and whether a
    roster exists for someone at all), their times clamped to `at` ± 8 days (see
    `store.dispatching.SHIFT_TIMES`)."""
    rows = await session.execute(
        text(
            "SELECT staff_id,"
            " greatest(starts_at, CAST(:at AS timestamptz) - interval '8 days') AS starts_at,"
            " least(ends_at, CAST(:at AS timestamptz) + interval '8 days') AS ends_at"
            " FROM dispatch.roster_shifts"
            " WHERE project_id = :p AND ends_at > CAST(:at AS timestamptz) - interval '7 days'"
            " AND starts_at < CAST(:at AS timestamptz) + interval '7 days'"
        ),
        {"p": project_id, "at": at},
    )
    return [Shift(r.staff_id, r.starts_at, r.ends_at) for r in rows]


async def active_staff(session: AsyncSession, staff_ids: Iterable[UUID]) -> set[UUID]:
    """Those of `staff_ids` who are active: a shift outlives its person's leaving."""
    rows = await session.execute(
        text("SELECT id FROM dispatch.staff WHERE id = ANY(CAST(:ids AS uuid[])) AND active"),
        {"ids": list(staff_ids)},
    )
    return {r.id for r in rows}


async def mark_assigned(session: AsyncSession, staff_id: UUID, at: datetime) -> None:
    await session.execute(
        text("UPDATE dispatch.staff SET last_assigned_at = :at WHERE id = :id"),
        {"id": staff_id, "at": at},
    )


async def staff_department(session: AsyncSession, staff_id: UUID) -> UUID | None:
    return (
        await session.execute(
            text("SELECT department_id FROM dispatch.staff WHERE id = :id"), {"id": staff_id}
        )
    ).scalar_one_or_none()


async def staff_facts(session: AsyncSession, staff_id: UUID) -> StaffFacts | None:
    """What the assignment rules need to know of a staff member (None: not in the tenant)."""
    r = (
        await session.execute(
            text(
                "SELECT id, department_id, project_ids, active FROM dispatch.staff WHERE id = :id"
            ),
            {"id": staff_id},
        )
    ).first()
    if r is None:
        return None
    return StaffFacts(r.id, r.department_id, frozenset(r.project_ids), r.active)


async def department_codes(session: AsyncSession) -> dict[UUID, str]:
    """The code of each of the tenant's departments, by id."""
    rows = await session.execute(text("SELECT id, code FROM dispatch.departments"))
    return {r.id: r.code for r in rows}


async def department_ids_by_code(session: AsyncSession, code: str) -> frozenset[UUID]:
    """The departments of the tenant with this code (one per project, or tenant-wide)."""
    rows = await session.execute(
        text("SELECT id FROM dispatch.departments WHERE code = :code"), {"code": code}
    )
    return frozenset(r.id for r in rows)
