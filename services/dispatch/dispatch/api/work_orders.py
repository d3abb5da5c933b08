"""Work-order endpoints: handlers, department heads, affairs assistants."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Query, Response
from starlette.requests import Request

from dispatch.api.deps import transaction
from dispatch.api.preconditions import (
    READ_RESPONSES,
    STEP_RESPONSES,
    IfMatch,
    etag,
    if_match,
)
from dispatch.api.schemas import (
    AcceptIn,
    CloseIn,
    FeedbackIn,
    FollowUpIn,
    HandOverIn,
    ProgressIn,
    ReassignIn,
    RejectIn,
    ReopenIn,
    ResolveIn,
    SignOffIn,
    work_order_out,
)
from dispatch.domain.lifecycle import OPEN_STATES, State, allowed_actions
from dispatch.domain.ownership import board_scope
from dispatch.flows import steps
from dispatch.store import directory
from dispatch.store import work_orders as orders
from propdesk.auth.dependencies import require_staff
from propdesk.auth.roles import Role
from propdesk.service.input_types import QueryBool
from propdesk.service.problems import ProblemError, invalid
from propdesk.service.text import NoNul
from propdesk.tenancy import TenantContext

router = APIRouter(prefix="/v1", tags=["work orders"])

R = Role
HANDLING = (
    R.HANDLER,
    R.DEPARTMENT_HEAD,
    R.DUTY_LEADER,
    R.DIRECTOR,
    R.CS_SUPERVISOR,
    R.AFFAIRS_ASSISTANT,
)
ASSISTING = (R.AFFAIRS_ASSISTANT, R.CS_SUPERVISOR, R.DIRECTOR)
HEADS = (R.DEPARTMENT_HEAD, R.DIRECTOR, R.CS_SUPERVISOR)
REASSIGNING = (R.AFFAIRS_ASSISTANT, R.CS_SUPERVISOR, R.DIRECTOR, R.DEPARTMENT_HEAD)
ANY_STAFF = tuple(r for r in Role if r is not R.OPERATOR)


def _out(wo: orders.WorkOrderRow) -> dict[str, Any]:
    return work_order_out(wo, allowed_actions=[a.value for a in allowed_actions(State(wo.state))])


def _stepped(response: Response, wo: orders.WorkOrderRow) -> dict[str, Any]:
    """A step's answer: the order after it, with its new ETag (what the next step's
    If-Match names)."""
    response.headers["ETag"] = etag(wo.seq)
    return _out(wo)


@router.get("/work-orders/mine")
async def my_work_orders(
    request: Request,
    include_closed: QueryBool = False,
    ctx: TenantContext = require_staff(*HANDLING),
) -> dict[str, Any]:
    me = steps.actor_staff_id(ctx)
    if me is None:
        raise ProblemError(
            400,
            "No staff identity",
            code="no-staff-identity",
            detail="This credential's subject is not a staff id.",
        )
    states = [s.value for s in (State if include_closed else OPEN_STATES)]
    async with transaction(request, ctx) as session:
        rows = await orders.mine(session, me, states)
    return {"items": [_out(r) for r in rows], "count": len(rows)}


@router.get("/work-orders/{work_order_id}", responses=READ_RESPONSES)
async def get_work_order(
    request: Request,
    response: Response,
    work_order_id: UUID,
    ctx: TenantContext = require_staff(*ANY_STAFF),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session:
        wo, history, owners = await steps.with_history(session, work_order_id)
    # What a step's If-Match names to apply only to the order as read (api/preconditions).
    response.headers["ETag"] = etag(wo.seq)
    return {**_out(wo), "steps": history, "owners": owners}


@router.get("/work-orders")
async def find_work_orders(
    request: Request,
    complaint_id: UUID = Query(...),
    ctx: TenantContext = require_staff(*ANY_STAFF),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session:
        wo = await orders.by_complaint(session, complaint_id)
    return {"items": [_out(wo)] if wo else [], "count": 1 if wo else 0}


@router.post("/work-orders/{work_order_id}/accept", responses=STEP_RESPONSES)
async def accept(
    request: Request,
    response: Response,
    work_order_id: UUID,
    precondition: Annotated[IfMatch, Depends(if_match)],
    body: AcceptIn | None = None,  # none, or `{}`: junk is a 400 or 422 as everywhere
    ctx: TenantContext = require_staff(*HANDLING),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session, precondition.holds(session, work_order_id):
        return _stepped(response, await steps.accept(session, ctx, work_order_id))


@router.post("/work-orders/{work_order_id}/reject", responses=STEP_RESPONSES)
async def reject(
    request: Request,
    response: Response,
    work_order_id: UUID,
    body: RejectIn,
    precondition: Annotated[IfMatch, Depends(if_match)],
    ctx: TenantContext = require_staff(*HANDLING),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session, precondition.holds(session, work_order_id):
        return _stepped(response, await steps.reject(session, ctx, work_order_id, body.reason))


@router.post("/work-orders/{work_order_id}/progress", responses=STEP_RESPONSES)
async def progress(
    request: Request,
    response: Response,
    work_order_id: UUID,
    body: ProgressIn,
    precondition: Annotated[IfMatch, Depends(if_match)],
    ctx: TenantContext = require_staff(*HANDLING),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session, precondition.holds(session, work_order_id):
        wo = await steps.progress(
            session,
            ctx,
            work_order_id,
            note=body.note,
            site_visit=body.site_visit,
            photo_refs=body.photo_refs,
        )
        return _stepped(response, wo)


@router.post("/work-orders/{work_order_id}/resolve", responses=STEP_RESPONSES)
async def resolve(
    request: Request,
    response: Response,
    work_order_id: UUID,
    body: ResolveIn,
    precondition: Annotated[IfMatch, Depends(if_match)],
    ctx: TenantContext = require_staff(*HANDLING),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session, precondition.holds(session, work_order_id):
        wo = await steps.resolve(
            session,
            ctx,
            work_order_id,
            resolution=body.resolution,
            compensation=body.compensation.model_dump() if body.compensation else None,
            decisions=body.decisions,
        )
        return _stepped(response, wo)


@router.post("/work-orders/{work_order_id}/sign-off", responses=STEP_RESPONSES)
async def sign_off(
    request: Request,
    response: Response,
    work_order_id: UUID,
    body: SignOffIn,
    precondition: Annotated[IfMatch, Depends(if_match)],
    ctx: TenantContext = require_staff(*HEADS),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session, precondition.holds(session, work_order_id):
        return _stepped(response, await steps.sign_off(session, ctx, work_order_id, body.comment))


@router.post("/work-orders/{work_order_id}/feedback", responses=STEP_RESPONSES)
async def feedback(
    request: Request,
    response: Response,
    work_order_id: UUID,
    body: FeedbackIn,
    precondition: Annotated[IfMatch, Depends(if_match)],
    ctx: TenantContext = require_staff(*ASSISTING),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session, precondition.holds(session, work_order_id):
        wo = await steps.give_feedback(
            session,
            ctx,
            work_order_id,
            channel=body.channel,
            content=body.content,
            commitment=body.commitment,
        )
        return _stepped(response, wo)


@router.post("/work-orders/{work_order_id}/follow-ups", responses=STEP_RESPONSES)
async def follow_up(
    request: Request,
    response: Response,
    work_order_id: UUID,
    body: FollowUpIn,
    precondition: Annotated[IfMatch, Depends(if_match)],
    ctx: TenantContext = require_staff(*ASSISTING),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session, precondition.holds(session, work_order_id):
        return _stepped(response, await steps.follow_up(session, ctx, work_order_id, body.note))


@router.post("/work-orders/{work_order_id}/reassign", responses=STEP_RESPONSES)
async def reassign(
    request: Request,
    response: Response,
    work_order_id: UUID,
    body: ReassignIn,
    precondition: Annotated[IfMatch, Depends(if_match)],
    ctx: TenantContext = require_staff(*REASSIGNING),
) -> dict[str, Any]:
    if body.department_code is None and body.handler_id is None:
        raise invalid(
            "body.department_code",
            "required",
            "or body.handler_id",
            detail="Name a department_code, a handler_id or both.",
        )
    async with transaction(request, ctx) as session, precondition.holds(session, work_order_id):
        wo = await steps.reassign(
            session,
            ctx,
            work_order_id,
            department_code=body.department_code,
            handler_id=body.handler_id,
            reason=body.reason,
        )
        return _stepped(response, wo)


@router.post("/work-orders/{work_order_id}/hand-over", responses=STEP_RESPONSES)
async def hand_over(
    request: Request,
    response: Response,
    work_order_id: UUID,
    body: HandOverIn,
    precondition: Annotated[IfMatch, Depends(if_match)],
    ctx: TenantContext = require_staff(*HANDLING),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session, precondition.holds(session, work_order_id):
        wo = await steps.hand_over(
            session, ctx, work_order_id, to_staff_id=body.to_staff_id, reason=body.reason
        )
        return _stepped(response, wo)


@router.post("/work-orders/{work_order_id}/close", responses=STEP_RESPONSES)
async def close(
    request: Request,
    response: Response,
    work_order_id: UUID,
    body: CloseIn,
    precondition: Annotated[IfMatch, Depends(if_match)],
    ctx: TenantContext = require_staff(*ASSISTING),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session, precondition.holds(session, work_order_id):
        wo = await steps.close(
            session, ctx, work_order_id, callback_result=body.callback_result, note=body.note
        )
        return _stepped(response, wo)


@router.post("/work-orders/{work_order_id}/reopen", responses=STEP_RESPONSES)
async def reopen(
    request: Request,
    response: Response,
    work_order_id: UUID,
    body: ReopenIn,
    precondition: Annotated[IfMatch, Depends(if_match)],
    ctx: TenantContext = require_staff(*ASSISTING),
) -> dict[str, Any]:
    async with transaction(request, ctx) as session, precondition.holds(session, work_order_id):
        return _stepped(response, await steps.reopen(session, ctx, work_order_id, body.reason))


# As long as a routing rule's `department` (a department's code or kind): a work order's
# department_code is one of them.
DepartmentCode = Annotated[
    str, Path(min_length=1, max_length=100, description="the department's code"), NoNul
]


@router.get("/departments/{code}/board")
async def department_board(
    request: Request,
    code: DepartmentCode,
    project_id: UUID | None = None,
    ctx: TenantContext = require_staff(*HEADS, R.AFFAIRS_ASSISTANT, R.QUALITY),
) -> dict[str, Any]:
    """A department's open orders: a department head sees his own department only;
    customer service, supervisors and the quality department (品质部, which runs its own
    callbacks) see every department's. A code that is no department of the caller's (nor
    on any order it may see: one routed to a department dispatch did not know) is a 404."""
    async with transaction(request, ctx) as session:
        mine = await steps.head_department(session, ctx, steps.actor_staff_id(ctx))
        of_code = await directory.department_ids_by_code(session, code)
        if not of_code and not await orders.department_code_used(session, code):
            raise ProblemError(
                404,
                "Not Found",
                code="department-not-found",
                detail=f"No department {code!r} is visible to you.",
            )
        only = board_scope(ctx.roles, mine, of_code)  # NotAllowed → 403
        states = [s.value for s in OPEN_STATES]
        rows = await orders.board(session, code, states, project_id, department_id=only)
    by_state: dict[str, int] = {}
    by_handler: dict[str, int] = {}
    for r in rows:
        by_state[r.state] = by_state.get(r.state, 0) + 1
        key = str(r.handler_id) if r.handler_id else "unassigned"
        by_handler[key] = by_handler.get(key, 0) + 1
    return {
        "department": code,
        "open": len(rows),
        "by_state": by_state,
        "by_handler": by_handler,
        "items": [_out(r) for r in rows],
    }
