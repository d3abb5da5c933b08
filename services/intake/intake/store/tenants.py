"""The tenant directory: companies, projects, buildings, units, departments, staff."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import Row, Table, bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from intake.store.tables import buildings, projects, rules_changes, staff, tenants, units


async def tenant_id_by_code(session: AsyncSession, code: str) -> UUID | None:
    """Resolve a company code before any tenant context exists (operator tools)."""
    return (
        await session.execute(text("SELECT intake.tenant_id_by_code(:c)"), {"c": code})
    ).scalar_one_or_none()


async def locked_tenant(session: AsyncSession, tenant_id: UUID) -> Row | None:
    """The tenant's row, locked until the transaction ends (`PUT /v1/rules` writes it too)
    as its update would lock it: FOR NO KEY UPDATE, which a new project's key check passes."""
    q = select(tenants).where(tenants.c.id == tenant_id).with_for_update(key_share=True)
    return (await session.execute(q)).first()


async def tenant_rules(session: AsyncSession, tenant_id: UUID) -> tuple[dict, dict]:
    """(rules overrides, settings) of the tenant; empty when it has none."""
    row = (
        await session.execute(
            select(tenants.c.rules, tenants.c.settings).where(tenants.c.id == tenant_id)
        )
    ).first()
    if row is None:
        return {}, {}
    return dict(row.rules or {}), dict(row.settings or {})


async def locked_rules(session: AsyncSession, tenant_id: UUID) -> Row | None:
    """The tenant's stored rule overrides, locked until the transaction ends."""
    q = (
        select(tenants.c.rules, tenants.c.updated_at)
        .where(tenants.c.id == tenant_id)
        .with_for_update()
    )
    return (await session.execute(q)).first()


async def replace_rules(
    session: AsyncSession, tenant_id: UUID, rules: dict[str, Any], previous: dict, actor: str
) -> None:
    await session.execute(
        update(tenants).where(tenants.c.id == tenant_id).values(rules=rules, updated_at=func.now())
    )
    await record_rules_change(session, tenant_id, previous, rules, actor)


async def record_rules_change(
    session: AsyncSession, tenant_id: UUID, previous: dict, rules: dict[str, Any], actor: str
) -> None:
    """Who changed the tenant's rules, from what to what (`GET /v1/rules` lists them)."""
    await session.execute(
        rules_changes.insert().values(
            tenant_id=tenant_id, actor=actor, previous=previous, rules=rules
        )
    )


async def rules_history(session: AsyncSession, limit: int = 20) -> list[Row]:
    q = select(rules_changes).order_by(rules_changes.c.id.desc()).limit(limit)
    return list(await session.execute(q))


async def project_by_ref(session: AsyncSession, ref: str) -> Row | None:
    """A project by its code or its id, among the projects the context may see."""
    try:
        as_id: UUID | None = UUID(ref)
    except ValueError:
        as_id = None
    cond = projects.c.id == as_id if as_id is not None else projects.c.code == ref
    return (await session.execute(select(projects).where(cond))).first()


async def project_by_id(session: AsyncSession, project_id: UUID) -> Row | None:
    return (await session.execute(select(projects).where(projects.c.id == project_id))).first()


async def project_ids_by_codes(session: AsyncSession, codes: list[str]) -> dict[str, UUID]:
    rows = await session.execute(
        select(projects.c.code, projects.c.id).where(projects.c.code.in_(codes))
    )
    return {r.code: r.id for r in rows}


# Built once at import: the recording path runs them per complaint (on a cache miss), and
# SQLAlchemy then reuses their compiled form without building and hashing a new construct.
_PROJECT_UNITS = (
    select(
        units.c.id,
        units.c.project_id,
        units.c.code.label("room"),
        buildings.c.code.label("building"),
        buildings.c.name.label("building_name"),
    )
    .join(buildings, buildings.c.id == units.c.building_id)
    .where(units.c.project_id == bindparam("project_id"))
    # Redundant for the result, not for the plan: without it PostgreSQL scanned every
    # building of the tenant (2.3 ms with 400 projects) instead of the project's.
    .where(buildings.c.project_id == bindparam("project_id"))
)


async def project_units(session: AsyncSession, project_id: UUID) -> list[Row]:
    """Every unit of the project: id, project_id, room, building (code), building_name."""
    return list(await session.execute(_PROJECT_UNITS, {"project_id": project_id}))


async def row_by_key(session: AsyncSession, table: Table, **key: Any) -> Row | None:
    q = select(table)
    for name, value in key.items():
        q = q.where(table.c[name] == value)
    return (await session.execute(q)).first()


async def insert_row(session: AsyncSession, table: Table, values: dict[str, Any]) -> None:
    await session.execute(table.insert().values(**values))


async def update_row(
    session: AsyncSession, table: Table, row_id: UUID, values: dict[str, Any]
) -> None:
    if "updated_at" in table.c:
        values = {**values, "updated_at": func.now()}
    await session.execute(update(table).where(table.c.id == row_id).values(**values))


async def staff_by_code(session: AsyncSession, code: str) -> Row | None:
    """A staff member of the tenant in context, by their code."""
    return (await session.execute(select(staff).where(staff.c.code == code))).first()
