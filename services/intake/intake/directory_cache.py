"""Per-process cache of the directory reads on the recording path: project by code or id,
the tenant's rules, and each project's units (the whole project at once: complaints come
from every unit, so one entry per unit would miss on nearly every complaint). They change
only by onboarding and by `PUT /v1/rules`, yet every complaint read them.

Safety (entries per tenant and scope) and refresh ahead of expiry: see
`propdesk.db.scoped_cache`.

On a miss, the entry is loaded through `session()`, which the recording flow's driver
transaction answers with `SessionNeeded` (the flow then runs again on a session, which
fills the entry): so a warm cache is what lets a complaint skip SQLAlchemy altogether.

Staleness: a process drops a tenant's entries when it commits an onboarding or a rules
change (`invalidate_tenant`, after commit; a value loaded before the invalidation is not
stored after it, so a recording running meanwhile cannot put the old one back), and tells
the other intake processes, so do they; `propdesk onboard` tells them too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from intake.domain.rules import TenantRules
from intake.store import tenants as directory
from propdesk.db.scoped_cache import ScopedCache, Sessions, SessionSource, loaders
from propdesk.tenancy import TenantContext

# Changes made by any intake process or the CLI reach every cache at once (`connect`);
# the TTL bounds only what a lost announcement leaves stale.
TTL_SECONDS = 300.0

CACHE = ScopedCache("intake-directory", ttl=TTL_SECONDS)


def invalidate_tenant(tenant_id: UUID) -> None:
    CACHE.invalidate_tenant(tenant_id)


async def project_by_ref(
    session: SessionSource, ctx: TenantContext, ref: str, *, sessions: Sessions | None = None
) -> Row | None:
    async def load_on(s: AsyncSession) -> Row | None:
        return await directory.project_by_ref(s, ref)

    # A miss is not kept: a project being onboarded must not stay unknown for the TTL.
    return await CACHE.through(
        ctx, ("project", ref), *loaders(session, sessions, ctx, load_on), keep_none=False
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

    return await CACHE.through(ctx, ("rules",), *loaders(session, sessions, ctx, load_on))


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
        ctx, ("units", project_id), *loaders(session, sessions, ctx, load_on)
    )
