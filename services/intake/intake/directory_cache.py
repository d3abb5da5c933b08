"""Per-process cache of the directory reads on the recording path: project by code or id,
the tenant's rules, and each project's units (the whole project at once: complaints come
from every unit, so one entry per unit would miss on nearly every complaint). They change
only by onboarding and by `PUT /v1/rules`, yet every complaint read them.

Safety: an entry is keyed by the tenant AND the caller's project scope (and system flag),
so it holds exactly what the same query under the same row-level-security context
returned; one tenant's rows are never served to another, nor a project outside a
credential's scope. The query that fills an entry runs under the caller's RLS context.

On a miss, the entry is loaded through `session()`, which the recording flow's driver
transaction answers with `SessionNeeded` (the flow then runs again on a session, which
fills the entry): so a warm cache is what lets a complaint skip SQLAlchemy altogether.

Refresh ahead: an entry past 50-90 % of its TTL (jittered, so entries filled together do
not come due together) is reloaded in the background, in a transaction of its own under
the same scope, while requests go on using it; one reload per entry at a time. So the
directory of projects in use never expires under the requests: a miss (and the recording
rerun on a session that follows it) is for entries not used within a TTL. Without this,
the entries of hundreds of projects, filled in the first seconds, expired together and
the misses stalled the process for a second or more every TTL.

Staleness: this process drops a tenant's entries when it commits an onboarding or a rules
change (`invalidate_tenant`, after commit; a value loaded before the invalidation is not
stored after it, so a recording running meanwhile cannot put the old one back); a change
committed by another process (another replica, the CLI) is seen within `TTL_SECONDS`."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from intake.domain.rules import TenantRules
from intake.store import tenants as directory
from propdesk.db.session import tenant_transaction
from propdesk.tenancy import TenantContext

TTL_SECONDS = 30.0
# A bound on memory, not an eviction policy: when reached, everything is dropped and refilled.
MAX_ENTRIES = 20_000

T = TypeVar("T")
# The caller's session, asked for only on a miss.
SessionSource = Callable[[], Awaitable[AsyncSession]]
# Refreshes ahead of expiry open their own transactions from this factory.
Sessions = async_sessionmaker[AsyncSession]
log = logging.getLogger("intake.directory_cache")


class DirectoryCache:
    def __init__(
        self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        # key → (expires at, value, refresh due at)
        self._by_tenant: dict[UUID, dict[Hashable, tuple[float, Any, float]]] = {}
        self._size = 0
        # Bumped by each invalidation: a value loaded before it must not be stored after it.
        self._generation: dict[UUID, int] = {}
        self._refreshing: set[tuple[UUID, Hashable]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

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
            log.warning("directory refresh failed for tenant %s: %r", tenant_id, exc)
        else:
            if value is not None:
                self.put(tenant_id, key, value, generation=generation)
        finally:
            self._refreshing.discard((tenant_id, key))

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


CACHE = DirectoryCache()


def invalidate_tenant(tenant_id: UUID) -> None:
    CACHE.invalidate_tenant(tenant_id)


def _loaders(
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


async def project_by_ref(
    session: SessionSource, ctx: TenantContext, ref: str, *, sessions: Sessions | None = None
) -> Row | None:
    async def load_on(s: AsyncSession) -> Row | None:
        return await directory.project_by_ref(s, ref)

    # A miss is not kept: a project being onboarded must not stay unknown for the TTL.
    return await CACHE.through(
        ctx, ("project", ref), *_loaders(session, sessions, ctx, load_on), keep_none=False
    )


async def tenant_rules(
    session: SessionSource,
    ctx: TenantContext,
    parse: Callable[[dict[str, Any]], TenantRules],
    *,
    sessions: Sessions | None = None,
) -> TenantRules:
    """The tenant's effective rules, parsed once per fill (`parse` = overrides → rules)."""
    assert ctx.tenant_id is not None
    tenant_id = ctx.tenant_id

    async def load_on(s: AsyncSession) -> TenantRules:
        overrides, _settings = await directory.tenant_rules(s, tenant_id)
        return parse(overrides)

    return await CACHE.through(ctx, ("rules",), *_loaders(session, sessions, ctx, load_on))


@dataclass(frozen=True, slots=True)
class Unit:
    id: UUID
    project_id: UUID
    building: str
    room: str


@dataclass(frozen=True, slots=True)
class ProjectUnits:
    """A project's units by id and by (building code or name, room)."""

    by_id: dict[UUID, Unit]
    by_place: dict[tuple[str, str], Unit]

    @classmethod
    def of(cls, rows: list[Row]) -> ProjectUnits:
        by_id: dict[UUID, Unit] = {}
        by_name: dict[tuple[str, str], Unit] = {}
        by_code: dict[tuple[str, str], Unit] = {}
        for r in rows:
            unit = Unit(r.id, r.project_id, r.building, r.room)
            by_id[unit.id] = unit
            by_code[(r.building, r.room)] = unit
            by_name[(r.building_name, r.room)] = unit
        # A building is named by its code or its name; a code wins over another's name.
        return cls(by_id, {**by_name, **by_code})


async def project_units(
    session: SessionSource,
    ctx: TenantContext,
    project_id: UUID,
    *,
    sessions: Sessions | None = None,
) -> ProjectUnits:
    async def load_on(s: AsyncSession) -> ProjectUnits:
        return ProjectUnits.of(await directory.project_units(s, project_id))

    return await CACHE.through(
        ctx, ("units", project_id), *_loaders(session, sessions, ctx, load_on)
    )
