"""complaint.classified → one work order: route, pick the receiver, record, announce (and
write the repeat calls kept for the complaint, see `duplicate_calls`).

In the consumer's transaction: the inbox row, the work order, its first step, the staff's
round-robin mark and the outbox events commit together. The unique (tenant, complaint)
constraint makes a replay beyond the inbox harmless too. Two statements per complaint
(`store.dispatching`); the routing inputs come from `store.routing_cache`.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from uuid import UUID

from prometheus_client import Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.domain.assignment import choose_assignee
from dispatch.domain.lifecycle import State
from dispatch.domain.ownership import OwnerChange
from dispatch.domain.routing import RoutingInput, resolve_department, route
from dispatch.flows.duplicate_calls import append_kept_calls
from dispatch.flows.events import event
from dispatch.store import dispatching as store
from dispatch.store import routing_cache
from dispatch.store import work_orders as orders
from propdesk.bus import Outbox
from propdesk.calendar import (
    is_working_time,
    next_working_start,
    uncovered_warning,
    uncovered_years,
)
from propdesk.db.session import after_commit, driver_connection
from propdesk.events.contracts.complaint import (
    ComplaintClassified,
    ComplaintOverridden,
    ComplaintRegraded,
)
from propdesk.events.contracts.work_order import WorkOrderDispatched, WorkOrderHandedOver
from propdesk.uuid7 import uuid7

log = logging.getLogger("dispatch.dispatching")
UNCOVERED_DISPATCHES = Counter(
    "propdesk_dispatch_uncovered_calendar_orders",
    "Work orders dispatched with working time counted on weekdays only, by the year without"
    " holiday data (load it: PUT /v1/calendars/years/{year}).",
    ["year"],
)
DISPATCH_DELAY = Histogram(
    "propdesk_dispatch_delay_seconds",
    "From a complaint's recording to its work order's dispatch (the procedure's 10-minute"
    " clock, DOMAIN.md), counted when the work order committed.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0),
)
OUTBOX = Outbox("dispatch")
DUTY_LEADER = "duty_leader"


async def dispatch_classified(
    session: AsyncSession,
    tenant_id: UUID,
    c: ComplaintClassified,
    *,
    now: datetime | None = None,
) -> UUID | None:
    """The new work order's id, or None when the complaint already has one."""
    now = now or datetime.now(UTC)
    conn = await driver_connection(session)
    routing = await routing_cache.project_routing(session, c.project_id)
    cal = routing.calendar
    working = is_working_time(cal, now)

    decision = route(
        RoutingInput(c.project_id, c.category, c.grade, building=c.building, place=c.place),
        routing.rules,
    )
    department = resolve_department(decision.department, c.project_id, routing.departments)
    existing, people = await store.lock_and_gather(
        conn,
        tenant_id,
        c.complaint_id,
        c.project_id,
        now,
        department_id=department.id if department else None,
        role=None if working else DUTY_LEADER,
    )
    if existing is not None:
        return None
    assignment = choose_assignee(
        people.department_staff,
        people.with_role,
        people.shifts,
        at=now,
        working_time=working,
        preferred_role=decision.handler_role,
        preferred_staff_id=decision.handler_staff_id,
        required_skills=frozenset({c.category}) if people.department_staff else frozenset(),
    )
    assignment_reason = assignment.reason
    if department is None:
        assignment_reason = (
            f"department {decision.department} is not known to dispatch yet: "
            "customer service must reassign; " + assignment.reason
        )
    handover_at = next_working_start(cal, now) if assignment.after_hours else None
    # Dispatch never stops for a missing holiday year: it counts that year's weekdays as
    # working and says so loudly, on the order and its event too (the start-up check and
    # /v1/calendars/coverage report the same years). The project's local dates, from now
    # to the overnight hand-over, not the UTC year of `now`.
    uncovered = uncovered_years(cal, now, handover_at)
    if uncovered:
        warnings = [uncovered_warning(y) for y in uncovered]
        assignment_reason += "; " + "; ".join(warnings)
        for y in uncovered:
            UNCOVERED_DISPATCHES.labels(str(y)).inc()
        log.warning(
            "calendar: complaint %s dispatched on a guessed calendar: %s",
            c.complaint_id,
            "; ".join(warnings),
            extra={
                "project_id": str(c.project_id),
                "complaint_id": str(c.complaint_id),
                "uncovered_years": uncovered,
                "working_time": working,
                "overnight_handover_at": handover_at.isoformat() if handover_at else None,
            },
        )

    wo = orders.WorkOrderRow(
        id=uuid7(),
        tenant_id=tenant_id,
        project_id=c.project_id,
        complaint_id=c.complaint_id,
        reference=c.reference,
        category=c.category,
        grade=c.grade,
        building=c.building,
        state=State.DISPATCHED.value,
        department_id=department.id if department else None,
        department_code=department.code if department else decision.department,
        handler_id=assignment.staff_id,
        # Outside hours the duty leader is the receiver of record from the first minute.
        owner_id=assignment.staff_id if assignment.after_hours else None,
        pending_handover_to=None,
        pending_handover_department_id=None,
        rule_id=decision.rule_id,
        routing_reason=decision.reason,
        assignment_reason=assignment_reason,
        inform=list(decision.inform),
        after_hours=assignment.after_hours,
        overnight_handover_at=handover_at,
        received_at=c.received_at,
        recorded_at=c.recorded_at,
        dispatched_at=now,
    )
    envelopes = [
        event(
            WorkOrderDispatched,
            wo,
            now,
            "dispatch",
            received_at=c.received_at,
            recorded_at=c.recorded_at,
            rule_id=decision.rule_id,
            routing_reason=decision.reason,
            assignment_reason=assignment_reason,
            inform=list(decision.inform),
            after_hours=assignment.after_hours,
            overnight_handover_at=wo.overnight_handover_at,
            calendar_uncovered_years=uncovered,
        )
    ]
    change: OwnerChange | None = None
    if assignment.after_hours:
        change = OwnerChange(
            None,
            assignment.staff_id,
            department.id if department else None,
            "first_receiver",
            "received outside working hours by the duty shift leader",
            now,
        )
        envelopes.append(
            event(
                WorkOrderHandedOver,
                wo,
                now,
                "dispatch",
                from_owner_id=None,
                to_owner_id=change.to_staff_id,
                to_department_id=change.to_department_id,
                kind=change.kind,
                reason=change.reason,
            )
        )
    written = await store.write(
        conn,
        wo,
        step_details={
            "routing": decision.as_record(),
            "assignment": assignment_reason,
            **({"calendar_uncovered_years": uncovered} if uncovered else {}),
        },
        assigned_staff_id=assignment.staff_id,
        first_owner=change,
        outbox_rows=OUTBOX.rows_in(session, *envelopes),
    )
    if not written.inserted:
        return None
    # Repeat calls that overtook this classification become steps after the dispatch.
    await append_kept_calls(session, wo, written.kept_calls)
    delay = (now - c.recorded_at).total_seconds()
    after_commit(session, lambda: DISPATCH_DELAY.observe(delay))
    return wo.id


class WorkOrderNotYetCreated(Exception):
    """A complaint's follow-up event arrived before its classified event was applied."""

    def __init__(self, complaint_id: object) -> None:
        super().__init__(f"no work order yet for complaint {complaint_id}; will retry")


async def apply_regrade(
    session: AsyncSession, c: ComplaintRegraded, *, now: datetime | None = None
) -> bool:
    """Keep the work order's grade in step with intake's; the history says who and why.

    Routed on the same consumer as complaint.classified, so it normally follows it; but a
    classified event that failed once is redelivered later, after the regrade. Then there
    is no order yet: raise, so the regrade is retried with backoff (and dead-lettered, not
    silently lost, if the order never comes)."""
    return await _correct(
        session,
        c.complaint_id,
        {"grade": c.grade},
        action="regrade",
        actor="intake",
        reason=c.reason,
        now=now,
    )


async def apply_override(
    session: AsyncSession, c: ComplaintOverridden, *, now: datetime | None = None
) -> bool:
    """Staff corrected the complaint's category and/or grade, with a reason: the work order
    carries the corrected values and its history says who and why, as for a regrade. The
    order is not re-routed: it stays with whoever holds it (customer service reassigns when
    the correction calls for another department)."""
    changes = {
        name: value
        for name, value in (("grade", c.grade), ("category", c.category))
        if value is not None
    }
    return await _correct(
        session, c.complaint_id, changes, action="override", actor=c.by, reason=c.reason, now=now
    )


async def _correct(
    session: AsyncSession,
    complaint_id: UUID,
    changes: dict[str, str],
    *,
    action: str,
    actor: str,
    reason: str,
    now: datetime | None,
) -> bool:
    """Set `changes` (grade, category) on the complaint's work order with one step; False
    when it already has them (a redelivery)."""
    now = now or datetime.now(UTC)
    # Locked before the values are compared: two corrections to the same value at once
    # (a regrade and a staff override, on two replicas) would otherwise both see the old
    # value, and the second would record a step changing the grade to what it already was.
    wo = await orders.by_complaint(session, complaint_id, lock=True)
    if wo is None:
        raise WorkOrderNotYetCreated(complaint_id)
    if all(getattr(wo, name) == value for name, value in changes.items()):
        return False
    previous = {name: getattr(wo, name) for name in changes}
    for name, value in changes.items():
        setattr(wo, name, value)
    wo.seq += 1
    await orders.save(session, wo)
    details: dict[str, object] = {"reason": reason}
    if set(changes) == {"grade"}:  # a regrade's step, as it has always been recorded
        details.update({"from": previous["grade"], "to": changes["grade"]})
    else:
        details.update({"from": previous, "to": changes})
    await orders.append_step(
        session, wo, action=action, from_state=wo.state, actor=actor, at=now, details=details
    )
    return True
