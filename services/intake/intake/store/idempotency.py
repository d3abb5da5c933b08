"""Idempotency keys in PostgreSQL: the source of truth. The key row is inserted in the same
transaction as the complaint, so a crash leaves both or neither, and concurrent requests
with one key queue on the primary key until the first commits (then they replay it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import bindparam, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from intake.store.tables import idempotency_keys


@dataclass(frozen=True, slots=True)
class StoredResponse:
    request_hash: bytes
    status_code: int | None
    body: dict[str, Any] | None


# Built once at import, so each request reuses the compiled statements (see store.complaints).
# The INSERT's columns and the UPDATE's SET come from the parameter names at execution; the
# WHERE parameters are named apart from the columns, as SQLAlchemy requires.
_CLAIM = (
    insert(idempotency_keys)
    .on_conflict_do_nothing(index_elements=["tenant_id", "key"])
    .returning(idempotency_keys.c.key)
)
_STORED = select(
    idempotency_keys.c.request_hash,
    idempotency_keys.c.status_code,
    idempotency_keys.c.response,
).where(
    idempotency_keys.c.tenant_id == bindparam("p_tenant_id"),
    idempotency_keys.c.key == bindparam("p_key"),
)
_COMPLETE = update(idempotency_keys).where(
    idempotency_keys.c.tenant_id == bindparam("p_tenant_id"),
    idempotency_keys.c.key == bindparam("p_key"),
)


async def claim(
    session: AsyncSession, tenant_id: UUID, key: str, request_hash: bytes
) -> StoredResponse | None:
    """None when this transaction now owns the key; else what the first request stored."""
    params = {"tenant_id": tenant_id, "key": key, "request_hash": request_hash}
    if (await session.execute(_CLAIM, params)).first() is not None:
        return None
    row = (await session.execute(_STORED, {"p_tenant_id": tenant_id, "p_key": key})).one()
    return StoredResponse(bytes(row.request_hash), row.status_code, row.response)


async def complete(
    session: AsyncSession,
    tenant_id: UUID,
    key: str,
    status_code: int,
    body: dict[str, Any],
    resource_id: UUID | None,
) -> None:
    await session.execute(
        _COMPLETE,
        {
            "p_tenant_id": tenant_id,
            "p_key": key,
            "status_code": status_code,
            "response": body,
            "resource_id": resource_id,
        },
    )


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
