"""The Redis fast path for idempotent replays. PostgreSQL decides; Redis only saves a
transaction when a completed response is replayed. Any Redis failure falls back to the
database path.

An API-key request reads its entry in the rate limit's call (`ratelimit.count`, see
`auth.py`) and hands it on as `Prefetched`; other requests read it with `get`.

Whose keys: an Idempotency-Key is the caller's own name for one of its requests, so keys
live in a namespace per tenant and per credential (`namespace`: the API key or the staff
member, with its project scope), in PostgreSQL and here alike. Two call centres of one
company, even of one project (the group's hotline and the government's 12345 both forward
to it), never collide however they number their tickets; one credential's key can only
ever answer with a complaint that credential recorded within its own projects, and a
caller never learns that another used a key. A credential's keys are not shared with
another credential of the same company (a rotated key starts afresh); the caller's own
retries, the case idempotency is for, always come with the same credential. Keying on the
body's project instead would keep a company-wide key's "same key, other body" 422 only
within one project and would still let two call centres of one project collide."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from propdesk.tenancy import TenantContext

log = logging.getLogger("intake.idempotency")
TTL_SECONDS = 24 * 3600

Cached = tuple[bytes, int, dict[str, Any]]


def namespace(ctx: TenantContext) -> str:
    """Whose Idempotency-Keys the caller's are, within its tenant: `<actor>@*` for a
    credential of every project, `<actor>@<scope digest>` for one limited to some (see the
    module docstring). The scope is part of it so that a staff member whose token later
    covers other projects never replays an answer from outside them."""
    return _namespace(ctx.actor, ctx.project_ids)


@lru_cache(maxsize=4096)
def _namespace(actor: str, project_ids: frozenset[UUID] | None) -> str:
    return f"{actor}@{scope_digest(project_ids)}"


def scope_digest(project_ids: frozenset[UUID] | None) -> str:
    """`*` for every project, else the first 16 hex digits of the sha256 of the sorted,
    comma-joined project ids (migration 0005 computes the same in SQL)."""
    if project_ids is None:
        return "*"
    joined = ",".join(sorted(str(p) for p in project_ids))
    return hashlib.sha256(joined.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Prefetched:
    """What the cache held for (tenant, namespace, key) when the request was authenticated."""

    tenant_id: UUID
    namespace: str
    key: str
    value: Cached | None

    def for_(self, tenant_id: UUID, namespace: str, key: str) -> bool:
        return self.tenant_id == tenant_id and self.namespace == namespace and self.key == key


def redis_key(tenant_id: UUID, namespace: str, key: str) -> str:
    """The entry's Redis key (the tenant in braces, as `ratelimit.window_key`). The
    namespace goes in as a digest: fixed length, so no actor and key can spell another's."""
    ns = hashlib.blake2b(namespace.encode(), digest_size=12).hexdigest()
    return f"pd:intake:idem:{{{tenant_id}}}:{ns}:{key}"


def parse(raw: bytes | str | None) -> Cached | None:
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
        return bytes.fromhex(doc["h"]), int(doc["s"]), doc["b"]
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


async def get(
    redis: aioredis.Redis | None, tenant_id: UUID, namespace: str, key: str
) -> Cached | None:
    if redis is None:
        return None
    try:
        raw = await redis.get(redis_key(tenant_id, namespace, key))
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("idempotency cache read failed: %r", exc)
        return None
    return parse(raw)


async def put(
    redis: aioredis.Redis | None,
    tenant_id: UUID,
    namespace: str,
    key: str,
    request_hash: bytes,
    status: int,
    body: dict[str, Any],
) -> None:
    if redis is None:
        return
    try:
        await redis.set(
            redis_key(tenant_id, namespace, key),
            orjson.dumps({"h": request_hash.hex(), "s": status, "b": body}),
            ex=TTL_SECONDS,
        )
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("idempotency cache write failed: %r", exc)
