"""Reads of the directory for `/v1/projects`, `/v1/departments` and `/v1/staff`.

Thin queries over the onboarded tables. Each runs in the caller's `tenant_transaction`, so
row-level security decides which tenant's rows, and which projects' rows, exist at all:
projects, buildings and units of other projects (and departments bound to them) are not
seen by a credential limited to some projects, nor are staff who serve none of its
projects (their policy reads the list of projects each member serves).
Lists are ordered by code (unique per tenant) and paged by "after this code".
"""

from __future__ import annotations

from uuid import UUID

from sqlalchemy import Row, func, or_, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import UUID as PG_UUID
from sqlalchemy.ext.asyncio import AsyncSession

from intake.store.tables import buildings, departments, projects, staff, units

_UUIDS = ARRAY(PG_UUID(as_uuid=True))

_BUILDING_COUNT = (
    select(func.count())
    .select_from(buildings)
    .where(buildings.c.project_id == projects.c.id)
    .scalar_subquery()
)
_UNIT_COUNT = (
    select(func.count()).select_from(units).where(units.c.project_id == projects.c.id)
).scalar_subquery()

_PROJECT_COLUMNS = (
    projects.c.id,
    projects.c.code,
    projects.c.name,
    projects.c.city,
    projects.c.time_zone,
    projects.c.calendar,
    _BUILDING_COUNT.label("building_count"),
    _UNIT_COUNT.label("unit_count"),
)


async def list_projects(session: AsyncSession, *, after: str | None, limit: int) -> list[Row]:
    """The projects the context may see, by code: id, code, name, city, time_zone,
    calendar, building_count, unit_count."""
    q = select(*_PROJECT_COLUMNS).order_by(projects.c.code).limit(limit)
    if after is not None:
        q = q.where(projects.c.code > after)
    return list(await session.execute(q))


async def get_project(session: AsyncSession, ref: UUID | str) -> Row | None:
    """One project the context may see, by id (a UUID) or code (a str); the columns of
    `list_projects`."""
    cond = projects.c.id == ref if isinstance(ref, UUID) else projects.c.code == ref
    return (await session.execute(select(*_PROJECT_COLUMNS).where(cond))).first()


async def project_codes(session: AsyncSession) -> dict[UUID, str]:
    """id → code of every project the context may see."""
    return {r.id: r.code for r in await session.execute(select(projects.c.id, projects.c.code))}


async def project_buildings(session: AsyncSession, project_id: UUID) -> list[Row]:
    """The project's buildings by code: id, code, name, unit_count."""
    unit_count = (
        select(func.count())
        .select_from(units)
        .where(units.c.building_id == buildings.c.id)
        .scalar_subquery()
    )
    q = (
        select(buildings.c.id, buildings.c.code, buildings.c.name, unit_count.label("unit_count"))
        .where(buildings.c.project_id == project_id)
        .order_by(buildings.c.code)
    )
    return list(await session.execute(q))


async def project_units(
    session: AsyncSession,
    project_id: UUID,
    *,
    building: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[Row]:
    """A page of the project's units by building code and unit code: building, code.
    `building`: that building's only; `after`: the (building, unit) a page ended with."""
    q = (
        select(buildings.c.code.label("building"), units.c.code)
        .select_from(units.join(buildings, buildings.c.id == units.c.building_id))
        .where(units.c.project_id == project_id)
        .order_by(buildings.c.code, units.c.code)
        .limit(limit)
    )
    if building is not None:
        q = q.where(buildings.c.code == building)
    if after is not None:
        q = q.where(tuple_(buildings.c.code, units.c.code) > tuple_(*after))
    return list(await session.execute(q))


async def list_departments(
    session: AsyncSession, *, serving: UUID | None, after: str | None, limit: int | None
) -> list[Row]:
    """Departments the context may see, by code: id, code, name, kind, project_id,
    project_code (None for a department of every project). `serving`: only those that
    serve that project (its own and the company-wide ones). `limit` None: all of them."""
    q = (
        select(
            departments.c.id,
            departments.c.code,
            departments.c.name,
            departments.c.kind,
            departments.c.project_id,
            projects.c.code.label("project_code"),
        )
        .select_from(departments.outerjoin(projects, projects.c.id == departments.c.project_id))
        .order_by(departments.c.code)
        .limit(limit)
    )
    if serving is not None:
        q = q.where(or_(departments.c.project_id == serving, departments.c.project_id.is_(None)))
    if after is not None:
        q = q.where(departments.c.code > after)
    return list(await session.execute(q))


async def department_id_by_code(session: AsyncSession, code: str) -> UUID | None:
    """A department the context may see, by code."""
    q = select(departments.c.id).where(departments.c.code == code)
    return (await session.execute(q)).scalar_one_or_none()


async def list_staff(
    session: AsyncSession,
    *,
    project_id: UUID | None,
    department_id: UUID | None,
    role: str | None,
    active: bool | None,
    after: str | None,
    limit: int,
) -> list[Row]:
    """Staff by code: id, code, name, roles, department_id, department_code (None when the
    member has none, or when it is a department the context does not see), project_ids,
    active.

    Row-level security keeps a credential limited to some projects to the members serving
    one of them and those of every project (intake migration 0010). `project_id` keeps
    those of that project and those of every project."""
    q = (
        select(
            staff.c.id,
            staff.c.code,
            staff.c.name,
            staff.c.roles,
            staff.c.department_id,
            departments.c.code.label("department_code"),
            staff.c.project_ids,
            staff.c.active,
        )
        .select_from(staff.outerjoin(departments, departments.c.id == staff.c.department_id))
        .order_by(staff.c.code)
        .limit(limit)
    )
    every_project = func.cardinality(staff.c.project_ids) == 0
    if project_id is not None:
        q = q.where(or_(every_project, staff.c.project_ids.any_() == project_id))
    if department_id is not None:
        q = q.where(staff.c.department_id == department_id)
    if role is not None:
        q = q.where(staff.c.roles.any_() == role)
    if active is not None:
        q = q.where(staff.c.active.is_(active))
    if after is not None:
        q = q.where(staff.c.code > after)
    return list(await session.execute(q))
