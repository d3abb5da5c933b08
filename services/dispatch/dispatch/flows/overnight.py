"""The duty leader's overnight cases pass to the service center the next working morning.

A periodic job on every replica: one transaction claims due orders across tenants with
FOR UPDATE SKIP LOCKED (replicas never take the same order), then handles each under its
own tenant's context in the same transaction: the row stays locked until the hand-over,
its step, the owner chain entry and the events commit together. Each tenant's orders are
handled in a span of their own under the job run's (`job overnight-handover`) and under
the tenant's logging context: log lines name tenant and trace, and the events it writes
carry the trace.

Only what the duty leader still holds is taken (DOMAIN.md: what *he* has not closed): the
steps clear the due time when the case leaves his hands or is resolved, and the job checks
again against the chain of owners before it moves anything.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

from opentelemetry import trace
from opentelemetry.trace import Span
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dispatch.domain.assignment import choose_assignee
from dispatch.domain.lifecycle import Action, State, next_state
from dispatch.domain.ownership import OVERNIGHT_STATES, OwnerChange, overnight_handover_stands
from dispatch.domain.routing import CUSTOMER_SERVICE, resolve_department
from dispatch.flows.events import event
from dispatch.flows.steps import OUTBOX
from dispatch.store import directory
from dispatch.store import work_orders as orders
from dispatch.store.work_orders import WorkOrderRow
from propdesk.db.session import apply_context, tenant_transaction
from propdesk.events.contracts import work_order as ev
from propdesk.tenancy import TenantContext, system_context, use_context

log = logging.getLogger("dispatch.overnight")
tracer = trace.get_tracer("dispatch.overnight")
ACTOR = "dispatch:overnight-handover"
BATCH = 100


async def run_overnight_handover(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime | None = None
) -> int:
    now = now or datetime.now(UTC)
    handed: list[tuple[TenantContext, Span, int]] = []
    async with tenant_transaction(sessions, system_context(ACTOR)) as session:
        due = await orders.claim_overnight_due(
            session, now, [s.value for s in OVERNIGHT_STATES], BATCH
        )
        for tenant_id, claimed in _by_tenant(due).items():
            ctx = TenantContext.for_tenant(tenant_id, actor=ACTOR)
            # The tenant's own span (a child of the job run's) and log context: its lines
            # name the tenant and the trace, and its events carry the trace to consumers.
            with (
                use_context(ctx),
                tracer.start_as_current_span(
                    "overnight hand-over",
                    attributes={"propdesk.tenant_id": str(tenant_id), "propdesk.due": len(claimed)},
                ) as span,
            ):
                await apply_context(session, ctx)
                n = await _hand_over(session, claimed, now)
                span.set_attribute("propdesk.handed", n)
            if n:
                handed.append((ctx, span, n))
    # Said once committed, under each tenant's context and span.
    for ctx, span, n in handed:
        with use_context(ctx), trace.use_span(span):
            log.info("handed %d overnight case(s) to the service center", n)
    return sum(n for _ctx, _span, n in handed)


def _by_tenant(due: list[tuple[UUID, UUID, UUID]]) -> dict[UUID, list[tuple[UUID, UUID]]]:
    """(work order, project) per tenant, each in the order claimed."""
    grouped: dict[UUID, list[tuple[UUID, UUID]]] = {}
    for work_order_id, tenant_id, project_id in due:
        grouped.setdefault(tenant_id, []).append((work_order_id, project_id))
    return grouped


async def _hand_over(session: AsyncSession, claimed: list[tuple[UUID, UUID]], now: datetime) -> int:
    """One tenant's claimed orders, under its context: those the overnight receiver still
    holds go to the service center; a due time left on any other is cleared."""
    handed = 0
    for work_order_id, project_id in claimed:
        wo = await orders.get(session, work_order_id)
        if wo is None:
            continue
        first = await orders.first_owner(session, wo.id)
        receiver = first.to_staff_id if first and first.kind == "first_receiver" else None
        if overnight_handover_stands(wo.view(), receiver):
            await transfer_to_service_center(session, wo, now)
            handed += 1
            continue
        # A due time the steps should have cleared (the case left the duty leader's
        # hands): never take a case from whoever holds it now.
        log.warning(
            "overnight hand-over of %s dropped: no longer with its overnight receiver",
            wo.id,
            extra={
                "work_order_id": str(wo.id),
                "project_id": str(project_id),
                "state": wo.state,
            },
        )
        wo.overnight_handover_at = None
        await orders.save(session, wo)
    return handed


async def transfer_to_service_center(
    session: AsyncSession, wo: WorkOrderRow, now: datetime
) -> None:
    before = State(wo.state)
    after = next_state(before, Action.TRANSFER)
    department = resolve_department(
        CUSTOMER_SERVICE, wo.project_id, await directory.departments_for(session, wo.project_id)
    )
    handler = None
    reason = "service center department unknown: assign by hand"
    if department is not None:
        staff = await directory.candidates(session, wo.project_id, department_id=department.id)
        choice = choose_assignee(
            staff,
            [],
            await directory.shifts_at(session, wo.project_id, now),
            at=now,
            # The job fires at the next working start: the service center is at work.
            working_time=True,
            preferred_role="affairs_assistant",
        )
        handler, reason = choice.staff_id, choice.reason
    change = OwnerChange(
        wo.owner_id,
        handler,
        department.id if department else None,
        "overnight_handover",
        "received after hours and not closed by the next working morning: handed to the "
        "service center in writing",
        now,
    )
    wo.seq += 1
    wo.state = after.value
    wo.owner_id = handler
    wo.handler_id = handler
    wo.pending_handover_to = None
    wo.pending_handover_department_id = None
    if department is not None:
        wo.department_id, wo.department_code = department.id, department.code
    wo.overnight_handover_at = None
    wo.assignment_reason = f"overnight hand-over: {reason}"
    await orders.save(session, wo)
    await orders.append_step(
        session,
        wo,
        action=Action.TRANSFER.value,
        from_state=before.value,
        actor=ACTOR,
        at=now,
        details={"reason": change.reason, "assignment": reason},
    )
    await orders.append_owner(session, wo, change)
    if handler is not None:
        await directory.mark_assigned(session, handler, now)
    await OUTBOX.add(
        session,
        event(
            ev.WorkOrderHandedOver,
            wo,
            now,
            ACTOR,
            from_owner_id=change.from_staff_id,
            to_owner_id=change.to_staff_id,
            to_department_id=change.to_department_id,
            kind=change.kind,
            reason=change.reason,
        ),
    )
