"""The Redis fast path for idempotent replays. PostgreSQL decides; Redis only saves a
transaction when a completed response is replayed. Any Redis failure falls back to the
database path."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("intake.idempotency")
TTL_SECONDS = 24 * 3600


def _key(tenant_id: UUID, key: str) -> str:
    return f"pd:intake:idem:{tenant_id}:{key}"


async def get(
    redis: aioredis.Redis | None, tenant_id: UUID, key: str
) -> tuple[bytes, int, dict[str, Any]] | None:
    if redis is None:
        return None
    try:
        raw = await redis.get(_key(tenant_id, key))
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("idempotency cache read failed: %r", exc)
        return None
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
        return bytes.fromhex(doc["h"]), int(doc["s"]), doc["b"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


async def put(
    redis: aioredis.Redis | None,
    tenant_id: UUID,
    key: str,
    request_hash: bytes,
    status: int,
    body: dict[str, Any],
) -> None:
    if redis is None:
        return
    try:
        await redis.set(
            _key(tenant_id, key),
            orjson.dumps({"h": request_hash.hex(), "s": status, "b": body}),
            ex=TTL_SECONDS,
        )
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("idempotency cache write failed: %r", exc)
