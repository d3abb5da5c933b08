"""Per-process cache of what routing a classified complaint reads and what seldom changes:
the project's calendar (project row, platform years, local days), the routing rules that
apply to the project, and the departments it can be routed to. Five statements per
complaint before; none on a hit.

Safety: an entry is keyed by the tenant AND the RLS scope of the context that loaded it
(project scope, system flag): it holds exactly what the same queries under the same
row-level-security context return, and is never served to another tenant or scope.

Staleness: every store function that changes one of these tables calls `invalidate`,
which empties the cache at once and again after that transaction commits (a value loaded
between the two, before the change was visible, is not kept; a value loaded before an
invalidation is not stored after it). A change committed by another process (another
replica, the directory consumer of another replica) is seen within `TTL_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.domain.routing import Department, RoutingRule
from propdesk.calendar import UncoveredPolicy, WorkCalendar
from propdesk.tenancy import current_context

TTL_SECONDS = 15.0
# A bound on memory, not an eviction policy: when reached, everything is dropped.
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class ProjectRouting:
    calendar: WorkCalendar
    rules: list[RoutingRule]
    departments: list[Department]


class RoutingCache:
    def __init__(
        self, ttl: float = TTL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        # Bumped by each invalidation: a value loaded before it must not be stored after it.
        self.generation = 0

    def get(self, key: Hashable) -> Any | None:
        hit = self._entries.get(key)
        if hit is None or hit[0] <= self.clock():
            return None
        return hit[1]

    def put(self, key: Hashable, value: Any, generation: int) -> None:
        if generation != self.generation:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (self.clock() + self.ttl, value)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()


CACHE = RoutingCache()


def invalidate(session: AsyncSession) -> None:
    """Call from a change to projects, departments, rules or calendars, in its transaction."""
    CACHE.clear()
    event.listen(session.sync_session, "after_commit", lambda _s: CACHE.clear(), once=True)


async def project_routing(session: AsyncSession, project_id: UUID) -> ProjectRouting:
    """The project's calendar (weekdays for a year without holiday data), rules and
    departments, under the session's tenant context."""
    from dispatch.store import calendars, directory, routing_rules

    ctx = current_context()
    scope = (ctx.tenant_id, ctx.project_ids, ctx.system) if ctx is not None else None
    key = (scope, project_id)
    found = CACHE.get(key) if scope is not None else None
    if found is not None:
        return found  # type: ignore[no-any-return]
    generation = CACHE.generation
    value = ProjectRouting(
        calendar=await calendars.project_calendar(
            session, project_id, uncovered=UncoveredPolicy.WEEKDAYS
        ),
        rules=await routing_rules.rules_for(session, project_id),
        departments=await directory.departments_for(session, project_id),
    )
    if scope is not None:
        CACHE.put(key, value, generation)
    return value
