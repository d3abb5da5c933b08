"""Transactional outbox: the event row commits in the same transaction as the state change."""

from __future__ import annotations

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from propdesk.events.envelope import Envelope
from propdesk.telemetry.propagation import inject_current


class Outbox:
    def __init__(self, schema: str) -> None:
        self.schema = schema
        self._insert = text(
            f'INSERT INTO "{schema}".outbox'
            " (event_id, tenant_id, project_id, event_type, subject, envelope, trace_context)"
            " VALUES (:event_id, :tenant_id, :project_id, :event_type, :subject,"
            " CAST(:envelope AS jsonb), CAST(:trace_context AS jsonb))"
        )

    async def add(self, session: AsyncSession, *envelopes: Envelope) -> None:
        """Queue events inside the caller's transaction; they are published after commit."""
        if not envelopes:
            return
        trace = inject_current()
        rows = []
        for env in envelopes:
            if trace and not env.trace_context:
                env = env.model_copy(update={"trace_context": trace})
            rows.append(
                {
                    "event_id": env.id,
                    "tenant_id": env.tenant_id,
                    "project_id": env.project_id,
                    "event_type": env.type,
                    "subject": env.subject,
                    "envelope": orjson.dumps(env.model_dump(mode="json")).decode(),
                    "trace_context": orjson.dumps(env.trace_context).decode(),
                }
            )
        await session.execute(self._insert, rows)
