"""Dispatch's work-order steps onto the complaint record (the case registry).

Runs inside the consumer's one transaction (inbox row already written), in two statements
(`store.case_progress`): lock the complaint; then append the step to its timeline, move its
status when the step is the newest one seen (`domain.case_status.decide_status`), and
announce a change as `complaint.status_changed` through the outbox. Every step is kept in
the timeline, late ones too, so "cause, course and result can all be queried and traced"
from the complaint alone.
"""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from intake.domain.case_status import StepMark, decide_status
from intake.flows import history
from intake.store import case_progress
from propdesk.bus import PermanentError
from propdesk.db.session import driver_connection
from propdesk.events import Envelope, parse_payload
from propdesk.events.contracts import work_order as wo
from propdesk.events.contracts.complaint import ComplaintStatusChanged
from propdesk.tenancy import TenantContext

log = logging.getLogger("intake.work_orders")


def _who(names: dict[UUID, str], staff_id: UUID | None) -> str:
    if staff_id is None:
        return "nobody yet"
    return names.get(staff_id, str(staff_id))


def step_reason(p: wo._WorkOrderFacts, names: dict[UUID, str]) -> str:
    """The timeline's one line for a work-order step: what a reviewer needs without
    opening the work order."""
    dept = p.department_code or "no department"
    handler = _who(names, p.handler_id)
    match p:
        case wo.WorkOrderDispatched():
            text = (
                f"dispatched to {dept}, handler {handler}; routing: {p.routing_reason};"
                f" assignment: {p.assignment_reason}"
            )
            if p.after_hours:
                text += "; outside working hours: the duty shift leader receives it"
            return text
        case wo.WorkOrderAccepted():
            return f"accepted by {_who(names, p.owner_id or p.handler_id)} ({dept})"
        case wo.WorkOrderRejected():
            return f"rejected by {_who(names, p.rejected_by)} ({dept}): {p.reason}"
        case wo.WorkOrderReassigned():
            return f"reassigned to {dept}, handler {handler}: {p.reason}"
        case wo.WorkOrderHandoverRequested():
            return f"hand-over to {_who(names, p.to_staff_id)} requested: {p.reason}"
        case wo.WorkOrderHandedOver():
            return f"{p.kind}: owner now {_who(names, p.to_owner_id)}: {p.reason}"
        case wo.WorkOrderProgressed():
            return ("site visit: " if p.site_visit else "") + p.note
        case wo.WorkOrderResolved():
            text = f"resolved by {handler}: {p.resolution}"
            if p.compensation:
                text += f"; compensation {p.compensation}"
            if p.approved_by:
                text += f"; approved by {p.approved_by}"
            return text
        case wo.WorkOrderSignedOff():
            return f"signed off by {p.signed_by} ({dept})" + (f": {p.comment}" if p.comment else "")
        case wo.WorkOrderFeedbackGiven():
            kind = "first feedback" if p.first else "feedback"
            if p.result:
                kind += " (result)"
            text = f"{kind} via {p.channel}: {p.content}"
            return text + (f"; commitment: {p.commitment}" if p.commitment else "")
        case wo.WorkOrderFollowedUp():
            return f"followed up: {p.note}"
        case wo.WorkOrderClosed():
            text = "closed"
            if p.callback_result:
                text += f"; callback result {p.callback_result}"
            return text + (f"; {p.note}" if p.note else "")
        case wo.WorkOrderReopened():
            return f"reopened: {p.reason}"
    return p.event_type


def _staff_ids(p: wo._WorkOrderFacts) -> list[UUID]:
    ids = [p.handler_id, p.owner_id]
    for attr in ("rejected_by", "to_staff_id", "to_owner_id"):
        ids.append(getattr(p, attr, None))
    return [i for i in ids if i is not None]


async def apply_work_order_event(session: AsyncSession, env: Envelope) -> bool:
    """Apply one work-order event to its complaint; True when the status changed."""
    payload = parse_payload(env)
    if not isinstance(payload, wo._WorkOrderFacts):
        raise PermanentError(f"not a work-order event: {env.type}")
    conn = await driver_connection(session)
    case = await case_progress.lock_case(conn, payload.complaint_id, _staff_ids(payload))
    if case is None:
        # The complaint is intake's: a work order for an unknown one is never applicable.
        raise PermanentError(f"no complaint {payload.complaint_id} for work order event {env.id}")
    incoming = StepMark(payload.work_order_id, env.aggregate_seq, payload.at)
    last = (
        StepMark(case.work_order_id, case.work_order_seq, case.work_order_at)
        if case.work_order_id is not None
        else None
    )
    decision = decide_status(case.status, last, incoming, payload.state)
    reason = step_reason(payload, case.staff_names)
    actor = payload.actor or env.actor or env.producer
    data: dict[str, Any] = {
        **payload.model_dump(mode="json"),
        "event_id": str(env.id),
        "work_order_seq": env.aggregate_seq,
        "status_before": case.status,
        "status_after": decision.status.value,
    }
    if decision.late:
        data["late"] = True
    if decision.why and not decision.changed:
        data["status_unchanged_because"] = decision.why
    timeline = {
        "tenant_id": env.tenant_id,
        "project_id": case.project_id,
        "complaint_id": case.id,
        "type": env.type,
        "actor": actor,
        "reason": reason,
        "data": data,
    }
    if decision.late:
        log.info(
            "complaint %s: late %s (seq %d < %d) kept in the timeline only",
            case.id,
            env.type,
            env.aggregate_seq,
            case.work_order_seq,
        )
        await case_progress.write_step(
            conn, complaint_id=case.id, timeline=timeline, update=None, outbox=[]
        )
        return False
    outbox: list[dict[str, Any]] = []
    if decision.changed:
        ctx = TenantContext.for_tenant(env.tenant_id, actor=actor)
        changed = history.envelope(
            ctx,
            project_id=case.project_id,
            complaint_id=case.id,
            seq=case.version + 1,  # the row is locked: the version moves by this event only
            payload=ComplaintStatusChanged(
                complaint_id=case.id,
                reference=case.reference,
                project_id=case.project_id,
                previous_status=case.status,
                status=decision.status.value,
                cause=env.type,
                at=payload.at,
                work_order_id=payload.work_order_id,
                department_code=payload.department_code,
                handler_id=payload.handler_id,
                reason=reason,
            ),
        )
        outbox = history.outbox.rows_in(session, changed)  # type: ignore[assignment]
    update = case_progress.CaseUpdate(
        work_order_id=payload.work_order_id,
        work_order_seq=env.aggregate_seq,
        work_order_at=payload.at,
        status=decision.status.value if decision.changed else None,
        versions=1 if decision.changed else 0,
    )
    await case_progress.write_step(
        conn, complaint_id=case.id, timeline=timeline, update=update, outbox=outbox
    )
    return decision.changed
