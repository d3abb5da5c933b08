"""Stored routing rules: the tenant's own (API) and the onboarding file's."""

from __future__ import annotations

from dataclasses import asdict
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.domain.routing import RoutingRule
from dispatch.store.routing_cache import invalidate

_COLUMNS = (
    "id, project_id, category, grade, building, place, department, handler_role,"
    " handler_staff_id, inform, priority, note, source"
)


def _rule(r) -> RoutingRule:
    return RoutingRule(
        id=r.id,
        department=r.department,
        category=r.category,
        grade=r.grade,
        building=r.building,
        place=r.place,
        project_id=r.project_id,
        handler_role=r.handler_role,
        handler_staff_id=r.handler_staff_id,
        inform=tuple(r.inform),
        priority=r.priority,
        note=r.note,
        source=r.source,
    )


async def rules_for(session: AsyncSession, project_id: UUID | None = None) -> list[RoutingRule]:
    """The tenant's rules (RLS scopes the tenant); with a project, only those that apply."""
    if project_id is None:
        rows = await session.execute(
            text(f"SELECT {_COLUMNS} FROM dispatch.routing_rules ORDER BY id")
        )
    else:
        rows = await session.execute(
            text(
                f"SELECT {_COLUMNS} FROM dispatch.routing_rules"
                " WHERE project_id = :p OR project_id IS NULL ORDER BY id"
            ),
            {"p": project_id},
        )
    return [_rule(r) for r in rows]


async def get_rule(
    session: AsyncSession, rule_id: int, *, for_update: bool = False
) -> RoutingRule | None:
    """The rule; `for_update`: locked until the transaction ends, so what a change checked
    of it (its project) is what it changes (a change committed meanwhile is waited for and
    read)."""
    sql = f"SELECT {_COLUMNS} FROM dispatch.routing_rules WHERE id = :id"
    r = (
        await session.execute(text(sql + (" FOR UPDATE" if for_update else "")), {"id": rule_id})
    ).first()
    return _rule(r) if r else None


async def lock_api_rules(session: AsyncSession, tenant_id: UUID) -> None:
    """Until the transaction ends, the tenant's other rule creations wait: two requests
    for one rule at once (a retry, two supervisors) see each other (`same_api_rule`)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"dispatch.routing_rules:{tenant_id}"},
    )


async def same_api_rule(session: AsyncSession, rule: RoutingRule) -> int | None:
    """The lowest id of an API rule (RLS: the tenant's, in the caller's scope) that says
    exactly what `rule` says, or None."""
    params = _params(rule)
    params.pop("source")
    return (
        await session.execute(
            text(
                "SELECT id FROM dispatch.routing_rules WHERE source = 'api'"
                " AND project_id IS NOT DISTINCT FROM :project_id"
                " AND category IS NOT DISTINCT FROM :category"
                " AND grade IS NOT DISTINCT FROM :grade"
                " AND building IS NOT DISTINCT FROM :building"
                " AND place IS NOT DISTINCT FROM :place AND department = :department"
                " AND handler_role IS NOT DISTINCT FROM :handler_role"
                " AND handler_staff_id IS NOT DISTINCT FROM :handler_staff_id"
                " AND inform = CAST(:inform AS text[]) AND priority = :priority"
                " AND note = :note ORDER BY id LIMIT 1"
            ),
            params,
        )
    ).scalar_one_or_none()


def _params(rule: RoutingRule) -> dict:
    p = asdict(rule)
    p.pop("id")
    p["inform"] = list(rule.inform)
    return p


async def insert_rule(
    session: AsyncSession, tenant_id: UUID, rule: RoutingRule, created_by: str
) -> int:
    invalidate(session)
    return (
        await session.execute(
            text(
                "INSERT INTO dispatch.routing_rules (tenant_id, project_id, category, grade,"
                " building, place, department, handler_role, handler_staff_id, inform,"
                " priority, note, source, created_by) VALUES (:tenant_id, :project_id,"
                " :category, :grade, :building, :place, :department, :handler_role,"
                " :handler_staff_id, :inform, :priority, :note, :source, :created_by)"
                " RETURNING id"
            ),
            {**_params(rule), "tenant_id": tenant_id, "created_by": created_by},
        )
    ).scalar_one()


async def update_rule(session: AsyncSession, rule_id: int, rule: RoutingRule) -> bool:
    invalidate(session)
    params = _params(rule)
    params.pop("source")
    result = await session.execute(
        text(
            "UPDATE dispatch.routing_rules SET project_id = :project_id, category = :category,"
            " grade = :grade, building = :building, place = :place, department = :department,"
            " handler_role = :handler_role, handler_staff_id = :handler_staff_id,"
            " inform = :inform, priority = :priority, note = :note, updated_at = now()"
            " WHERE id = :id"
        ),
        {**params, "id": rule_id},
    )
    return bool(result.rowcount)


async def delete_rule(session: AsyncSession, rule_id: int) -> bool:
    invalidate(session)
    result = await session.execute(
        text("DELETE FROM dispatch.routing_rules WHERE id = :id"), {"id": rule_id}
    )
    return bool(result.rowcount)


async def replace_onboarding_rules(
    session: AsyncSession, tenant_id: UUID, rules: list[RoutingRule]
) -> None:
    """The onboarding file is the truth for its own rules; API-made rules stay."""
    invalidate(session)
    await session.execute(text("DELETE FROM dispatch.routing_rules WHERE source = 'onboarding'"))
    for rule in rules:
        await insert_rule(session, tenant_id, rule, "onboarding")


async def department_names(session: AsyncSession, project_id: UUID | None) -> set[str]:
    """The codes and kinds a rule may name as its department (`resolve_department` matches
    either): the tenant's departments (RLS), or, for a project's rule, the project's and
    the tenant-wide ones."""
    sql = "SELECT code, kind FROM dispatch.departments"
    if project_id is not None:
        sql += " WHERE project_id = :p OR project_id IS NULL"
    rows = await session.execute(text(sql), {"p": project_id})
    return {name for r in rows for name in (r.code, r.kind)}
