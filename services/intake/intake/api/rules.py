"""`/v1/rules`: read and replace the tenant's classification rules (category keywords,
grade keywords, group and duplicate windows, received_at bounds, second-complaint window).

The stored document holds only the tenant's overrides; `effective` is what intake applies
(defaults merged, see `intake.domain.rules`). PUT replaces the overrides as a whole, is
refused field by field when invalid (`body.<path>`), and is recorded with who and when in
`intake.rules_changes`, as are the rules an onboarding document sets. Recording reads
the rules per request, so a change applies to the next complaint. No event: only intake
classifies, so no other service needs to know.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Body
from starlette.requests import Request
from starlette.responses import Response

from intake import directory_cache
from intake.api.deps import sessions_of
from intake.domain.rules import RulesError, TenantRules
from intake.flows.record_complaint import load_rules
from intake.store import tenants as directory
from propdesk.auth.dependencies import require_staff, require_tenant_wide
from propdesk.auth.roles import Role
from propdesk.db.session import tenant_transaction
from propdesk.service.problems import ProblemError
from propdesk.tenancy import TenantContext

router = APIRouter(prefix="/v1/rules", tags=["rules"])

RULES_ROLES = (Role.TENANT_ADMIN, Role.CS_SUPERVISOR)


def _json(body: object) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def _answer(overrides: dict[str, Any], history: list[Any]) -> dict[str, Any]:
    return {
        "overrides": overrides,
        "effective": load_rules(overrides).to_overrides(),
        "changes": [{"at": h.at.isoformat(), "actor": h.actor, "rules": h.rules} for h in history],
    }


@router.get("")
async def get_rules(request: Request, ctx: TenantContext = require_staff(*RULES_ROLES)) -> Response:
    assert ctx.tenant_id is not None
    async with tenant_transaction(sessions_of(request), ctx) as s:
        overrides, _settings = await directory.tenant_rules(s, ctx.tenant_id)
        history = await directory.rules_history(s)
    return _json(_answer(overrides, history))


@router.put("")
async def put_rules(
    request: Request,
    body: dict[str, Any] = Body(..., description="The tenant's rule overrides (a JSON object)"),
    ctx: TenantContext = require_staff(*RULES_ROLES),
) -> Response:
    assert ctx.tenant_id is not None
    # The rules are the company's; a supervisor of some projects must not change them for
    # the others.
    require_tenant_wide(ctx, "Changing the rules")
    try:
        TenantRules.from_written_overrides(body)
    except RulesError as exc:
        errors = [
            {**e, "field": "body" + e["field"].removeprefix("rules")} for e in exc.as_field_errors()
        ]
        raise ProblemError(
            422,
            "Request validation failed",
            code="invalid-rules",
            detail="; ".join(f"{e['field']}: {e['message']}" for e in errors),
            errors=errors,
        ) from None
    async with tenant_transaction(sessions_of(request), ctx) as s:
        current = await directory.locked_rules(s, ctx.tenant_id)
        if current is None:
            raise ProblemError(404, "Not Found", code="tenant-not-found", detail="No such tenant.")
        previous = dict(current.rules or {})
        if previous != body:
            await directory.replace_rules(s, ctx.tenant_id, body, previous, ctx.actor)
        history = await directory.rules_history(s)
    # After commit, so a recording running meanwhile cannot put the old rules back.
    directory_cache.invalidate_tenant(ctx.tenant_id)
    return _json(_answer(body, history))
