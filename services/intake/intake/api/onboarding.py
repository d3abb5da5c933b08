"""`POST /v1/onboarding`: load a whole company from one YAML or JSON document.

A tenant admin for every project of the company may (re)load it (one limited to some
projects may not: the document is the whole company); the platform operator may load any,
new companies included. The answer says what was created, changed or left unchanged."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from intake.api.deps import sessions_of
from intake.onboarding.apply import TenantMismatch, apply_document
from intake.onboarding.document import DocumentError, parse_document
from propdesk.auth.dependencies import authenticate, authorize, require_tenant_wide
from propdesk.auth.roles import Role
from propdesk.service.problems import ProblemError, utf8_error
from propdesk.service.request_context import bind_tenant

router = APIRouter(prefix="/v1", tags=["onboarding"])


@router.post(
    "/onboarding",
    openapi_extra={
        "requestBody": {
            "content": {"application/yaml": {"schema": {"type": "string"}}},
            "required": True,
        }
    },
)
async def onboard(request: Request) -> Response:
    ctx = await authenticate(request)
    is_operator = ctx.has_role(Role.OPERATOR)
    authorize(ctx, (Role.OPERATOR,) if is_operator else (Role.TENANT_ADMIN,))
    bind_tenant(ctx)
    # The document is the whole company (every project, department, staff member): an
    # admin of some projects must not change the others.
    require_tenant_wide(ctx, "Onboarding")
    raw = await request.body()
    # YAML is a superset of JSON: one parser serves both and keeps line numbers. Composing
    # and validating are Python (a second or so for the largest body taken): in a worker
    # thread, so the event loop goes on serving every other request meanwhile.
    try:
        doc = await run_in_threadpool(parse_document, raw)
    except UnicodeDecodeError as exc:
        raise ProblemError(
            400,
            "Bad Request",
            code="bad-encoding",
            detail="The document must be UTF-8.",
            errors=[utf8_error(exc)],
        ) from None
    except DocumentError as exc:
        raise ProblemError(
            422,
            "Invalid onboarding document",
            code="invalid-document",
            detail=str(exc),
            errors=[i.as_field_error() for i in exc.issues],  # type: ignore[misc]
        ) from None
    try:
        report = await apply_document(
            sessions_of(request),
            doc,
            actor=ctx.actor,
            only_tenant_id=None if is_operator else ctx.tenant_id,
        )
    except TenantMismatch:
        raise ProblemError(
            403,
            "Forbidden",
            code="other-tenant",
            detail="A tenant admin may onboard only their own company.",
        ) from None
    return Response(orjson.dumps(report.as_dict()), media_type="application/json")
