"""Per-process cache of the directory reads on the recording path: project by code or id,
the tenant's rules, units by id and by building and room. They change only by onboarding
and by `PUT /v1/rules`, yet every complaint read them (four statements of ~20).

Safety: an entry is keyed by the tenant AND the caller's project scope (and system flag),
so it holds exactly what the same query under the same row-level-security context
returned; one tenant's rows are never served to another, nor a project outside a
credential's scope. The query that fills an entry runs under the caller's RLS context.

Staleness: this process drops a tenant's entries when it commits an onboarding or a rules
change (`invalidate_tenant`, after commit; a value loaded before the invalidation is not
stored after it, so a recording running meanwhile cannot put the old one back); a change
committed by another process (another replica, the CLI) is seen within `TTL_SECONDS`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from intake.domain.rules import TenantRules
from intake.store import tenants as directory
from propdesk.tenancy import TenantContext

TTL_SECONDS = 30.0
# A bound on memory, not an eviction policy: when reached, everything is dropped and refilled.
MAX_ENTRIES = 20_000

T = TypeVar("T")


class DirectoryCache:
    def __init__(
        self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._by_tenant: dict[UUID, dict[Hashable, tuple[float, Any]]] = {}
        self._size = 0
        # Bumped by each invalidation: a value loaded before it must not be stored after it.
        self._generation: dict[UUID, int] = {}

    def generation(self, tenant_id: UUID) -> int:
        return self._generation.get(tenant_id, 0)

    def get(self, tenant_id: UUID, key: Hashable) -> tuple[bool, Any]:
        hit = self._by_tenant.get(tenant_id, {}).get(key)
        if hit is None or hit[0] <= self.clock():
            return False, None
        return True, hit[1]

    def put(
        self, tenant_id: UUID, key: Hashable, value: Any, *, generation: int | None = None
    ) -> None:
        """Store `value`, unless the tenant was invalidated since `generation` (read before
        the value was loaded): then the value may predate the change."""
        if generation is not None and generation != self.generation(tenant_id):
            return
        if self._size >= MAX_ENTRIES:
            self.clear()
        entries = self._by_tenant.setdefault(tenant_id, {})
        if key not in entries:
            self._size += 1
        entries[key] = (self.clock() + self.ttl, value)

    def invalidate_tenant(self, tenant_id: UUID) -> None:
        self._generation[tenant_id] = self.generation(tenant_id) + 1
        self._size -= len(self._by_tenant.pop(tenant_id, {}))

    def clear(self) -> None:
        self._by_tenant.clear()
        self._size = 0

    async def through(
        self,
        ctx: TenantContext,
        key: tuple[Hashable, ...],
        load: Callable[[], Awaitable[T]],
    ) -> T:
        """The cached value for `key` under `ctx`'s scope, loaded by `load` on a miss."""
        assert ctx.tenant_id is not None
        scoped = (ctx.project_ids, ctx.system, *key)
        found, value = self.get(ctx.tenant_id, scoped)
        if found:
            return value  # type: ignore[no-any-return]
        generation = self.generation(ctx.tenant_id)
        value = await load()
        self.put(ctx.tenant_id, scoped, value, generation=generation)
        return value


CACHE = DirectoryCache()


def invalidate_tenant(tenant_id: UUID) -> None:
    CACHE.invalidate_tenant(tenant_id)


async def project_by_ref(session: AsyncSession, ctx: TenantContext, ref: str) -> Row | None:
    # A miss is not cached: a project being onboarded must not stay unknown for the TTL.
    assert ctx.tenant_id is not None
    key = (ctx.project_ids, ctx.system, "project", ref)
    found, value = CACHE.get(ctx.tenant_id, key)
    if found:
        return value  # type: ignore[no-any-return]
    generation = CACHE.generation(ctx.tenant_id)
    row = await directory.project_by_ref(session, ref)
    if row is not None:
        CACHE.put(ctx.tenant_id, key, row, generation=generation)
    return row


async def tenant_rules(
    session: AsyncSession, ctx: TenantContext, parse: Callable[[dict[str, Any]], TenantRules]
) -> TenantRules:
    """The tenant's effective rules, parsed once per fill (`parse` = overrides → rules)."""
    assert ctx.tenant_id is not None
    tenant_id = ctx.tenant_id

    async def load() -> TenantRules:
        overrides, _settings = await directory.tenant_rules(session, tenant_id)
        return parse(overrides)

    return await CACHE.through(ctx, ("rules",), load)


async def unit_by_id(session: AsyncSession, ctx: TenantContext, unit_id: UUID) -> Row | None:
    return await CACHE.through(
        ctx, ("unit", unit_id), lambda: directory.unit_by_id(session, unit_id)
    )


async def find_unit(
    session: AsyncSession, ctx: TenantContext, project_id: UUID, building: str, room: str
) -> Row | None:
    # Misses are cached too: units not onboarded are the common case for some tenants, and
    # onboarding in this process invalidates.
    return await CACHE.through(
        ctx,
        ("unit-at", project_id, building, room),
        lambda: directory.find_unit(session, project_id, building, room),
    )
