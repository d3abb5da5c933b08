"""Every change to a complaint is written twice in the same transaction: a row of the
append-only timeline (who, when, why) and an outbox event for the other services."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from intake.store import complaints as store
from propdesk.bus import Outbox
from propdesk.events import Envelope, EventPayload, new_event
from propdesk.telemetry.propagation import inject_current
from propdesk.tenancy import TenantContext

PRODUCER = "intake"
outbox = Outbox("intake")


_BUMP_VERSION = text(
    "UPDATE intake.complaints SET version = version + :n, updated_at = now()"
    " WHERE id = :id RETURNING version"
)


async def bump_version(session: AsyncSession, complaint_id: UUID, by: int = 1) -> int:
    """Advance the complaint's version; the new value is the next event's aggregate_seq."""
    return (await session.execute(_BUMP_VERSION, {"n": by, "id": complaint_id})).scalar_one()


@dataclass(frozen=True, slots=True)
class Entry:
    """One change of a complaint: its timeline row and its outbox event."""

    project_id: UUID
    complaint_id: UUID
    seq: int
    payload: EventPayload
    reason: str | None = None
    data: dict[str, Any] | None = None


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
    await record_many(session, ctx, [Entry(project_id, complaint_id, seq, payload, reason, data)])


async def record_many(session: AsyncSession, ctx: TenantContext, entries: list[Entry]) -> None:
    """The entries' timeline rows in one statement and their events in one outbox insert:
    two round trips whatever their number (a new complaint has two or three)."""
    rows, events = timeline_and_events(ctx, entries)
    await store.append_events(session, rows)
    await outbox.add(session, *events)


def timeline_and_events(
    ctx: TenantContext, entries: list[Entry]
) -> tuple[list[dict[str, Any]], list[Envelope]]:
    """The timeline rows of `entries` (tenant_id, project_id, complaint_id, type, actor,
    reason, data) and their events (carrying the current trace context); each payload is
    serialised once, for both."""
    assert ctx.tenant_id is not None
    trace = inject_current()
    events = [
        envelope(
            ctx,
            project_id=e.project_id,
            complaint_id=e.complaint_id,
            seq=e.seq,
            payload=e.payload,
            trace_context=trace,
        )
        for e in entries
    ]
    rows = [
        {
            "tenant_id": ctx.tenant_id,
            "project_id": e.project_id,
            "complaint_id": e.complaint_id,
            "type": e.payload.event_type,
            "actor": ctx.actor,
            "reason": e.reason,
            "data": {**env.payload, **(e.data or {})},
        }
        for e, env in zip(entries, events, strict=True)
    ]
    return rows, events


def note(
    ctx: TenantContext,
    *,
    project_id: UUID,
    complaint_id: UUID,
    kind: str,
    reason: str,
    data: dict[str, Any],
) -> dict[str, Any]:
    """A timeline row with no event: something a reviewer must read that changed nothing
    (no version, nothing for other services), e.g. an automatic regrade a staff override
    kept from being applied. Same columns as `timeline_and_events` rows."""
    assert ctx.tenant_id is not None
    return {
        "tenant_id": ctx.tenant_id,
        "project_id": project_id,
        "complaint_id": complaint_id,
        "type": kind,
        "actor": ctx.actor,
        "reason": reason,
        "data": data,
    }


def envelope(
    ctx: TenantContext,
    *,
    project_id: UUID,
    complaint_id: UUID,
    seq: int,
    payload: EventPayload,
    trace_context: dict[str, str] | None = None,
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
        trace_context=trace_context,
    )
