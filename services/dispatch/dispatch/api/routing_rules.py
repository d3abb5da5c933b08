"""The tenant's routing rules, and a dry run that says where a complaint would go."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import Response

from dispatch.api.deps import transaction
from dispatch.api.schemas import Body, CategoryName, GradeName, RoutingRuleIn
from dispatch.domain.ownership import StaffFacts
from dispatch.domain.routing import RoutingInput, RoutingRule, resolve_department, route
from dispatch.store import directory
from dispatch.store import routing_rules as store
from propdesk.auth.dependencies import require_staff, require_tenant_wide
from propdesk.auth.roles import Role
from propdesk.service.problems import ProblemError, field_error, invalid
from propdesk.tenancy import TenantContext

router = APIRouter(prefix="/v1/routing-rules", tags=["routing"])
EDITORS = (Role.TENANT_ADMIN, Role.DIRECTOR, Role.CS_SUPERVISOR)
READERS = (*EDITORS, Role.AFFAIRS_ASSISTANT, Role.DEPARTMENT_HEAD)
RuleId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the rule's id")]


def _rule_from(body: RoutingRuleIn, rule_id: int = 0) -> RoutingRule:
    return RoutingRule(
        id=rule_id,
        department=body.department,
        category=body.category,
        grade=body.grade,
        building=body.building,
        place=body.place,
        project_id=body.project_id,
        handler_role=str(body.handler_role) if body.handler_role else None,
        handler_staff_id=body.handler_staff_id,
        inform=tuple(body.inform),
        priority=body.priority,
        note=body.note,
        source="api",
    )


def _out(rule: RoutingRule) -> dict[str, Any]:
    out = asdict(rule)
    out["inform"] = list(rule.inform)
    return out


def _check_scope(ctx: TenantContext, body: RoutingRuleIn) -> None:
    """A credential of some projects makes rules for those projects only (a rule without a
    project is every project's: `require_tenant_wide`)."""
    if body.project_id is None:
        require_tenant_wide(ctx, _EVERY_PROJECT)
    elif ctx.project_ids is not None and body.project_id not in ctx.project_ids:
        # One answer whether or not the project exists: nothing about others' projects.
        raise invalid(
            "body.project_id",
            "in_scope",
            "not one of the caller's projects",
            detail="The rule's project is not one this credential may make rules for.",
        )


async def _check_references(session: AsyncSession, body: RoutingRuleIn) -> None:
    """The project, the departments and the staff member a rule names must be the
    tenant's (a rule naming anything else would send complaints nowhere). An unknown
    project is said alone: its departments would only be judged against the wrong list."""
    if (
        body.project_id is not None
        and await directory.get_project(session, body.project_id) is None
    ):
        raise invalid(
            "body.project_id",
            "exists",
            "unknown project",
            detail=f"No project {body.project_id}.",
        )
    known = await store.department_names(session, body.project_id)
    errors = [
        field_error(f"body.{where}", "reference", f"no department with code or kind {name!r}")
        for where, name in (
            ("department", body.department),
            *((f"inform[{i}]", code) for i, code in enumerate(body.inform)),
        )
        if name not in known
    ]
    if body.handler_staff_id:
        member = await directory.staff_facts(session, body.handler_staff_id)
        if member is None or not member.active:
            errors.append(
                field_error(
                    "body.handler_staff_id", "reference", "no active staff member with this id"
                )
            )
        elif not errors:
            unfit = await _handler_unfit(session, body, member)
            if unfit is not None:
                errors.append(field_error("body.handler_staff_id", *unfit))
    if errors:
        raise ProblemError(
            422,
            "Request validation failed",
            code="validation-failed",
            detail="The rule names what the tenant does not have.",
            errors=errors,
        )


async def _handler_unfit(
    session: AsyncSession, body: RoutingRuleIn, member: StaffFacts
) -> tuple[str, str] | None:
    """(rule, message) when the rule's named handler could never receive what it routes:
    dispatch gives the order to the named handler only if he is staff of the department
    the rule resolves to in the complaint's project, else it ignores him without a word.
    A project's rule: he works on that project, in its department of that code or kind
    (`covers_project`, `in_department`). A rule of every project: in the department it
    resolves to in at least one of his projects (`in_department`)."""
    if body.project_id is not None:
        if body.project_id not in member.project_ids:
            return "covers_project", "the handler does not work on the rule's project"
        projects: Iterable[UUID] = (body.project_id,)
    else:
        projects = member.project_ids
    for project_id in projects:
        department = resolve_department(
            body.department, project_id, await directory.departments_for(session, project_id)
        )
        if department is not None and department.id == member.department_id:
            return None
    return (
        "in_department",
        f"the handler is not staff of the department {body.department!r} routes to",
    )


# A rule without a project routes every project's complaints: only a credential for every
# project of the company may make, change or remove one (row-level security shows such
# rules to a credential of some projects, as they apply to its projects too).
_EVERY_PROJECT = "A routing rule for every project"


async def _for_every_project_check(session: AsyncSession, ctx: TenantContext, rule_id: int) -> None:
    """Locks the rule: a change making it every project's meanwhile is waited for and seen
    (else a credential of some projects could change it back, or be told it is gone)."""
    rule = await store.get_rule(session, rule_id, for_update=True)
    if rule is not None and rule.project_id is None:
        require_tenant_wide(ctx, _EVERY_PROJECT)


def _not_found(rule_id: int) -> ProblemError:
    return ProblemError(
        404, "Not Found", code="routing-rule-not-found", detail=f"No routing rule {rule_id}."
    )


@router.get("")
async def list_rules(
    request: Request, project_id: UUID | None = None, ctx: TenantContext = require_staff(*READERS)
) -> dict[str, Any]:
    async with transaction(request, ctx) as session:
        rules = await store.rules_for(session, project_id)
    return {"items": [_out(r) for r in rules], "count": len(rules)}


@router.post(
    "",
    status_code=201,
    responses={200: {"description": "The same rule exists already: that rule, nothing made"}},
)
async def create_rule(
    request: Request,
    response: Response,
    body: RoutingRuleIn,
    ctx: TenantContext = require_staff(*EDITORS),
) -> dict[str, Any]:
    """A new rule (201); a rule saying exactly the same already made through this API is
    that rule (200), so a retry, or two requests at once, make one rule."""
    assert ctx.tenant_id is not None
    _check_scope(ctx, body)
    new = _rule_from(body)
    async with transaction(request, ctx) as session:
        await _check_references(session, body)
        await store.lock_api_rules(session, ctx.tenant_id)
        rule_id = await store.same_api_rule(session, new)
        if rule_id is None:
            rule_id = await store.insert_rule(session, ctx.tenant_id, new, ctx.actor)
        else:
            response.status_code = 200
        rule = await store.get_rule(session, rule_id)
    assert rule is not None  # written in the caller's scope (`_check_scope`), so visible
    return _out(rule)


@router.put("/{rule_id}")
async def update_rule(
    request: Request,
    rule_id: RuleId,
    body: RoutingRuleIn,
    ctx: TenantContext = require_staff(*EDITORS),
) -> dict[str, Any]:
    _check_scope(ctx, body)
    async with transaction(request, ctx) as session:
        await _for_every_project_check(session, ctx, rule_id)
        await _check_references(session, body)
        if not await store.update_rule(session, rule_id, _rule_from(body, rule_id)):
            raise _not_found(rule_id)
        rule = await store.get_rule(session, rule_id)
    assert rule is not None
    return _out(rule)


@router.delete("/{rule_id}", status_code=204)
async def delete_rule(
    request: Request, rule_id: RuleId, ctx: TenantContext = require_staff(*EDITORS)
) -> Response:
    async with transaction(request, ctx) as session:
        await _for_every_project_check(session, ctx, rule_id)
        if not await store.delete_rule(session, rule_id):
            raise _not_found(rule_id)
    return Response(status_code=204)


class PreviewIn(Body):
    project_id: UUID
    category: CategoryName
    grade: GradeName = "simple"
    building: str | None = Field(default=None, min_length=1, max_length=64)
    place: str | None = Field(default=None, min_length=1, max_length=100)


@router.post("/preview")
async def preview(
    request: Request, body: PreviewIn, ctx: TenantContext = require_staff(*READERS)
) -> dict[str, Any]:
    """Which rule would route this complaint, and why (nothing is stored). The project is
    one the caller may see: as a rule's (`_check_scope`, `in_scope`), and one dispatch
    knows (`exists`, as a roster shift's), else the answer would be made up."""
    if ctx.project_ids is not None and body.project_id not in ctx.project_ids:
        raise invalid("body.project_id", "in_scope", "not one of the caller's projects")
    async with transaction(request, ctx) as session:
        if await directory.get_project(session, body.project_id) is None:
            raise invalid("body.project_id", "exists", "unknown project")
        rules = await store.rules_for(session, body.project_id)
    decision = route(
        RoutingInput(body.project_id, body.category, body.grade, body.building, body.place),
        rules,
    )
    return decision.as_record()
