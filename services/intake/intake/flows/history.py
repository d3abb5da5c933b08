"""Every change to a complaint is written twice in the same transaction: a row of the
append-only timeline (who, when, why) and an outbox event for the other services."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from propdesk.bus import Outbox
from propdesk.events import Envelope, EventPayload, new_event
from propdesk.tenancy import TenantContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from intake.store import complaints as store

PRODUCER = "intake"
outbox = Outbox("intake")


async def bump_version(session: AsyncSession, complaint_id: UUID, by: int = 1) -> int:
    """Advance the complaint's version; the new value is the next event's aggregate_seq."""
    return (
        await session.execute(
            text(
                "UPDATE intake.complaints SET version = version + :n, updated_at = now()"
                " WHERE id = :id RETURNING version"
            ),
            {"n": by, "id": complaint_id},
        )
    ).scalar_one()


async def record(
    session: AsyncSession,
    ctx: TenantContext,
    *,
    project_id: UUID,
    complaint_id: UUID,
    seq: int,
    payload: EventPayload,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    assert ctx.tenant_id is not None
    body = payload.model_dump(mode="json")
    await store.append_event(
        session,
        tenant_id=ctx.tenant_id,
        project_id=project_id,
        complaint_id=complaint_id,
        type=payload.event_type,
        actor=ctx.actor,
        reason=reason,
        data={**body, **(data or {})},
    )
    await outbox.add(
        session,
        envelope(ctx, project_id=project_id, complaint_id=complaint_id, seq=seq, payload=payload),
    )


def envelope(
    ctx: TenantContext, *, project_id: UUID, complaint_id: UUID, seq: int, payload: EventPayload
) -> Envelope:
    """The complaint event as it goes out: the complaint is the aggregate, its version the
    sequence."""
    assert ctx.tenant_id is not None
    return new_event(
        payload,
        tenant_id=ctx.tenant_id,
        project_id=project_id,
        aggregate_id=complaint_id,
        aggregate_seq=seq,
        producer=PRODUCER,
        actor=ctx.actor,
    )
