"""Daily activity per project: how many complaints and work-order steps, by event type.

The first read model of the reporting service; the monthly report builds on it. The day
is the project's local day (time zone learned from project.upserted events).

PostgreSQL looks the project's time zone up and takes the local day inside the upsert. No
per-process cache of time zones, so a replica that did not see a project.upserted (the
consumer's messages are shared between replicas) never counts with a stale zone.

The consumer applies a fetched batch per transaction (`handle_batch`): a tenant's counted
events go in one statement, summed per (project, day, type) before the upsert, which takes
the rows in key order; one event alone goes through `handle`. Two replicas' transactions
over the same counters therefore lock them in one order (the consumer takes tenants in
the order of their ids): counted statement by statement between project.upserted events,
each took one counter and waited for the other's, a deadlock.
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
# events' projects, instants, types and zones (the zone a project.upserted earlier in the
# run set, else NULL: the stored one); summed per row first, since one upsert statement may
# not touch a row twice, and written in key order, the order every replica locks them in.
_COUNT_MANY = (
    "INSERT INTO reporting.daily_activity AS a (tenant_id, project_id, day, event_type, count)"
    " SELECT $1::uuid, e.project_id,"
    " CAST(e.at AT TIME ZONE coalesce(e.zone, p.time_zone, $6::text) AS date), e.event_type,"
    " count(*)"
    " FROM unnest($2::uuid[], $3::timestamptz[], $4::text[], $5::text[])"
    " AS e(project_id, at, event_type, zone)"
    " LEFT JOIN reporting.projects p ON p.project_id = e.project_id"
    " GROUP BY 1, 2, 3, 4 ORDER BY 2, 3, 4"
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
    """Events of one tenant in stream order, counted as one at a time would: an event after
    its project's project.upserted counts in the zone that event set, one before it in the
    zone stored before.

    One counting statement (rows in key order), then each project's last project.upserted
    of the run, in project order: the same rows as in stream order, locked in the order of
    every other replica's transaction."""
    counted: list[tuple[Envelope, str | None]] = []
    upserted: dict[UUID, Envelope] = {}
    zones: dict[UUID, str] = {}
    for env in envs:
        if env.type == "project.upserted":
            p = parse_payload(env)
            assert isinstance(p, ProjectUpserted)
            upserted[p.project_id] = env
            zones[p.project_id] = p.time_zone
        elif env.project_id is None:
            raise PermanentError(f"{env.type} carries no project")
        else:
            counted.append((env, zones.get(env.project_id)))
    await _count_many(session, counted)
    for project in sorted(upserted):
        await record_project(session, upserted[project])


async def _count_many(
    session: AsyncSession, counted: Sequence[tuple[Envelope, str | None]]
) -> None:
    if not counted:
        return
    conn = await session.connection()
    await conn.exec_driver_sql(
        _COUNT_MANY,
        (
            counted[0][0].tenant_id,
            [e.project_id for e, _ in counted],
            [e.occurred_at for e, _ in counted],
            [e.type for e, _ in counted],
            [zone for _, zone in counted],
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
