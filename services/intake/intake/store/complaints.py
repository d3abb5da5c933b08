"""Queries over complaints, their history, group cases and reference numbers."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    Date,
    Integer,
    Row,
    Select,
    Text,
    TextClause,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from intake.domain.case_status import HANDLED_STATUSES
from intake.store.tables import (
    TZ,
    complaint_events,
    complaint_flags,
    complaints,
    group_cases,
    invalidation_requests,
    projects,
    reference_counters,
)

# The recording path's statements are built once, at import: SQLAlchemy then finds their
# compiled form in its cache by identity instead of building and hashing a new construct
# per request (statement building was the largest CPU share of recording a complaint).
_LOCK_MATTERS = text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))")


async def lock_project_matters(session: AsyncSession, project_id: UUID) -> None:
    """Serialise duplicate and group detection within one project, so two complaints about
    the same matter recorded at the same instant see each other."""
    await session.execute(_LOCK_MATTERS, {"k": f"intake:matter:{project_id}"})


_NEXT_REFERENCE = (
    insert(reference_counters)
    # The VALUES come from the parameter names at execution.
    .on_conflict_do_update(
        index_elements=[reference_counters.c.project_id, reference_counters.c.day],
        set_={"last": reference_counters.c.last + 1},
    )
    .returning(reference_counters.c.last)
)


async def next_reference_number(
    session: AsyncSession, tenant_id: UUID, project_id: UUID, day: date
) -> int:
    params = {"tenant_id": tenant_id, "project_id": project_id, "day": day, "last": 1}
    return (await session.execute(_NEXT_REFERENCE, params)).scalar_one()


_RECENT_IN_PROJECT = (
    select(
        complaints.c.id,
        complaints.c.project_id,
        complaints.c.household_id,
        complaints.c.unit_id,
        complaints.c.complainant_phone,
        complaints.c.category,
        complaints.c.building,
        complaints.c.place,
        complaints.c.content,
        complaints.c.received_at,
        complaints.c.status,
        complaints.c.validity,
        complaints.c.group_case_id,
        complaints.c.grade,
        complaints.c.grade_reasons,
        complaints.c.reference,
        complaints.c.version,
        complaints.c.prior_cases,
    )
    .where(
        complaints.c.project_id == bindparam("project_id"),
        complaints.c.category == bindparam("category"),
        complaints.c.received_at >= bindparam("since"),
        complaints.c.received_at <= bindparam("until"),
        complaints.c.validity != "invalid",
    )
    .order_by(complaints.c.received_at.desc())
    .limit(bindparam("limit", type_=Integer))
)


async def recent_in_project(
    session: AsyncSession,
    project_id: UUID,
    category: str,
    around: datetime,
    hours: int,
    limit: int = 500,
) -> list[Row]:
    """Cases of the same project and category received within `hours` of `around`."""
    params = {
        "project_id": project_id,
        "category": category,
        "since": around - timedelta(hours=hours),
        "until": around + timedelta(hours=hours),
        "limit": limit,
    }
    return list(await session.execute(_RECENT_IN_PROJECT, params))


def _handled_of_household_statement(by_household: bool, by_phone: bool) -> Select:
    who = []
    if by_household:
        who.append(complaints.c.household_id == bindparam("household_id"))
    if by_phone:
        who.append(complaints.c.complainant_phone == bindparam("phone"))
    return (
        select(
            complaints.c.id,
            complaints.c.project_id,
            complaints.c.household_id,
            complaints.c.unit_id,
            complaints.c.complainant_phone,
            complaints.c.category,
            complaints.c.building,
            complaints.c.place,
            complaints.c.content,
            complaints.c.received_at,
            complaints.c.status,
            complaints.c.group_case_id,
            complaints.c.reference,
            complaints.c.prior_cases,
        )
        .where(
            complaints.c.project_id == bindparam("project_id"),
            complaints.c.category == bindparam("category"),
            or_(*who),
            complaints.c.status.in_([s.value for s in HANDLED_STATUSES]),
            complaints.c.validity != "invalid",
            complaints.c.received_at >= bindparam("since"),
            complaints.c.received_at <= bindparam("before"),
        )
        .order_by(complaints.c.received_at.desc())
        .limit(bindparam("limit", type_=Integer))
    )


# By (household known, phone known); neither known means no query at all.
_HANDLED_OF_HOUSEHOLD = {
    (True, True): _handled_of_household_statement(True, True),
    (True, False): _handled_of_household_statement(True, False),
    (False, True): _handled_of_household_statement(False, True),
}


async def handled_of_household(
    session: AsyncSession,
    project_id: UUID,
    household_id: UUID | None,
    phone: str | None,
    category: str,
    before: datetime,
    days: int,
    limit: int = 50,
) -> list[Row]:
    """Handled (`HANDLED_STATUSES`, not invalid) cases of a household or phone, same project
    and category, received within `days` before `before`: candidates of a second complaint."""
    by = (household_id is not None, bool(phone))
    if by == (False, False):
        return []
    params: dict[str, Any] = {
        "project_id": project_id,
        "category": category,
        "since": before - timedelta(days=days),
        "before": before,
        "limit": limit,
    }
    if by[0]:
        params["household_id"] = household_id
    if by[1]:
        params["phone"] = phone
    return list(await session.execute(_HANDLED_OF_HOUSEHOLD[by], params))


async def complaint_by_ref(session: AsyncSession, ref: str) -> Row | None:
    """A complaint the caller may see, by id or by reference."""
    try:
        cond = complaints.c.id == UUID(ref)
    except ValueError:
        cond = complaints.c.reference == ref
    return (await session.execute(select(complaints).where(cond))).first()


_INSERT_COMPLAINT = complaints.insert()


async def insert_complaint(session: AsyncSession, values: dict[str, Any]) -> None:
    # Parameters, not `.values(**values)`: one compiled INSERT for every call with the same keys.
    await session.execute(_INSERT_COMPLAINT, values)


# Statements by the set of column names given, built on first use.
_NUMBERED_INSERTS: dict[tuple[str, ...], TextClause] = {}


def _numbered_insert(keys: tuple[str, ...]) -> TextClause:
    # The counter upsert runs as a data-modifying CTE of the complaint's INSERT: one round
    # trip instead of two while the project lock is held. The VALUES list lets PostgreSQL
    # type the parameters from the target columns; typed bind parameters let SQLAlchemy
    # encode JSONB and arrays as the Core INSERT did. The number is zero-padded to four
    # digits and never cut, as `f"{n:04d}"`.
    columns = ", ".join(f'"{k}"' for k in keys)
    values = ", ".join(f":{k}" for k in keys)
    sql = (
        "WITH n AS ("
        " INSERT INTO intake.reference_counters AS rc (tenant_id, project_id, day, last)"
        " VALUES (:tenant_id, :project_id, :reference_day, 1)"
        " ON CONFLICT (project_id, day) DO UPDATE SET last = rc.last + 1"
        " RETURNING last)"
        f" INSERT INTO intake.complaints ({columns}, reference) VALUES ({values},"
        " (SELECT CAST(:reference_prefix AS text)"
        " || lpad(n.last::text, greatest(4, length(n.last::text)), '0') FROM n))"
        " RETURNING reference"
    )
    return text(sql).bindparams(
        *(bindparam(k, type_=complaints.c[k].type) for k in keys),
        bindparam("reference_day", type_=Date()),
        bindparam("reference_prefix", type_=Text()),
    )


async def insert_numbered_complaint(
    session: AsyncSession, values: dict[str, Any], day: date, prefix: str
) -> str:
    """Insert the complaint with the project's next number of `day`; its reference
    (`prefix` + the number, four digits or more). `values` has every column but
    `reference` and includes `tenant_id` and `project_id`."""
    keys = tuple(values)
    stmt = _NUMBERED_INSERTS.get(keys)
    if stmt is None:
        stmt = _NUMBERED_INSERTS[keys] = _numbered_insert(keys)
    params = {**values, "reference_day": day, "reference_prefix": prefix}
    return (await session.execute(stmt, params)).scalar_one()


_COUNT_CALL = (
    update(complaints)
    .where(complaints.c.id == bindparam("complaint_id"), projects.c.id == complaints.c.project_id)
    .values(
        calls=complaints.c.calls + 1,
        version=complaints.c.version + 1,
        last_call_at=func.greatest(complaints.c.last_call_at, bindparam("at", type_=TZ)),
        updated_at=func.now(),
    )
    .returning(*complaints.c, projects.c.code.label("project_code"))
)


async def count_call(session: AsyncSession, complaint_id: UUID, received_at: datetime) -> Row:
    """One more call from the household about this case; the case after it, as
    `get_complaint` reads it (the UPDATE locks the row, and returning it saves reading it
    again). The version moves too, since the call is an event of the case."""
    params = {"complaint_id": complaint_id, "at": received_at}
    return (await session.execute(_COUNT_CALL, params)).one()


async def get_complaint(
    session: AsyncSession, complaint_id: UUID, *, for_update: bool = False
) -> Row | None:
    q = (
        select(complaints, projects.c.code.label("project_code"))
        .join(projects, projects.c.id == complaints.c.project_id)
        .where(complaints.c.id == complaint_id)
    )
    if for_update:
        q = q.with_for_update(of=complaints)
    return (await session.execute(q)).first()


async def update_complaint(
    session: AsyncSession, complaint_id: UUID, values: dict[str, Any]
) -> None:
    await session.execute(
        update(complaints)
        .where(complaints.c.id == complaint_id)
        .values(**values, updated_at=func.now())
    )


async def append_event(
    session: AsyncSession,
    *,
    tenant_id: UUID,
    project_id: UUID,
    complaint_id: UUID,
    type: str,
    actor: str,
    reason: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    await session.execute(
        complaint_events.insert().values(
            tenant_id=tenant_id,
            project_id=project_id,
            complaint_id=complaint_id,
            type=type,
            actor=actor,
            reason=reason,
            data=data or {},
        )
    )


_INSERT_EVENT = complaint_events.insert()


async def append_events(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Several timeline rows in one round trip; every row has the same keys (tenant_id,
    project_id, complaint_id, type, actor, reason, data)."""
    if rows:
        await session.execute(_INSERT_EVENT, rows)


async def timeline(session: AsyncSession, complaint_id: UUID) -> list[Row]:
    q = (
        select(complaint_events)
        .where(complaint_events.c.complaint_id == complaint_id)
        .order_by(complaint_events.c.id)
    )
    return list(await session.execute(q))


def _like(q: str) -> str:
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_WORD = re.compile(r"[^\W_]{3,}")


def has_trigrams(q: str) -> bool:
    """Whether pg_trgm can take trigrams from the query (a run of three or more letters or
    digits, any script). Without one the trigram index would be read whole, every
    tenant's entries included, so short queries filter the caller's rows instead."""
    return _WORD.search(q) is not None


def search_condition(q: str) -> Any:
    pattern = _like(q)
    if has_trigrams(q):
        # Through the owner's function: under RLS the planner never uses an index for
        # ILIKE (see migration 0001), so the trigram index is read there.
        return complaints.c.id.in_(
            select(func.intake.search_complaint_ids(pattern, type_=complaints.c.id.type))
        )
    return complaints.c.search_text.ilike(pattern, escape="\\")


def list_statement(
    *,
    project_id: UUID | None = None,
    status: str | None = None,
    grade: str | None = None,
    category: str | None = None,
    channel: str | None = None,
    received_from: datetime | None = None,
    received_to: datetime | None = None,
    q: str | None = None,
    after: tuple[datetime, UUID] | None = None,
    limit: int = 50,
) -> Select:
    """Newest first; `after` is the (received_at, id) of the last row of the previous page."""
    conds = []
    if project_id is not None:
        conds.append(complaints.c.project_id == project_id)
    for column, value in (
        (complaints.c.status, status),
        (complaints.c.grade, grade),
        (complaints.c.category, category),
        (complaints.c.channel, channel),
    ):
        if value is not None:
            conds.append(column == value)
    if received_from is not None:
        conds.append(complaints.c.received_at >= received_from)
    if received_to is not None:
        conds.append(complaints.c.received_at < received_to)
    if q:
        conds.append(search_condition(q))
    if after is not None:
        conds.append(tuple_(complaints.c.received_at, complaints.c.id) < tuple_(*after))
    return (
        select(complaints, projects.c.code.label("project_code"))
        .join(projects, projects.c.id == complaints.c.project_id)
        .where(and_(True, *conds))
        .order_by(complaints.c.received_at.desc(), complaints.c.id.desc())
        .limit(limit)
    )


async def list_complaints(session: AsyncSession, **filters: Any) -> list[Row]:
    """`list_statement(**filters)`, run."""
    return list(await session.execute(list_statement(**filters)))


async def insert_group_case(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(group_cases.insert().values(**values))


_JOIN_GROUP_CASE = text(
    "UPDATE intake.group_cases"
    " SET household_count = greatest(household_count, :size), updated_at = now()"
    " WHERE id = :id RETURNING reference"
)


async def join_group_case(
    session: AsyncSession, group_id: UUID, household_count: int
) -> str | None:
    """Count the group at least `household_count` households; its reference, or None when
    no such group is visible. One statement: read and update were two round trips under
    the project lock."""
    result = await session.execute(_JOIN_GROUP_CASE, {"size": household_count, "id": group_id})
    return result.scalar_one_or_none()


async def pending_invalidation(session: AsyncSession, complaint_id: UUID) -> Row | None:
    q = (
        select(invalidation_requests)
        .where(
            invalidation_requests.c.complaint_id == complaint_id,
            invalidation_requests.c.status == "pending",
        )
        .with_for_update()
    )
    return (await session.execute(q)).first()


async def insert_invalidation(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(invalidation_requests.insert().values(**values))


async def decide_invalidation(
    session: AsyncSession, request_id: UUID, status: str, decided_by: str, comment: str | None
) -> None:
    await session.execute(
        update(invalidation_requests)
        .where(invalidation_requests.c.id == request_id)
        .values(status=status, decided_by=decided_by, decided_at=func.now(), comment=comment)
    )


async def insert_flag(session: AsyncSession, values: dict[str, Any]) -> None:
    await session.execute(complaint_flags.insert().values(**values))
