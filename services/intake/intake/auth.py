"""API-key authentication (`X-API-Key`) for call centers and partner systems, plugged into
the platform's authenticator list next to staff bearer tokens."""

from __future__ import annotations

from uuid import UUID

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from intake import apikey_cache, idempotency_cache, ratelimit
from intake.store import apikeys
from propdesk.auth.dependencies import unauthenticated
from propdesk.db.session import tenant_transaction
from propdesk.service.problems import ProblemError
from propdesk.tenancy import TenantContext

API_KEY_HEADER = "x-api-key"
IDEMPOTENCY_HEADER = "idempotency-key"
CHALLENGE = 'ApiKey header="X-API-Key"'


class ApiKeyAuthenticator:
    challenge = CHALLENGE

    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], redis: aioredis.Redis | None
    ) -> None:
        self.sessions = sessions
        self.redis = redis

    async def identify(self, key: str) -> apikeys.KeyIdentity | None:
        cache = apikey_cache.CACHE
        digest = apikeys.hash_key(key)
        if (hit := cache.get(digest)) is not None:
            return hit
        epoch = cache.epoch
        async with tenant_transaction(
            self.sessions, TenantContext(tenant_id=None, actor="apikey-auth")
        ) as session:
            identity = await apikeys.authenticate(session, key)
        if identity is not None:
            cache.put(digest, identity, epoch)
        return identity

    async def _count(
        self, identity: apikeys.KeyIdentity, ctx: TenantContext, idempotency_key: str | None
    ) -> tuple[int | None, idempotency_cache.Prefetched | None]:
        """The rate-limit verdict and, with an Idempotency-Key, the key's replay-cache entry
        in this credential's namespace: one Redis round trip for both (the handler would
        otherwise make a second)."""
        if self.redis is None:
            return None, None
        namespace = idempotency_cache.namespace(ctx)
        try:
            counted = await ratelimit.count(
                self.redis,
                identity.tenant_id,
                identity.key_id,
                identity.rate_limit_per_minute,
                also_read=(
                    idempotency_cache.redis_key(identity.tenant_id, namespace, idempotency_key)
                    if idempotency_key is not None
                    else None
                ),
            )
        except (RedisError, OSError, TimeoutError) as exc:
            ratelimit.log.warning("rate limit not enforced, redis unavailable: %r", exc)
            return None, None
        if idempotency_key is None:
            return counted.retry_after, None
        cached = idempotency_cache.parse(counted.entry)
        return counted.retry_after, idempotency_cache.Prefetched(
            identity.tenant_id, namespace, idempotency_key, cached
        )

    async def authenticate(self, request: Request) -> TenantContext | None:
        key = request.headers.get(API_KEY_HEADER)
        if key is None:
            return None
        identity = await self.identify(key.strip())
        if identity is None:
            raise unauthenticated("The API key is not valid.", CHALLENGE)
        idempotency_key = (
            request.headers.get(IDEMPOTENCY_HEADER) if request.method == "POST" else None
        )
        ctx = context_for(identity)
        wait, prefetched = await self._count(identity, ctx, idempotency_key)
        if prefetched is not None:
            request.state.idempotency_prefetch = prefetched
        if wait is not None:
            raise ProblemError(
                429,
                "Too Many Requests",
                code="rate-limited",
                detail=f"This API key may make {identity.rate_limit_per_minute} requests per "
                f"minute; retry in {wait} s.",
                headers={"Retry-After": str(wait)},
            )
        return ctx


def context_for(identity: apikeys.KeyIdentity) -> TenantContext:
    return TenantContext(
        tenant_id=identity.tenant_id,
        project_ids=identity.project_ids,
        actor=f"apikey:{identity.key_id}",
        roles=identity.roles,
    )


def key_scope(project_ids: frozenset[UUID] | None) -> list[str] | None:
    return sorted(str(p) for p in project_ids) if project_ids is not None else None
