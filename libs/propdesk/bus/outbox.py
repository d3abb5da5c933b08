"""Transactional outbox: the event row commits in the same transaction as the state change."""

from __future__ import annotations

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from propdesk.bus import bell
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

    def rows(self, *envelopes: Envelope) -> list[dict[str, object]]:
        """The outbox rows of `envelopes` (JSON as text), carrying the current trace context,
        for `add` or for a caller that writes them in a statement of its own."""
        trace = inject_current()
        rows: list[dict[str, object]] = []
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
                    "envelope": env.model_dump_json(),
                    "trace_context": orjson.dumps(env.trace_context).decode(),
                }
            )
        return rows

    def rows_in(self, session: AsyncSession, *envelopes: Envelope) -> list[dict[str, object]]:
        """`rows`, for a caller that writes them in its own statement inside `session`'s
        transaction: the relay is rung when that transaction commits."""
        if envelopes:
            bell.mark(session, self.schema)
        return self.rows(*envelopes)

    async def add(self, session: AsyncSession, *envelopes: Envelope) -> None:
        """Queue events inside the caller's transaction; they are published after commit."""
        if envelopes:
            await session.execute(self._insert, self.rows(*envelopes))
            bell.mark(session, self.schema)
