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

Staleness: this process drops a tenant's entries when it commits an onboarding or a rules
change (`invalidate_tenant`, after commit; a value loaded before the invalidation is not
stored after it, so a recording running meanwhile cannot put the old one back); a change
committed by another process (another replica, the CLI) is seen within `TTL_SECONDS`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
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
# The caller's session, asked for only on a miss.
SessionSource = Callable[[], Awaitable[AsyncSession]]


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


async def project_by_ref(session: SessionSource, ctx: TenantContext, ref: str) -> Row | None:
    # A miss is not cached: a project being onboarded must not stay unknown for the TTL.
    assert ctx.tenant_id is not None
    key = (ctx.project_ids, ctx.system, "project", ref)
    found, value = CACHE.get(ctx.tenant_id, key)
    if found:
        return value  # type: ignore[no-any-return]
    generation = CACHE.generation(ctx.tenant_id)
    row = await directory.project_by_ref(await session(), ref)
    if row is not None:
        CACHE.put(ctx.tenant_id, key, row, generation=generation)
    return row


async def tenant_rules(
    session: SessionSource, ctx: TenantContext, parse: Callable[[dict[str, Any]], TenantRules]
) -> TenantRules:
    """The tenant's effective rules, parsed once per fill (`parse` = overrides → rules)."""
    assert ctx.tenant_id is not None
    tenant_id = ctx.tenant_id

    async def load() -> TenantRules:
        overrides, _settings = await directory.tenant_rules(await session(), tenant_id)
        return parse(overrides)

    return await CACHE.through(ctx, ("rules",), load)


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
    session: SessionSource, ctx: TenantContext, project_id: UUID
) -> ProjectUnits:
    async def load() -> ProjectUnits:
        return ProjectUnits.of(await directory.project_units(await session(), project_id))

    return await CACHE.through(ctx, ("units", project_id), load)


async def unit_by_id(
    session: SessionSource, ctx: TenantContext, project_id: UUID, unit_id: UUID
) -> Unit | None:
    """The unit, if it is one of the project's."""
    return (await project_units(session, ctx, project_id)).by_id.get(unit_id)


async def find_unit(
    session: SessionSource, ctx: TenantContext, project_id: UUID, building: str, room: str
) -> Unit | None:
    """The unit `room` of `building` (by building code or name) in the project."""
    return (await project_units(session, ctx, project_id)).by_place.get((building, room))
