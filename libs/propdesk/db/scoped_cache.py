"""A per-process cache of what a tenant's requests read and seldom changes (directory
rows, rules, routing inputs), safe across tenants and scopes, kept warm ahead of expiry.

Safety: an entry is keyed by the tenant AND the caller's project scope (and system flag),
so it holds exactly what the same query under the same row-level-security context
returned; one tenant's rows are never served to another, nor a project outside a
credential's scope. The query that fills an entry runs under the caller's RLS context.

Refresh ahead: an entry past 50-90 % of its TTL (jittered, so entries filled together do
not come due together) is reloaded in the background, in a transaction of its own under
the same scope, while callers go on using it; one reload per entry at a time. So the
entries in use never expire under the load: a miss is for an entry not used within a TTL.
Without this, the entries of hundreds of projects, filled in the first seconds, expired
together and the misses stalled the process for a second or more every TTL.

Staleness: the owner drops a tenant's entries (`invalidate_tenant`) or all of them
(`invalidate_all`) when this process commits a change; a value loaded before an
invalidation is not stored after it, so a load running meanwhile cannot put the old one
back. Once `connect`ed to NATS, a cache tells every other process holding a cache of the
same name (`propdesk.db.invalidations`) and drops what they tell it. That message is fire
and forget: one lost (NATS down) leaves an entry stale until it is reloaded, within the
TTL, which is therefore minutes, not seconds: the reloads of the entries in use (one per
entry per 50-90 % of the TTL) are the cache's whole cost when each project sees a
complaint now and then.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar
from uuid import UUID

from nats.aio.client import Client as NATS
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from propdesk.db.invalidations import Invalidations
from propdesk.db.session import tenant_transaction
from propdesk.tenancy import TenantContext

T = TypeVar("T")
# The caller's session, asked for only on a miss.
SessionSource = Callable[[], Awaitable[AsyncSession]]
# Refreshes ahead of expiry open their own transactions from this factory.
Sessions = async_sessionmaker[AsyncSession]
log = logging.getLogger("propdesk.db.scoped_cache")
ALL_TENANTS = "*"


class ScopedCache:
    def __init__(
        self,
        name: str,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
        max_entries: int = 20_000,
    ) -> None:
        self.name = name  # also the NATS subject token: letters, digits, dashes
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        # key → (expires at, value, refresh due at)
        self._by_tenant: dict[UUID, dict[Hashable, tuple[float, Any, float]]] = {}
        self._size = 0
        # Bumped by each invalidation (of the tenant; of all): a value loaded before it
        # must not be stored after it.
        self._generation: dict[UUID, int] = {}
        self._epoch = 0
        self._refreshing: set[tuple[UUID, Hashable]] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # reloads under way
        self._peers = Invalidations(name, self._heard)

    @property
    def subject(self) -> str:
        return self._peers.subject

    async def connect(self, nc: NATS) -> None:
        """Announce this process's invalidations to the caches of the same name in other
        processes, and apply theirs."""
        await self._peers.connect(nc)

    def _heard(self, target: str) -> None:
        if target == ALL_TENANTS:
            self.drop_all()
            return
        try:
            self._drop_tenant(UUID(target))
        except ValueError:
            log.warning("%s: ignored an invalidation naming %r", self.name, target)

    async def settle(self) -> None:
        """Wait for the announcements and reloads under way (before closing NATS)."""
        await asyncio.gather(self._peers.settle(), *self._tasks, return_exceptions=True)

    def generation(self, tenant_id: UUID) -> tuple[int, int]:
        return self._epoch, self._generation.get(tenant_id, 0)

    def get(self, tenant_id: UUID, key: Hashable) -> tuple[bool, Any]:
        hit = self._by_tenant.get(tenant_id, {}).get(key)
        if hit is None or hit[0] <= self.clock():
            return False, None
        return True, hit[1]

    def put(
        self,
        tenant_id: UUID,
        key: Hashable,
        value: Any,
        *,
        generation: tuple[int, int] | None = None,
    ) -> None:
        """Store `value`, unless the tenant was invalidated since `generation` (read before
        the value was loaded): then the value may predate the change."""
        if generation is not None and generation != self.generation(tenant_id):
            return
        if self._size >= self.max_entries:
            self.clear()
        entries = self._by_tenant.setdefault(tenant_id, {})
        if key not in entries:
            self._size += 1
        now = self.clock()
        entries[key] = (now + self.ttl, value, now + self.ttl * random.uniform(0.5, 0.9))

    def refresh_due(self, tenant_id: UUID, key: Hashable) -> bool:
        """Whether a live entry should be reloaded ahead of its expiry (and is not yet)."""
        hit = self._by_tenant.get(tenant_id, {}).get(key)
        return (
            hit is not None and hit[2] <= self.clock() and (tenant_id, key) not in self._refreshing
        )

    def refresh(self, tenant_id: UUID, key: Hashable, load: Callable[[], Awaitable[Any]]) -> None:
        """Reload the entry in the background with `load` (its own transaction)."""
        self._refreshing.add((tenant_id, key))
        task = asyncio.create_task(self._reload(tenant_id, key, load))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reload(
        self, tenant_id: UUID, key: Hashable, load: Callable[[], Awaitable[Any]]
    ) -> None:
        generation = self.generation(tenant_id)
        try:
            value = await load()
        except Exception as exc:  # the entry serves until it expires; the next use retries
            log.warning("%s: refresh failed for tenant %s: %r", self.name, tenant_id, exc)
        else:
            if value is not None:
                self.put(tenant_id, key, value, generation=generation)
        finally:
            self._refreshing.discard((tenant_id, key))

    def invalidate_tenant(self, tenant_id: UUID) -> None:
        """After this process committed a change of the tenant's cached rows."""
        self._drop_tenant(tenant_id)
        self._peers.announce(str(tenant_id))

    def invalidate_all(self) -> None:
        """After this process committed a change that may touch any tenant's entries."""
        self.drop_all()
        self._peers.announce(ALL_TENANTS)

    def _drop_tenant(self, tenant_id: UUID) -> None:
        self._generation[tenant_id] = self._generation.get(tenant_id, 0) + 1
        self._size -= len(self._by_tenant.pop(tenant_id, {}))

    def drop_all(self) -> None:
        """Every tenant's entries are gone from this process's cache, and loads under way
        are not stored; the other processes are not told (a change not committed yet:
        `invalidate_all` after the commit tells them)."""
        self._epoch += 1
        self.clear()

    def clear(self) -> None:
        self._by_tenant.clear()
        self._size = 0

    async def through(
        self,
        ctx: TenantContext,
        key: tuple[Hashable, ...],
        load: Callable[[], Awaitable[T]],
        refresh: Callable[[], Awaitable[T]] | None = None,
        *,
        keep_none: bool = True,
    ) -> T:
        """The cached value for `key` under `ctx`'s scope, loaded by `load` on a miss and
        reloaded by `refresh` (its own transaction) in the background when due. With
        `keep_none=False` a None (not found) is not kept: the next call asks again."""
        assert ctx.tenant_id is not None
        scoped = (ctx.project_ids, ctx.system, *key)
        found, value = self.get(ctx.tenant_id, scoped)
        if found:
            if refresh is not None and self.refresh_due(ctx.tenant_id, scoped):
                self.refresh(ctx.tenant_id, scoped, refresh)
            return value  # type: ignore[no-any-return]
        generation = self.generation(ctx.tenant_id)
        value = await load()
        if value is not None or keep_none:
            self.put(ctx.tenant_id, scoped, value, generation=generation)
        return value


def loaders(
    session: SessionSource,
    sessions: Sessions | None,
    ctx: TenantContext,
    load_on: Callable[[AsyncSession], Awaitable[T]],
) -> tuple[Callable[[], Awaitable[T]], Callable[[], Awaitable[T]] | None]:
    """`load_on` in the caller's transaction (a miss), and in a transaction of its own under
    the same context (a refresh ahead of expiry; none without a session factory)."""

    async def in_request() -> T:
        return await load_on(await session())

    if sessions is None:
        return in_request, None
    factory = sessions

    async def on_its_own() -> T:
        async with tenant_transaction(factory, ctx) as s:
            return await load_on(s)

    return in_request, on_its_own
