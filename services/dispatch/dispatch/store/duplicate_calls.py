"""Repeat calls (complaint.duplicate_joined) that arrived before their complaint's work
order: kept until the order exists, then taken once (by the statement that inserts the
order, `store.dispatching.write`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def lock_complaint(session: AsyncSession, complaint_id: UUID) -> None:
    """Serialise "is there an order yet?" with the order's creation, so a call kept while
    the order was being created is not missed by both."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"),
        {"k": f"dispatch:complaint:{complaint_id}"},
    )


async def keep(
    session: AsyncSession,
    *,
    event_id: UUID,
    tenant_id: UUID,
    project_id: UUID,
    complaint_id: UUID,
    at: datetime,
    details: dict[str, Any],
) -> None:
    await session.execute(
        text(
            "INSERT INTO dispatch.pending_duplicate_calls"
            " (event_id, tenant_id, project_id, complaint_id, at, details)"
            " VALUES (:e, :t, :p, :c, :at, CAST(:d AS jsonb)) ON CONFLICT DO NOTHING"
        ),
        {
            "e": event_id,
            "t": tenant_id,
            "p": project_id,
            "c": complaint_id,
            "at": at,
            "d": orjson.dumps(details, default=str).decode(),
        },
    )
