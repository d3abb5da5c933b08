"""The Redis fast path for idempotent replays. PostgreSQL decides; Redis only saves a
transaction when a completed response is replayed. Any Redis failure falls back to the
database path.

An API-key request reads its entry in the rate limit's call (`ratelimit.count`, see
`auth.py`) and hands it on as `Prefetched`; other requests read it with `get`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("intake.idempotency")
TTL_SECONDS = 24 * 3600

Cached = tuple[bytes, int, dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Prefetched:
    """What the cache held for (tenant, key) when the request was authenticated."""

    tenant_id: UUID
    key: str
    value: Cached | None

    def for_(self, tenant_id: UUID, key: str) -> bool:
        return self.tenant_id == tenant_id and self.key == key


def redis_key(tenant_id: UUID, key: str) -> str:
    """The entry's Redis key (the tenant in braces, as `ratelimit.window_key`)."""
    return f"pd:intake:idem:{{{tenant_id}}}:{key}"


def parse(raw: bytes | str | None) -> Cached | None:
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
        return bytes.fromhex(doc["h"]), int(doc["s"]), doc["b"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


async def get(redis: aioredis.Redis | None, tenant_id: UUID, key: str) -> Cached | None:
    if redis is None:
        return None
    try:
        raw = await redis.get(redis_key(tenant_id, key))
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("idempotency cache read failed: %r", exc)
        return None
    return parse(raw)


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
            redis_key(tenant_id, key),
            orjson.dumps({"h": request_hash.hex(), "s": status, "b": body}),
            ex=TTL_SECONDS,
        )
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("idempotency cache write failed: %r", exc)
