"""Idempotency keys in PostgreSQL: the source of truth. A key row is inserted, with the final
answer, by the statement that writes the complaint (`store.recording.write`), in the same
transaction: a crash leaves both or neither. A request that finds the key taken when it
writes rolls back and replays what the first one stored (`stored`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from intake.store.tables import idempotency_keys


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: bytes
    status_code: int | None
    body: dict[str, Any] | None


_STORED = select(
    idempotency_keys.c.request_hash,
    idempotency_keys.c.status_code,
    idempotency_keys.c.response,
).where(
    idempotency_keys.c.tenant_id == bindparam("p_tenant_id"),
    idempotency_keys.c.namespace == bindparam("p_namespace"),
    idempotency_keys.c.key == bindparam("p_key"),
)


async def stored(
    session: AsyncSession, tenant_id: UUID, namespace: str, key: str
) -> StoredResponse | None:
    """What the request that took `key` in the caller's `namespace` stored (see
    `idempotency_cache.namespace`); None if no committed request holds it."""
    row = (
        await session.execute(
            _STORED, {"p_tenant_id": tenant_id, "p_namespace": namespace, "p_key": key}
        )
    ).first()
    if row is None:
        return None
    return StoredResponse(bytes(row.request_hash), row.status_code, row.response)


async def sweep_expired(session: AsyncSession, older_than_hours: float) -> int:
    """Delete keys past retention (system context: all tenants)."""
    result = await session.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.created_at
            < func.now()
            - text("make_interval(secs => :secs)").bindparams(secs=older_than_hours * 3600)
        )
    )
    return result.rowcount or 0
