"""Daily activity per project: how many complaints and work-order steps, by event type.

The first read model of the reporting service; the monthly report builds on it. The day
is the project's local day (time zone learned from project.upserted events).

One statement per counted event: PostgreSQL looks the project's time zone up and takes
the local day inside the upsert. No per-process cache of time zones, so a replica that
did not see a project.upserted (the consumer's messages are shared between replicas)
never counts with a stale zone.
"""

from __future__ import annotations

from datetime import date
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from propdesk.bus.consumer import PermanentError
from propdesk.events import Envelope, parse_payload
from propdesk.events.contracts.tenant import ProjectUpserted

DEFAULT_TIME_ZONE = "Asia/Shanghai"


_UPSERT_PROJECT = text(
    "INSERT INTO reporting.projects (tenant_id, project_id, code, name, time_zone)"
    " VALUES (:t, :p, :c, :n, :z) ON CONFLICT (project_id) DO UPDATE"
    " SET code = excluded.code, name = excluded.name, time_zone = excluded.time_zone"
)
# The local day of `occurred_at` in the project's zone (the default zone for a project
# whose project.upserted has not arrived yet).
_COUNT = text(
    "INSERT INTO reporting.daily_activity (tenant_id, project_id, day, event_type, count)"
    " SELECT :t, :p, CAST((CAST(:at AS timestamptz) AT TIME ZONE coalesce("
    "(SELECT time_zone FROM reporting.projects WHERE project_id = :p), :default_zone))"
    " AS date), :e, 1"
    " ON CONFLICT (tenant_id, project_id, day, event_type)"
    " DO UPDATE SET count = reporting.daily_activity.count + 1"
)


async def record_project(session: AsyncSession, env: Envelope) -> None:
    p = parse_payload(env)
    assert isinstance(p, ProjectUpserted)
    await session.execute(
        _UPSERT_PROJECT,
        {"t": env.tenant_id, "p": p.project_id, "c": p.code, "n": p.name, "z": p.time_zone},
    )


async def count_event(session: AsyncSession, env: Envelope) -> None:
    if env.project_id is None:
        raise PermanentError(f"{env.type} carries no project")
    await session.execute(
        _COUNT,
        {
            "t": env.tenant_id,
            "p": env.project_id,
            "at": env.occurred_at,
            "e": env.type,
            "default_zone": DEFAULT_TIME_ZONE,
        },
    )


async def handle(session: AsyncSession, env: Envelope) -> None:
    if env.type == "project.upserted":
        await record_project(session, env)
    else:
        await count_event(session, env)


async def activity(
    session: AsyncSession, *, since: date, until: date, project_id: UUID | None
) -> list[dict]:
    rows = await session.execute(
        text(
            "SELECT a.project_id, p.code AS project_code, a.day, a.event_type, a.count"
            " FROM reporting.daily_activity a"
            " LEFT JOIN reporting.projects p ON p.project_id = a.project_id"
            " WHERE a.day >= :since AND a.day <= :until"
            " AND (CAST(:project AS uuid) IS NULL OR a.project_id = CAST(:project AS uuid))"
            " ORDER BY a.day, project_code, a.event_type"
        ),
        {"since": since, "until": until, "project": project_id},
    )
    return [dict(r._mapping) for r in rows]
