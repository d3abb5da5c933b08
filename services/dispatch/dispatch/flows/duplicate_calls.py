"""complaint.duplicate_joined → a `duplicate_call` step on the complaint's work order.

The household called again about a case that is still open; intake recorded the call on
that case instead of opening another, so the handler sees it here: a step with who
called, when, on which channel, and what they said. The order's state does not change.
When the order does not exist yet (the call overtook its classification), the call is
kept and written as a step when the order is created (`dispatch_classified` takes them in
the statement that inserts the order, then `append_kept_calls`): never dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.store import duplicate_calls as kept
from dispatch.store import work_orders as orders
from propdesk.events.contracts.complaint import ComplaintDuplicateJoined

STEP = "duplicate_call"
NOTE = "业主再次来电"


def call_details(c: ComplaintDuplicateJoined, recorded_by: str | None) -> dict[str, Any]:
    return {
        "note": NOTE,
        "call_id": str(c.call_id),
        "calls": c.calls,
        "channel": c.channel,
        "received_at": c.received_at.isoformat(),
        "receiver": c.receiver,
        "recorded_by": recorded_by,
        "caller": {"name": c.complainant_name, "phone": c.complainant_phone},
        "content": c.content,
        "demand": c.demand,
        "external_reference": c.external_reference,
        "attachments": c.attachments,
        "reason": c.reason,
    }


async def _append(
    session: AsyncSession, wo: orders.WorkOrderRow, at: datetime, details: dict[str, Any]
) -> None:
    wo.seq += 1
    await orders.append_step(
        session, wo, action=STEP, from_state=wo.state, actor="intake", at=at, details=details
    )


async def record_duplicate_call(
    session: AsyncSession,
    tenant_id: UUID,
    c: ComplaintDuplicateJoined,
    *,
    event_id: UUID,
    recorded_by: str | None = None,
) -> UUID | None:
    """The work order the call was written on, or None when it was kept for later."""
    details = call_details(c, recorded_by)
    await kept.lock_complaint(session, c.complaint_id)
    found = await orders.by_complaint(session, c.complaint_id)
    if found is None:
        await kept.keep(
            session,
            event_id=event_id,
            tenant_id=tenant_id,
            project_id=c.project_id,
            complaint_id=c.complaint_id,
            at=c.recorded_at,
            details=details,
        )
        return None
    wo = await orders.get(session, found.id, lock=True)
    assert wo is not None
    await _append(session, wo, c.recorded_at, details)
    await orders.save(session, wo)
    return wo.id


async def append_kept_calls(
    session: AsyncSession, wo: orders.WorkOrderRow, calls: list[tuple[datetime, dict[str, Any]]]
) -> None:
    """The kept calls (already taken, oldest first) as the order's steps."""
    for at, details in calls:
        await _append(session, wo, at, details)
    if calls:
        await orders.save(session, wo)
