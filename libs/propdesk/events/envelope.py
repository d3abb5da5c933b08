"""The event envelope every propdesk event travels in.

Naming: `type` is `<aggregate>.<past-tense verb>` (e.g. `complaint.received`); the NATS
subject is `pd.<type>.<tenant>.<project>` so consumers filter by type and, where useful,
by tenant, and per-tenant stream limits stay possible. Payloads are versioned per type
(`schema_version`); a breaking change adds a new version model, never edits one in place.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from propdesk.uuid7 import uuid7

ENVELOPE_VERSION = 1
_TYPE_RE = re.compile(r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$")


class EventPayload(BaseModel):
    """Base of every event payload. Subclasses set `event_type` and `schema_version`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    aggregate: ClassVar[str]


class Envelope(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    envelope_version: int = ENVELOPE_VERSION
    id: UUID = Field(default_factory=uuid7, description="Event id; the Nats-Msg-Id and inbox key")
    type: str = Field(pattern=_TYPE_RE.pattern)
    schema_version: int = Field(ge=1)
    tenant_id: UUID
    project_id: UUID | None = None
    aggregate_type: str
    aggregate_id: UUID
    aggregate_seq: int = Field(ge=0, description="Per-aggregate sequence (0 when not tracked)")
    occurred_at: datetime
    producer: str
    actor: str | None = None
    trace_context: dict[str, str] = Field(
        default_factory=dict, description="W3C trace context (traceparent, tracestate)"
    )
    payload: dict[str, Any]

    @property
    def subject(self) -> str:
        return subject_for(self.type, self.tenant_id, self.project_id)


def subject_for(event_type: str, tenant_id: UUID, project_id: UUID | None) -> str:
    return f"pd.{event_type}.{tenant_id}.{project_id or '_'}"


def new_event(
    payload: EventPayload,
    *,
    tenant_id: UUID,
    project_id: UUID | None,
    aggregate_id: UUID,
    producer: str,
    aggregate_seq: int = 0,
    actor: str | None = None,
    occurred_at: datetime | None = None,
    trace_context: dict[str, str] | None = None,
) -> Envelope:
    return Envelope(
        type=payload.event_type,
        schema_version=payload.schema_version,
        tenant_id=tenant_id,
        project_id=project_id,
        aggregate_type=payload.aggregate,
        aggregate_id=aggregate_id,
        aggregate_seq=aggregate_seq,
        occurred_at=occurred_at or datetime.now(UTC),
        producer=producer,
        actor=actor,
        payload=payload.model_dump(mode="json"),
        trace_context=trace_context or {},
    )
