"""Daily activity per project: how many complaints and work-order steps, by event type.

The first read model of the reporting service; the monthly report builds on it. The day
is the project's local day (time zone learned from project.upserted events).

PostgreSQL looks the project's time zone up and takes the local day inside the upsert. No
per-process cache of time zones, so a replica that did not see a project.upserted (the
consumer's messages are shared between replicas) never counts with a stale zone.

The consumer applies a fetched batch per transaction (`handle_batch`): the counted events
between two project.upserted events go in one statement, summed per (project, day, type)
before the upsert; one event alone goes through `handle`.
"""

from __future__ import annotations

from collections.abc import Sequence
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


# The same for many events of one tenant (a run of the consumer's transaction): $1 tenant, the
# events' projects, instants and types; summed per row first, since one upsert statement
# may not touch a row twice.
_COUNT_MANY = (
    "INSERT INTO reporting.daily_activity AS a (tenant_id, project_id, day, event_type, count)"
    " SELECT $1::uuid, e.project_id,"
    " CAST(e.at AT TIME ZONE coalesce(p.time_zone, $5::text) AS date), e.event_type, count(*)"
    " FROM unnest($2::uuid[], $3::timestamptz[], $4::text[]) AS e(project_id, at, event_type)"
    " LEFT JOIN reporting.projects p ON p.project_id = e.project_id"
    " GROUP BY 1, 2, 3, 4"
    " ON CONFLICT (tenant_id, project_id, day, event_type)"
    " DO UPDATE SET count = a.count + excluded.count"
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


async def handle_batch(session: AsyncSession, envs: Sequence[Envelope]) -> None:
    """Events of one tenant in stream order: a project's zone is recorded before the counts
    that follow it are taken."""
    pending: list[Envelope] = []
    for env in envs:
        if env.type == "project.upserted":
            await _count_many(session, pending)
            pending = []
            await record_project(session, env)
        elif env.project_id is None:
            raise PermanentError(f"{env.type} carries no project")
        else:
            pending.append(env)
    await _count_many(session, pending)


async def _count_many(session: AsyncSession, envs: Sequence[Envelope]) -> None:
    if not envs:
        return
    conn = await session.connection()
    await conn.exec_driver_sql(
        _COUNT_MANY,
        (
            envs[0].tenant_id,
            [e.project_id for e in envs],
            [e.occurred_at for e in envs],
            [e.type for e in envs],
            DEFAULT_TIME_ZONE,
        ),
    )


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
