"""Per-API-key rate limit: a fixed one-minute window counted in Redis.

Redis is the fast, disposable part of the stack: when it does not answer, requests are let
through (and logged) rather than refused, because the limit protects capacity, while
refusing a call center's complaint loses it.
"""

from __future__ import annotations

import logging
import time
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("intake.ratelimit")
WINDOW_SECONDS = 60


async def retry_after(
    redis: aioredis.Redis | None,
    tenant_id: UUID,
    key_id: str,
    limit: int,
    *,
    now: float | None = None,
) -> int | None:
    """None when the request may go ahead; else seconds until the window resets."""
    if redis is None:
        return None
    current = now if now is not None else time.time()
    window = int(current // WINDOW_SECONDS)
    key = f"pd:intake:rl:{tenant_id}:{key_id}:{window}"
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, WINDOW_SECONDS * 2)
            count, _ = await pipe.execute()
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("rate limit not enforced, redis unavailable: %r", exc)
        return None
    if int(count) <= limit:
        return None
    return max(1, int((window + 1) * WINDOW_SECONDS - current) + 1)
