"""Per-API-key rate limit: a fixed one-minute window counted in Redis.

Redis is the fast, disposable part of the stack: when it does not answer, requests are let
through (and logged) rather than refused, because the limit protects capacity, while
refusing a call center's complaint loses it. The counting is queued on the caller's
pipeline (`auth.py`), which reads the idempotency replay cache in the same round trip.
"""

from __future__ import annotations

import logging
import time
from uuid import UUID

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError

log = logging.getLogger("intake.ratelimit")
WINDOW_SECONDS = 60


def queue_count(pipe: Pipeline, tenant_id: UUID, key_id: str, now: float) -> int:
    """Queue the window's INCR and EXPIRE on `pipe` (two results); the window number.
    Queued rather than sent, so the caller can add other reads to the same round trip."""
    window = int(now // WINDOW_SECONDS)
    key = f"pd:intake:rl:{tenant_id}:{key_id}:{window}"
    pipe.incr(key)
    pipe.expire(key, WINDOW_SECONDS * 2)
    return window


def verdict(count: int, limit: int, window: int, now: float) -> int | None:
    """None when the request may go ahead; else seconds until the window resets."""
    if count <= limit:
        return None
    return max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)


async def retry_after(
    redis: aioredis.Redis | None,
    tenant_id: UUID,
    key_id: str,
    limit: int,
    *,
    now: float | None = None,
) -> int | None:
    """The limit on its own round trip (Open311's key in the form body): None when the
    request may go ahead; else seconds until the window resets."""
    if redis is None:
        return None
    current = now if now is not None else time.time()
    try:
        async with redis.pipeline(transaction=False) as pipe:
            window = queue_count(pipe, tenant_id, key_id, current)
            count, _ = await pipe.execute()
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("rate limit not enforced, redis unavailable: %r", exc)
        return None
    return verdict(int(count), limit, window, current)
