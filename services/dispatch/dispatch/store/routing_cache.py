"""Per-process cache of what routing a classified complaint reads and what seldom changes:
the project's calendar (project row, platform years, local days), the routing rules that
apply to the project, and the departments it can be routed to. Five statements per
complaint before; none on a hit.

Safety (entries per tenant and RLS scope) and refresh ahead of expiry (entries in use are
reloaded in the background, so the routing of hundreds of projects does not expire at
once under the consumer): see `propdesk.db.scoped_cache`.

Staleness: every store function that changes one of these tables calls `invalidate`,
which empties the cache at once and again after that transaction commits (a value loaded
between the two, before the change was visible, is not kept; a value loaded before an
invalidation is not stored after it), and tells the other dispatch processes (another
replica's API or directory consumer), which do the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.domain.routing import Department, RoutingRule
from propdesk.calendar import UncoveredPolicy, WorkCalendar
from propdesk.db.scoped_cache import ScopedCache, loaders
from propdesk.db.session import after_commit, session_factory
from propdesk.tenancy import current_context

# Changes made by any dispatch process reach every cache at once (`connect`); the TTL
# bounds only what a lost announcement leaves stale.
TTL_SECONDS = 300.0

CACHE = ScopedCache("dispatch-routing", ttl=TTL_SECONDS, max_entries=10_000)


@dataclass(frozen=True, slots=True)
class ProjectRouting:
    calendar: WorkCalendar
    rules: list[RoutingRule]
    departments: list[Department]


def invalidate(session: AsyncSession) -> None:
    """Call from a change to projects, departments, rules or calendars, in its transaction:
    this process drops its entries now, and every dispatch process once it commits."""
    CACHE.drop_all()
    after_commit(session, CACHE.invalidate_all)


async def _load(session: AsyncSession, project_id: UUID) -> ProjectRouting:
    from dispatch.store import calendars, directory, routing_rules

    return ProjectRouting(
        calendar=await calendars.project_calendar(
            session, project_id, uncovered=UncoveredPolicy.WEEKDAYS
        ),
        rules=await routing_rules.rules_for(session, project_id),
        departments=await directory.departments_for(session, project_id),
    )


async def project_routing(session: AsyncSession, project_id: UUID) -> ProjectRouting:
    """The project's calendar (weekdays for a year without holiday data), rules and
    departments, under the session's tenant context."""
    ctx = current_context()
    if ctx is None or ctx.tenant_id is None:
        return await _load(session, project_id)

    async def caller_session() -> AsyncSession:
        return session

    async def load_on(s: AsyncSession) -> ProjectRouting:
        return await _load(s, project_id)

    # Refreshes run in transactions of their own, on the caller's engine.
    sessions = session_factory(session.bind)  # type: ignore[arg-type]
    return await CACHE.through(
        ctx, ("routing", project_id), *loaders(caller_session, sessions, ctx, load_on)
    )
