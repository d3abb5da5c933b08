"""`/v1/api-keys`: a tenant admin creates, lists and revokes the company's API keys. The
secret is in the creation answer only; the service keeps its sha256.

An admin limited to some projects never hands out more than it holds: its keys are limited
to its projects unless it names some of them (a project outside them is a 403 naming the
field), and it lists and revokes only keys limited to its projects (a whole-company key,
or another project's, answers 404 as if it did not exist). The `propdesk apikey` command
is the operator's tool and is not limited."""

from __future__ import annotations

from uuid import UUID

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from intake import apikey_cache
from intake.api.deps import sessions_of
from intake.api.schemas import ApiKeyIn
from intake.store import apikeys
from intake.store import tenants as directory
from propdesk.auth.dependencies import require_staff
from propdesk.auth.roles import Role
from propdesk.db.session import tenant_transaction
from propdesk.service.problems import ProblemError, field_error, invalid
from propdesk.tenancy import TenantContext

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


def _json(status: int, body: object) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _outside_scope(field: str, ref: str) -> ProblemError:
    return ProblemError(
        403,
        "Forbidden",
        code="project-out-of-scope",
        detail=f"{field}: {ref!r} is not one of the projects this credential may give a key for.",
        errors=[field_error(field, "in_scope", "not one of the caller's projects")],
    )


@router.post("", status_code=201)
async def create_key(
    request: Request, body: ApiKeyIn, ctx: TenantContext = require_staff(Role.TENANT_ADMIN)
) -> Response:
    async with tenant_transaction(sessions_of(request), ctx) as s:
        # A caller limited to some projects gets a key limited to them, never a wider one.
        project_ids = sorted(ctx.project_ids) if ctx.project_ids is not None else None
        if body.projects is not None:
            project_ids = []
            for i, ref in enumerate(body.projects):
                found = await directory.project_by_ref(s, ref)
                if ctx.project_ids is not None and (
                    found is None or found.id not in ctx.project_ids
                ):
                    # RLS hides the caller's other projects: one answer whether the project
                    # is outside its scope or does not exist.
                    raise _outside_scope(f"body.projects.{i}", ref)
                if found is None:
                    raise invalid(
                        f"body.projects.{i}",
                        "exists",
                        "unknown project",
                        detail=f"unknown project {ref!r}",
                    )
                if found.id in project_ids:
                    # By code and by id, or twice: a list of projects names each once.
                    raise invalid(
                        f"body.projects.{i}",
                        "unique",
                        "names a project listed before",
                        detail=f"project {ref!r} is listed twice",
                    )
                project_ids.append(found.id)
        assert ctx.tenant_id is not None
        new = await apikeys.create_key(
            s,
            tenant_id=ctx.tenant_id,
            name=body.name,
            project_ids=project_ids,
            created_by=ctx.actor,
            rate_limit_per_minute=body.rate_limit_per_minute,
        )
    return _json(
        201,
        {
            "id": str(new.id),
            "key_id": new.key_id,
            "name": body.name,
            "key": new.secret,
            "project_ids": [str(p) for p in project_ids] if project_ids is not None else None,
            "rate_limit_per_minute": body.rate_limit_per_minute,
            "note": "The key is shown once; store it now.",
        },
    )


@router.get("")
async def list_keys(
    request: Request, ctx: TenantContext = require_staff(Role.TENANT_ADMIN)
) -> Response:
    async with tenant_transaction(sessions_of(request), ctx) as s:
        rows = await apikeys.list_keys(s)
    return _json(
        200,
        {
            "items": [
                {
                    "id": str(r.id),
                    "key_id": r.key_id,
                    "name": r.name,
                    "project_ids": [str(p) for p in r.project_ids]
                    if r.project_ids is not None
                    else None,
                    "roles": list(r.roles),
                    "rate_limit_per_minute": r.rate_limit_per_minute,
                    "created_by": r.created_by,
                    "created_at": r.created_at.isoformat(),
                    "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None,
                }
                for r in rows
            ]
        },
    )


@router.delete("/{key_row_id}", status_code=204)
async def revoke_key(
    request: Request, key_row_id: UUID, ctx: TenantContext = require_staff(Role.TENANT_ADMIN)
) -> Response:
    async with tenant_transaction(sessions_of(request), ctx) as s:
        if not await apikeys.revoke(s, key_row_id):
            raise ProblemError(404, "Not Found", code="api-key-not-found")
    apikey_cache.CACHE.revoked()  # committed: no process accepts the key any more
    return Response(status_code=204)
