"""Validity: invalidation requests and their approval (非正常关闭审批), and flags."""

from __future__ import annotations

from uuid import UUID

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from intake.api.deps import DECIDE_ROLES, FLAG_ROLES, REQUEST_INVALIDATION_ROLES, sessions_of
from intake.api.schemas import DecisionIn, FlagIn, InvalidationIn
from intake.flows.complaint_changes import decide_invalidation, flag_complaint, request_invalidation
from propdesk.auth.dependencies import require_staff
from propdesk.tenancy import TenantContext

router = APIRouter(prefix="/v1/complaints", tags=["validity"])


def _json(status: int, body: object) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@router.post("/{complaint_id}/invalidation", status_code=201)
async def ask_invalidation(
    request: Request,
    complaint_id: UUID,
    body: InvalidationIn,
    ctx: TenantContext = require_staff(*REQUEST_INVALIDATION_ROLES),
) -> Response:
    return _json(201, await request_invalidation(sessions_of(request), ctx, complaint_id, body))


@router.post("/{complaint_id}/invalidation/approve")
async def approve(
    request: Request,
    complaint_id: UUID,
    body: DecisionIn | None = None,
    ctx: TenantContext = require_staff(*DECIDE_ROLES),
) -> Response:
    return _json(
        200,
        await decide_invalidation(
            sessions_of(request), ctx, complaint_id, body or DecisionIn(), approve=True
        ),
    )


@router.post("/{complaint_id}/invalidation/reject")
async def reject(
    request: Request,
    complaint_id: UUID,
    body: DecisionIn | None = None,
    ctx: TenantContext = require_staff(*DECIDE_ROLES),
) -> Response:
    return _json(
        200,
        await decide_invalidation(
            sessions_of(request), ctx, complaint_id, body or DecisionIn(), approve=False
        ),
    )


@router.post("/{complaint_id}/flags", status_code=201)
async def flag(
    request: Request,
    complaint_id: UUID,
    body: FlagIn,
    ctx: TenantContext = require_staff(*FLAG_ROLES),
) -> Response:
    return _json(201, await flag_complaint(sessions_of(request), ctx, complaint_id, body))
