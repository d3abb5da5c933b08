"""Work-order events as envelopes, filled from the row (the facts every consumer needs)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dispatch.store.work_orders import WorkOrderRow
from propdesk.events import Envelope, new_event
from propdesk.events.contracts import work_order as contracts

PRODUCER = "dispatch"


def facts(wo: WorkOrderRow, at: datetime, actor: str | None) -> dict[str, Any]:
    return {
        "work_order_id": wo.id,
        "complaint_id": wo.complaint_id,
        "reference": wo.reference,
        "project_id": wo.project_id,
        "department_id": wo.department_id,
        "department_code": wo.department_code,
        "handler_id": wo.handler_id,
        "owner_id": wo.owner_id,
        "grade": wo.grade,
        "category": wo.category,
        "state": wo.state,
        "at": at,
        "actor": actor,
    }


def event(
    model: type[contracts._WorkOrderFacts],
    wo: WorkOrderRow,
    at: datetime,
    actor: str | None,
    **extra: Any,
) -> Envelope:
    payload = model(**facts(wo, at, actor), **extra)
    return new_event(
        payload,
        tenant_id=wo.tenant_id,
        project_id=wo.project_id,
        aggregate_id=wo.id,
        aggregate_seq=wo.seq,
        producer=PRODUCER,
        actor=actor,
        occurred_at=at,
    )
