"""Per-API-key rate limit: a fixed one-minute window counted in Redis.

Redis is the fast, disposable part of the stack: when it does not answer, requests are let
through (and logged) rather than refused, because the limit protects capacity, while
refusing a call center's complaint loses it. One server-side script counts the request
and, for a POST with an Idempotency-Key, reads the replay-cache entry in the same call
(`auth.py`): one command where a pipeline of three cost the client most of its Redis time.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("intake.ratelimit")
WINDOW_SECONDS = 60

# KEYS[1]: the window's counter; KEYS[2], when given: an entry to read in the same call.
_COUNT_AND_READ = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
if #KEYS > 1 then return {n, redis.call('GET', KEYS[2])} end
return {n, false}
"""


def window_key(tenant_id: UUID, key_id: str, window: int) -> str:
    # The tenant in braces: a Redis Cluster keeps a tenant's keys in one slot, so the
    # script may read its replay-cache entry (`idempotency_cache.redis_key`) with them.
    return f"pd:intake:rl:{{{tenant_id}}}:{key_id}:{window}"


@dataclass(frozen=True, slots=True)
class Counted:
    """The verdict (None: go ahead; else seconds until the window resets) and the entry
    read alongside, if one was asked for."""

    retry_after: int | None
    entry: bytes | None


def verdict(count: int, limit: int, window: int, now: float) -> int | None:
    """None when the request may go ahead; else seconds until the window resets."""
    if count <= limit:
        return None
    return max(1, int((window + 1) * WINDOW_SECONDS - now) + 1)


async def count(
    redis: aioredis.Redis,
    tenant_id: UUID,
    key_id: str,
    limit: int,
    *,
    also_read: str | None = None,
    now: float | None = None,
) -> Counted:
    """Count this request in the key's window (one round trip), and read `also_read`.
    Raises RedisError/OSError/TimeoutError when Redis does not answer."""
    current = now if now is not None else time.time()
    window = int(current // WINDOW_SECONDS)
    keys = [window_key(tenant_id, key_id, window)]
    if also_read is not None:
        keys.append(also_read)
    n, entry = await redis.eval(_COUNT_AND_READ, len(keys), *keys, WINDOW_SECONDS * 2)
    return Counted(verdict(int(n), limit, window, current), entry)


async def retry_after(
    redis: aioredis.Redis | None,
    tenant_id: UUID,
    key_id: str,
    limit: int,
    *,
    now: float | None = None,
) -> int | None:
    """The limit alone (Open311's key in the form body): None when the request may go
    ahead; else seconds until the window resets. Fails open when Redis is away."""
    if redis is None:
        return None
    try:
        return (await count(redis, tenant_id, key_id, limit, now=now)).retry_after
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("rate limit not enforced, redis unavailable: %r", exc)
        return None
