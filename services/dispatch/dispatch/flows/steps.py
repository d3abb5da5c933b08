"""The steps people take on a work order. Each runs inside the caller's tenant
transaction: lock the row, check the transition and the actor, change the row, append
the step (and owner change), and queue the event in the outbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.domain.lifecycle import Action, State, check_close, next_state
from dispatch.domain.ownership import (
    DEPARTMENT_HEAD,
    OwnerChange,
    acting_for,
    assignee_unfit,
    check_approval,
    check_handler,
    check_owner_or_supervisor,
    check_reassigner,
    check_sign_off,
    overnight_handover_stands,
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


async def with_history(
    session: AsyncSession, work_order_id: UUID
) -> tuple[WorkOrderRow, list[dict], list[dict]]:
    """The order, its steps and its chain of owners, as of one moment. Every step and owner
    change is written under the order's row lock, so the row is read FOR SHARE: a step in
    flight is waited for, and none commits before the history is read. Read without it,
    a step committing between the statements showed a `dispatched` order whose steps
    already held its `accept` (and an owner chain ahead of `owner_id`)."""
    wo = await orders.get(session, work_order_id, share=True)
    if wo is None:
        raise WorkOrderNotFound(str(work_order_id))
    return (
        wo,
        await orders.steps(session, work_order_id),
        await orders.owners(session, work_order_id),
    )


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
    # While an overnight hand-over is pending, the duty leader who received the case after
    # hours is its owner and handler.
    overnight_receiver = wo.owner_id if wo.overnight_handover_at is not None else None
    envelopes, details = mutate(wo, now)
    wo.state = after.value
    if wo.overnight_handover_at is not None and not overnight_handover_stands(
        wo.view(), overnight_receiver
    ):
        # Reassigned, handed over, taken by someone else or resolved: no longer his to
        # hand to the service center in the morning, now or after a reopen.
        wo.overnight_handover_at = None
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
    my_department = await head_department(session, ctx, me)
    changes: list[OwnerChange] = []
    # An accepted hand-over moves the order to the receiver's department: its code too,
    # or the order would be on no head's board (the board reads code and id).
    codes = await directory.department_codes(session)

    def mutate(wo: WorkOrderRow, at: datetime):
        view = wo.view()
        # A head or supervisor accepting for the assigned handler (or the hand-over's
        # receiver) accepts in his name: the handler is the first-asked owner, not them.
        on_behalf = acting_for(view, me)
        acceptor = on_behalf or me or wo.handler_id
        if acceptor is not None:
            accepted_by = ctx.actor if on_behalf is not None else None
            change = owner_change_on_accept(view, acceptor, at, accepted_by=accepted_by)
            if change is not None:
                changes.append(change)
                wo.owner_id = change.to_staff_id
        if view.state is State.HANDOVER_PENDING:
            wo.handler_id = wo.pending_handover_to
            if wo.pending_handover_department_id:
                wo.department_id = wo.pending_handover_department_id
                wo.department_code = codes.get(wo.department_id, wo.department_code)
            wo.pending_handover_to = None
            wo.pending_handover_department_id = None
        elif me is not None and wo.handler_id is None:
            wo.handler_id = me
        wo.accepted_at = wo.accepted_at or at
        built = [
            lambda w: event(ev.WorkOrderAccepted, w, at, ctx.actor, dispatched_at=w.dispatched_at)
        ]
        built += [_owner_event(c, ctx.actor) for c in changes]
        return built, _acting_for(on_behalf)

    wo = await _step(
        session,
        ctx,
        work_order_id,
        Action.ACCEPT,
        mutate,
        check=lambda w: _guard(check_handler, w, me, ctx, my_department),
        now=now,
    )
    for change in changes:
        await orders.append_owner(session, wo, change)
    return wo


def _guard(
    fn, wo: WorkOrderRow, me: UUID | None, ctx: TenantContext, my_department: UUID | None
) -> None:
    fn(wo.view(), me, ctx.roles, my_department)


async def head_department(
    session: AsyncSession, ctx: TenantContext, me: UUID | None
) -> UUID | None:
    """The acting department head's own department (what his authority is limited to);
    None for anyone else, whose authority does not depend on it."""
    if me is None or DEPARTMENT_HEAD not in ctx.roles:
        return None
    return await directory.staff_department(session, me)


def _acting_for(staff_id: UUID | None) -> dict[str, Any]:
    """The step's record of whom a head or supervisor acted for, if anyone."""
    return {"acting_for": staff_id} if staff_id is not None else {}


async def reject(
    session: AsyncSession, ctx: TenantContext, work_order_id: UUID, reason: str
) -> WorkOrderRow:
    me = actor_staff_id(ctx)
    my_department = await head_department(session, ctx, me)

    def mutate(wo: WorkOrderRow, at: datetime):
        on_behalf = acting_for(wo.view(), me)
        if wo.state == State.HANDOVER_PENDING:
            # A declined hand-over: the owner keeps the case.
            wo.pending_handover_to = None
            wo.pending_handover_department_id = None
        return [
            lambda w: event(ev.WorkOrderRejected, w, at, ctx.actor, reason=reason, rejected_by=me)
        ], {"reason": reason, **_acting_for(on_behalf)}

    return await _step(
        session,
        ctx,
        work_order_id,
        Action.REJECT,
        mutate,
        check=lambda w: _guard(check_handler, w, me, ctx, my_department),
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
    my_department = await head_department(session, ctx, me)

    def mutate(wo: WorkOrderRow, at: datetime):
        details = {"note": note, "site_visit": site_visit, "photo_refs": photo_refs}
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
        ], {**details, **_acting_for(acting_for(wo.view(), me))}

    return await _step(
        session,
        ctx,
        work_order_id,
        Action.PROGRESS,
        mutate,
        check=lambda w: _guard(check_handler, w, me, ctx, my_department),
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
    my_department = await head_department(session, ctx, me)

    def check(wo: WorkOrderRow) -> None:
        check_handler(wo.view(), me, ctx.roles, my_department)
        check_approval(
            compensation,
            decisions,
            ctx.roles,
            department_id=wo.department_id,
            actor_department=my_department,
        )

    approved_by = ctx.actor if (compensation is not None or decisions) else None

    def mutate(wo: WorkOrderRow, at: datetime):
        on_behalf = acting_for(wo.view(), me)
        wo.resolution = resolution
        wo.compensation = compensation
        wo.resolved_at = at
        details = {
            "resolution": resolution,
            "compensation": compensation,
            "decisions": decisions,
            "approved_by": approved_by,
            **_acting_for(on_behalf),
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
    my_department = await head_department(session, ctx, me)

    def check(wo: WorkOrderRow) -> None:
        check_sign_off(wo.view(), ctx.roles, my_department)

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
    me = actor_staff_id(ctx)
    my_department = await head_department(session, ctx, me)
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
    target = await directory.staff_facts(session, handler_id) if handler_id else None

    def check(wo: WorkOrderRow) -> None:
        check_reassigner(wo.view(), ctx.roles, my_department)
        if handler_id is None:
            return
        # The handler works on the order's project, in the department the order will be in.
        unfit = assignee_unfit(
            target,
            handler_id,
            project_id=wo.project_id,
            department_id=department.id if department else wo.department_id,
            department_code=department.code if department else wo.department_code,
        )
        if unfit is not None:
            hint = "" if department else " (name body.department_code to move the order too)"
            raise InvalidStep("body.handler_id", unfit.rule, unfit.message + hint)

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

    wo = await _step(session, ctx, work_order_id, Action.REASSIGN, mutate, check=check)
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
    my_department = await head_department(session, ctx, me)
    target = await directory.staff_facts(session, to_staff_id)
    # The order moves to the receiver's department when he accepts.
    to_department = target.department_id if target else None

    def check(wo: WorkOrderRow) -> None:
        _guard(check_owner_or_supervisor, wo, me, ctx, my_department)
        if to_staff_id == wo.owner_id:
            # A hand-over changes the owner: to the owner himself it would change nothing
            # but add "from X to X" to the owner chain.
            raise InvalidStep(
                "body.to_staff_id",
                "not_owner",
                f"staff member {to_staff_id} already owns this work order",
            )
        unfit = assignee_unfit(target, to_staff_id, project_id=wo.project_id, department_id=None)
        if unfit is not None:
            raise InvalidStep("body.to_staff_id", unfit.rule, unfit.message)

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
        check=check,
    )


async def close(
    session: AsyncSession,
    ctx: TenantContext,
    work_order_id: UUID,
    *,
    callback_result: str,
    note: str | None,
) -> WorkOrderRow:
    """Close after the callback; a dissatisfied owner's case is reopened instead."""

    def mutate(wo: WorkOrderRow, at: datetime):
        wo.closed_at = at
        return [
            lambda w: event(
                ev.WorkOrderClosed, w, at, ctx.actor, callback_result=callback_result, note=note
            )
        ], {"callback_result": callback_result, "note": note}

    return await _step(
        session,
        ctx,
        work_order_id,
        Action.CLOSE,
        mutate,
        check=lambda w: check_close(State(w.state), callback_result),
    )


async def reopen(
    session: AsyncSession, ctx: TenantContext, work_order_id: UUID, reason: str
) -> WorkOrderRow:
    def mutate(wo: WorkOrderRow, at: datetime):
        wo.closed_at = None
        return [lambda w: event(ev.WorkOrderReopened, w, at, ctx.actor, reason=reason)], {
            "reason": reason
        }

    return await _step(session, ctx, work_order_id, Action.REOPEN, mutate)
