"""The steps people take on a work order. Each runs inside the caller's tenant
transaction: lock the row, check the transition and the actor, change the row, append
the step (and owner change), and queue the event in the outbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.domain.lifecycle import Action, State, next_state
from dispatch.domain.ownership import (
    SUPERVISING_ROLES,
    NotAllowed,
    OwnerChange,
    check_approval,
    check_handler,
    check_owner_or_supervisor,
    owner_change_on_accept,
)
from dispatch.domain.routing import resolve_department
from dispatch.flows.events import event
from dispatch.store import directory
from dispatch.store import work_orders as orders
from dispatch.store.work_orders import WorkOrderRow
from propdesk.bus import Outbox
from propdesk.events import Envelope
from propdesk.events.contracts import work_order as ev
from propdesk.tenancy import TenantContext

OUTBOX = Outbox("dispatch")


class WorkOrderNotFound(LookupError):
    pass


class InvalidStep(ValueError):
    """Input that names something that does not exist or does not fit (a 422)."""

    def __init__(self, field: str, rule: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.rule = rule
        self.message = message


def actor_staff_id(ctx: TenantContext) -> UUID | None:
    try:
        return UUID(ctx.actor)
    except ValueError:
        return None


async def load(session: AsyncSession, work_order_id: UUID, *, lock: bool) -> WorkOrderRow:
    wo = await orders.get(session, work_order_id, lock=lock)
    if wo is None:
        # RLS hides other tenants' and other projects' orders: they are simply not found.
        raise WorkOrderNotFound(str(work_order_id))
    return wo


EventBuilder = Callable[[WorkOrderRow], Envelope]
Mutation = Callable[[WorkOrderRow, datetime], tuple[list[EventBuilder], dict[str, Any]]]


async def _step(
    session: AsyncSession,
    ctx: TenantContext,
    work_order_id: UUID,
    action: Action,
    mutate: Mutation,
    *,
    check: Callable[[WorkOrderRow], None] | None = None,
    now: datetime | None = None,
) -> WorkOrderRow:
    now = now or datetime.now(UTC)
    wo = await load(session, work_order_id, lock=True)
    before = State(wo.state)
    after = next_state(before, action)  # IllegalTransition → 409 naming `before`
    if check is not None:
        check(wo)
    wo.seq += 1
    envelopes, details = mutate(wo, now)
    wo.state = after.value
    # Events are built after the state is set, so they carry the new state.
    built = [build(wo) for build in envelopes]
    await orders.save(session, wo)
    await orders.append_step(
        session,
        wo,
        action=action.value,
        from_state=before.value,
        actor=ctx.actor,
        at=now,
        details=details,
    )
    await OUTBOX.add(session, *built)
    return wo


def _owner_event(change: OwnerChange, actor: str) -> EventBuilder:
    return lambda w: event(
        ev.WorkOrderHandedOver,
        w,
        change.at,
        actor,
        from_owner_id=change.from_staff_id,
        to_owner_id=change.to_staff_id,
        to_department_id=change.to_department_id,
        kind=change.kind,
        reason=change.reason,
    )


async def accept(
    session: AsyncSession, ctx: TenantContext, work_order_id: UUID, *, now: datetime | None = None
) -> WorkOrderRow:
    me = actor_staff_id(ctx)
    changes: list[OwnerChange] = []

    def mutate(wo: WorkOrderRow, at: datetime):
        acceptor = me or wo.handler_id
        view = wo.view()
        if acceptor is not None:
            change = owner_change_on_accept(view, acceptor, at)
            if change is not None:
                changes.append(change)
                wo.owner_id = change.to_staff_id
        if view.state is State.HANDOVER_PENDING:
            wo.handler_id = wo.pending_handover_to
            if wo.pending_handover_department_id:
                wo.department_id = wo.pending_handover_department_id
            wo.pending_handover_to = None
            wo.pending_handover_department_id = None
        elif me is not None and wo.handler_id is None:
            wo.handler_id = me
        wo.accepted_at = wo.accepted_at or at
        built = [
            lambda w: event(ev.WorkOrderAccepted, w, at, ctx.actor, dispatched_at=w.dispatched_at)
        ]
        built += [_owner_event(c, ctx.actor) for c in changes]
        return built, {}

    wo = await _step(
        session,
        ctx,
        work_order_id,
        Action.ACCEPT,
        mutate,
        check=lambda w: _guard(check_handler, w, me, ctx),
        now=now,
    )
    for change in changes:
        await orders.append_owner(session, wo, change)
    return wo


def _guard(fn, wo: WorkOrderRow, me: UUID | None, ctx: TenantContext) -> None:
    fn(wo.view(), me, ctx.roles)


async def reject(
    session: AsyncSession, ctx: TenantContext, work_order_id: UUID, reason: str
) -> WorkOrderRow:
    me = actor_staff_id(ctx)

    def mutate(wo: WorkOrderRow, at: datetime):
        if wo.state == State.HANDOVER_PENDING:
            # A declined hand-over: the owner keeps the case.
            wo.pending_handover_to = None
            wo.pending_handover_department_id = None
        return [
            lambda w: event(ev.WorkOrderRejected, w, at, ctx.actor, reason=reason, rejected_by=me)
        ], {"reason": reason}

    return await _step(
        session,
        ctx,
        work_order_id,
        Action.REJECT,
        mutate,
        check=lambda w: _guard(check_handler, w, me, ctx),
    )


async def progress(
    session: AsyncSession,
    ctx: TenantContext,
    work_order_id: UUID,
    *,
    note: str,
    site_visit: bool,
    photo_refs: list[str],
) -> WorkOrderRow:
    me = actor_staff_id(ctx)

    def mutate(wo: WorkOrderRow, at: datetime):
        return [
            lambda w: event(
                ev.WorkOrderProgressed,
                w,
                at,
                ctx.actor,
                note=note,
                site_visit=site_visit,
                photo_refs=photo_refs,
            )
        ], {"note": note, "site_visit": site_visit, "photo_refs": photo_refs}

    return await _step(
        session,
        ctx,
        work_order_id,
        Action.PROGRESS,
        mutate,
        check=lambda w: _guard(check_handler, w, me, ctx),
    )


async def resolve(
    session: AsyncSession,
    ctx: TenantContext,
    work_order_id: UUID,
    *,
    resolution: str,
    compensation: dict[str, Any] | None,
    decisions: list[str],
) -> WorkOrderRow:
    me = actor_staff_id(ctx)

    def check(wo: WorkOrderRow) -> None:
        check_handler(wo.view(), me, ctx.roles)
        check_approval(compensation, decisions, ctx.roles)

    approved_by = ctx.actor if (compensation is not None or decisions) else None

    def mutate(wo: WorkOrderRow, at: datetime):
        wo.resolution = resolution
        wo.compensation = compensation
        wo.resolved_at = at
        details = {
            "resolution": resolution,
            "compensation": compensation,
            "decisions": decisions,
            "approved_by": approved_by,
        }
        return [
            lambda w: event(
                ev.WorkOrderResolved,
                w,
                at,
                ctx.actor,
                resolution=resolution,
                compensation=compensation,
                decisions=decisions,
                approved_by=approved_by,
            )
        ], details

    return await _step(session, ctx, work_order_id, Action.RESOLVE, mutate, check=check)


async def sign_off(
    session: AsyncSession, ctx: TenantContext, work_order_id: UUID, comment: str | None
) -> WorkOrderRow:
    me = actor_staff_id(ctx)
    my_department = await directory.staff_department(session, me) if me else None

    def check(wo: WorkOrderRow) -> None:
        if ctx.roles & SUPERVISING_ROLES:
            return
        if "department_head" in ctx.roles and my_department == wo.department_id:
            return
        raise NotAllowed("only the head of the responsible department may sign off")

    def mutate(wo: WorkOrderRow, at: datetime):
        wo.signed_off_at = at
        return [
            lambda w: event(
                ev.WorkOrderSignedOff, w, at, ctx.actor, signed_by=ctx.actor, comment=comment
            )
        ], {"comment": comment}

    return await _step(session, ctx, work_order_id, Action.SIGN_OFF, mutate, check=check)


async def give_feedback(
    session: AsyncSession,
    ctx: TenantContext,
    work_order_id: UUID,
    *,
    channel: str,
    content: str,
    commitment: str | None,
) -> WorkOrderRow:
    def mutate(wo: WorkOrderRow, at: datetime):
        first = wo.first_feedback_at is None
        result = wo.state == State.SIGNED_OFF
        wo.first_feedback_at = wo.first_feedback_at or at
        details = {
            "channel": channel,
            "content": content,
            "commitment": commitment,
            "first": first,
            "result": result,
        }
        return [
            lambda w: event(
                ev.WorkOrderFeedbackGiven,
                w,
                at,
                ctx.actor,
                channel=channel,
                content=content,
                commitment=commitment,
                first=first,
                result=result,
            )
        ], details

    return await _step(session, ctx, work_order_id, Action.GIVE_FEEDBACK, mutate)


async def follow_up(
    session: AsyncSession, ctx: TenantContext, work_order_id: UUID, note: str
) -> WorkOrderRow:
    def mutate(wo: WorkOrderRow, at: datetime):
        wo.last_follow_up_at = at
        return [lambda w: event(ev.WorkOrderFollowedUp, w, at, ctx.actor, note=note)], {
            "note": note
        }

    return await _step(session, ctx, work_order_id, Action.FOLLOW_UP, mutate)


async def reassign(
    session: AsyncSession,
    ctx: TenantContext,
    work_order_id: UUID,
    *,
    department_code: str | None,
    handler_id: UUID | None,
    reason: str,
) -> WorkOrderRow:
    wo0 = await load(session, work_order_id, lock=True)
    department = None
    if department_code is not None:
        department = resolve_department(
            department_code,
            wo0.project_id,
            await directory.departments_for(session, wo0.project_id),
        )
        if department is None:
            raise InvalidStep(
                "body.department_code", "exists", f"no department {department_code} in this project"
            )
    if handler_id is not None and not await directory.staff_exists(session, handler_id):
        raise InvalidStep("body.handler_id", "exists", f"no active staff member {handler_id}")

    def mutate(wo: WorkOrderRow, at: datetime):
        from_department, from_handler = wo.department_id, wo.handler_id
        if department is not None:
            wo.department_id, wo.department_code = department.id, department.code
        wo.handler_id = handler_id
        wo.assignment_reason = f"reassigned by {ctx.actor}: {reason}"
        return [
            lambda w: event(
                ev.WorkOrderReassigned,
                w,
                at,
                ctx.actor,
                from_department_id=from_department,
                from_handler_id=from_handler,
                reason=reason,
            )
        ], {"reason": reason, "department": wo.department_code, "handler_id": handler_id}

    wo = await _step(session, ctx, work_order_id, Action.REASSIGN, mutate)
    if handler_id is not None:
        await directory.mark_assigned(session, handler_id, datetime.now(UTC))
    return wo


async def hand_over(
    session: AsyncSession,
    ctx: TenantContext,
    work_order_id: UUID,
    *,
    to_staff_id: UUID,
    reason: str,
) -> WorkOrderRow:
    me = actor_staff_id(ctx)
    if not await directory.staff_exists(session, to_staff_id):
        raise InvalidStep("body.to_staff_id", "exists", f"no active staff member {to_staff_id}")
    to_department = await directory.staff_department(session, to_staff_id)

    def mutate(wo: WorkOrderRow, at: datetime):
        wo.pending_handover_to = to_staff_id
        wo.pending_handover_department_id = to_department
        return [
            lambda w: event(
                ev.WorkOrderHandoverRequested,
                w,
                at,
                ctx.actor,
                to_staff_id=to_staff_id,
                to_department_id=to_department,
                reason=reason,
            )
        ], {"to_staff_id": to_staff_id, "reason": reason}

    return await _step(
        session,
        ctx,
        work_order_id,
        Action.HAND_OVER,
        mutate,
        check=lambda w: _guard(check_owner_or_supervisor, w, me, ctx),
    )


async def close(
    session: AsyncSession,
    ctx: TenantContext,
    work_order_id: UUID,
    *,
    callback_result: str | None,
    note: str | None,
) -> WorkOrderRow:
    def mutate(wo: WorkOrderRow, at: datetime):
        wo.closed_at = at
        return [
            lambda w: event(
                ev.WorkOrderClosed, w, at, ctx.actor, callback_result=callback_result, note=note
            )
        ], {"callback_result": callback_result, "note": note}

    return await _step(session, ctx, work_order_id, Action.CLOSE, mutate)


async def reopen(
    session: AsyncSession, ctx: TenantContext, work_order_id: UUID, reason: str
) -> WorkOrderRow:
    def mutate(wo: WorkOrderRow, at: datetime):
        wo.closed_at = None
        return [lambda w: event(ev.WorkOrderReopened, w, at, ctx.actor, reason=reason)], {
            "reason": reason
        }

    return await _step(session, ctx, work_order_id, Action.REOPEN, mutate)
