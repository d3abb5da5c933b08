"""Record a complaint: project and unit → classification → duplicate and group detection →
insert with reference number → timeline, outbox and idempotency key, in one transaction.

A repeat from the same household on an open case (a duplicate) inserts nothing: the call
is counted and put on that case's timeline, and the answer is the case itself (200).

Idempotency: Redis answers most replays before any transaction. Otherwise the key row is
written with the final answer by the last statement of the transaction; if a request with
the same key committed meanwhile, this one rolls back and answers what that one stored
(or 422 if its body differed). So concurrent identical requests make one complaint. Keys
are the caller's own (`idempotency_cache.namespace`: per tenant and per credential with
its project scope), so a replay only ever answers with what the same credential recorded,
and never says whether another caller used the key.

The statements of a plain new complaint (`store.recording`): tenant context, project lock,
one read (reference number, recent cases, household history), one write, commit."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import asyncpg
import orjson
import redis.asyncio as aioredis
from opentelemetry import trace
from prometheus_client import Histogram
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from intake import directory_cache, idempotency_cache
from intake.api.schemas import ComplaintIn
from intake.domain.case_status import CaseStatus, is_open
from intake.domain.classification import classify_category
from intake.domain.grading import (
    GradingFacts,
    grade_complaint,
    raised_by_group,
    standing_override,
)
from intake.domain.matching import (
    CaseFacts,
    DuplicateMatch,
    EarlierCase,
    GroupDecision,
    detect_group,
    find_duplicate,
    find_earlier_case,
    household_key,
)
from intake.domain.received_at import check_occurred_at, check_received_at
from intake.domain.rules import RulesError, TenantRules
from intake.domain.vocabulary import Channel, Grade
from intake.flows import history
from intake.flows.representation import complaint_body
from intake.store import complaints as store
from intake.store import idempotency, recording
from propdesk.bus.faults import crash_point, pause_point
from propdesk.db.session import tenant_transaction
from propdesk.events import EventPayload
from propdesk.events.contracts.complaint import (
    ComplaintClassified,
    ComplaintDuplicateJoined,
    ComplaintGrouped,
    ComplaintReceived,
    ComplaintRegraded,
)
from propdesk.service.problems import ProblemError, field_error, invalid
from propdesk.tenancy import TenantContext
from propdesk.uuid7 import uuid7

log = logging.getLogger("intake.record")
tracer = trace.get_tracer("intake")
RECORD_DELAY = Histogram(
    "propdesk_intake_record_delay_seconds",
    "From a complaint's receipt (received_at, as the caller gave it) to its recording, by"
    " channel: the procedure's 3-minute clock (DOMAIN.md). Replays are not counted.",
    ["channel"],
    buckets=(1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 180.0, 300.0, 600.0, 1800.0, 3600.0, 86400.0),
)


@dataclass(frozen=True, slots=True)
class RecordResult:
    status: int
    body: dict[str, Any]
    replayed: bool = False
    headers: dict[str, str] = field(default_factory=dict)


def request_hash(body: ComplaintIn) -> bytes:
    return hashlib.sha256(
        orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    ).digest()


def _idempotency_conflict(key: str) -> ProblemError:
    return ProblemError(
        422,
        "Idempotency key reused",
        code="idempotency-key-reused",
        detail=f"Idempotency-Key {key!r} was already used with a different request body.",
        errors=[
            field_error(
                "header.Idempotency-Key",
                "same_body",
                "this key was used for another request body; use a new key",
            )
        ],
    )


def load_rules(overrides: dict[str, Any]) -> TenantRules:
    try:
        return TenantRules.from_overrides(overrides or None)
    except RulesError as exc:
        # Stored rules were valid when saved; a later stricter version must not stop intake.
        log.error("tenant rules invalid, using defaults: %s", exc)
        return TenantRules()


@dataclass(frozen=True, slots=True)
class _Key:
    """The request's Idempotency-Key, the caller's namespace it lives in, and the hash of
    its body."""

    key: str
    digest: bytes
    namespace: str

    def row(self, ctx: TenantContext, result: RecordResult, resource_id: UUID) -> recording.KeyRow:
        assert ctx.tenant_id is not None
        return recording.KeyRow(
            ctx.tenant_id,
            self.namespace,
            self.key,
            self.digest,
            result.status,
            result.body,
            resource_id,
        )


class _KeyTaken(Exception):
    """A request with the same key committed while this one ran: roll back, then replay."""


# Keys being recorded by this process: a request whose key is in flight here waits for the
# first to finish and replays its stored answer, instead of running a whole recording
# that would roll back (`_KeyTaken`). Across processes the key's unique row decides.
_IN_FLIGHT: dict[tuple[UUID, str, str], asyncio.Event] = {}


@asynccontextmanager
async def _first_in_flight(tenant_id: UUID, key: _Key) -> AsyncIterator[bool]:
    """True for the request that records; False for one that waited for it to finish."""
    flight = (tenant_id, key.namespace, key.key)
    running = _IN_FLIGHT.get(flight)
    if running is not None:
        await running.wait()
        yield False
        return
    done = _IN_FLIGHT[flight] = asyncio.Event()
    try:
        yield True
    finally:
        del _IN_FLIGHT[flight]
        done.set()


async def record_complaint(
    sessions: async_sessionmaker[AsyncSession],
    driver_pool: Callable[[], Awaitable[asyncpg.Pool]],
    redis: aioredis.Redis | None,
    ctx: TenantContext,
    body: ComplaintIn,
    idempotency_key: str | None,
    *,
    now: datetime | None = None,
    prefetched: idempotency_cache.Prefetched | None = None,
) -> RecordResult:
    assert ctx.tenant_id is not None
    key = (
        _Key(idempotency_key, request_hash(body), idempotency_cache.namespace(ctx))
        if idempotency_key
        else None
    )
    if key is not None:
        if prefetched is not None and prefetched.for_(ctx.tenant_id, key.namespace, key.key):
            cached = prefetched.value
        else:
            cached = await idempotency_cache.get(redis, ctx.tenant_id, key.namespace, key.key)
        if cached is not None:
            if cached[0] != key.digest:
                raise _idempotency_conflict(key.key)
            return RecordResult(cached[1], cached[2], replayed=True)
    if key is None:
        return await _record_with_retries(sessions, driver_pool, redis, ctx, body, None, now)
    async with _first_in_flight(ctx.tenant_id, key) as first:
        if not first and (replay := await _stored(sessions, ctx, key)) is not None:
            return replay
        # First, or the first failed without storing an answer: record.
        return await _record_with_retries(sessions, driver_pool, redis, ctx, body, key, now)


async def _record_with_retries(
    sessions: async_sessionmaker[AsyncSession],
    driver_pool: Callable[[], Awaitable[asyncpg.Pool]],
    redis: aioredis.Redis | None,
    ctx: TenantContext,
    body: ComplaintIn,
    key: _Key | None,
    now: datetime | None,
) -> RecordResult:
    assert ctx.tenant_id is not None
    await pause_point("intake.recording")
    now = now or datetime.now(UTC)
    with tracer.start_as_current_span("record complaint") as span:
        try:
            # Each kind of retry has its own budget: moved cases must not use up the
            # attempts a deadlock gets, nor the reverse.
            deadlocks = moves = 0
            while True:
                try:
                    result = await _record_once(sessions, driver_pool, ctx, body, now, key, span)
                    break
                except asyncpg.exceptions.DeadlockDetectedError:
                    # A group's member locks against a work-order step batch that locked
                    # the same complaints in another order: PostgreSQL aborted this side.
                    deadlocks += 1
                    if deadlocks == DEADLOCK_ATTEMPTS:
                        raise
                    log.warning("recording deadlocked (attempt %d), retrying", deadlocks)
                except recording.CaseMoved as moved:
                    # A case of the matter was closed or invalidated (row lock, not the
                    # project's) between the matter read and its lock: read it again.
                    moves += 1
                    if moves == MOVED_ATTEMPTS:
                        raise _busy() from moved
                    log.info("recording: %s (attempt %d), recording again", moved, moves)
        except _KeyTaken:
            assert key is not None
            span.set_attribute("propdesk.idempotent_replay", True)
            return await _replay(sessions, redis, ctx, key)
        except ProblemError:
            # A retry may no longer pass the checks the first request passed (its
            # `received_at` has aged, say): the stored answer still stands.
            if key is not None and (replay := await _stored(sessions, ctx, key)) is not None:
                return replay
            raise
        span.set_attribute("propdesk.case_kind", result.body["case"]["kind"])
    received_at = body.received_at or now
    RECORD_DELAY.labels(Channel(body.channel).value).observe((now - received_at).total_seconds())
    crash_point("intake.after_commit")
    if key is not None:
        await idempotency_cache.put(
            redis, ctx.tenant_id, key.namespace, key.key, key.digest, result.status, result.body
        )
    return result


DEADLOCK_ATTEMPTS = 3
MOVED_ATTEMPTS = 3


def _busy() -> ProblemError:
    return ProblemError(
        409,
        "Conflict",
        code="case-changing",
        detail="The cases on this matter kept changing while the complaint was recorded;"
        " send it again.",
    )


async def _record_once(
    sessions: async_sessionmaker[AsyncSession],
    driver_pool: Callable[[], Awaitable[asyncpg.Pool]],
    ctx: TenantContext,
    body: ComplaintIn,
    now: datetime,
    key: _Key | None,
    span: trace.Span,
) -> RecordResult:
    """One attempt, on the driver pool, or on a session when a step needs one."""
    try:
        async with recording.driver_transaction(await driver_pool(), sessions, ctx) as tx:
            result = await _record(tx, ctx, body, now, key)
        span.set_attribute("propdesk.recording.transaction", "driver")
    except recording.SessionNeeded:
        # A cold directory entry or a named earlier case.
        async with recording.session_transaction(sessions, ctx) as tx:
            result = await _record(tx, ctx, body, now, key)
        span.set_attribute("propdesk.recording.transaction", "session")
    return result


async def _stored(
    sessions: async_sessionmaker[AsyncSession], ctx: TenantContext, key: _Key
) -> RecordResult | None:
    """The answer stored under the key, as a replay; 422 if it was for another body."""
    assert ctx.tenant_id is not None
    async with tenant_transaction(sessions, ctx) as s:
        found = await idempotency.stored(s, ctx.tenant_id, key.namespace, key.key)
    if found is None:
        return None
    if found.request_hash != key.digest:
        raise _idempotency_conflict(key.key)
    if found.status_code is None or found.body is None:
        # Keys are written with their answer in one statement; a row without one is not
        # this version's, and the request cannot be answered from it.
        raise ProblemError(
            409,
            "Idempotent request in progress",
            code="idempotency-in-progress",
            detail=f"Idempotency-Key {key.key!r} has no stored answer yet; retry later.",
        )
    return RecordResult(found.status_code, found.body, replayed=True)


async def _replay(
    sessions: async_sessionmaker[AsyncSession],
    redis: aioredis.Redis | None,
    ctx: TenantContext,
    key: _Key,
) -> RecordResult:
    assert ctx.tenant_id is not None
    replay = await _stored(sessions, ctx, key)
    if replay is None:  # the key row is never deleted within its retention period
        raise RuntimeError(f"idempotency key {key.key!r} taken, yet not stored")
    await idempotency_cache.put(
        redis, ctx.tenant_id, key.namespace, key.key, key.digest, replay.status, replay.body
    )
    return replay


def _require_aware(value: datetime | None, field: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise invalid(field, "timezone_required", "must include a UTC offset")


def _resolve_unit(
    units: directory_cache.ProjectUnits | None, body: ComplaintIn
) -> tuple[UUID | None, str | None, str | None, UUID | None]:
    """(unit_id, building, room, household_id), from the project's units (None when the
    body names no unit and no household)."""
    unit_id: UUID | None = None
    building = room = None
    if body.unit is not None:
        assert units is not None
        if body.unit.id is not None:
            unit = units.by_id.get(body.unit.id)
            if unit is None:
                raise invalid("body.unit.id", "exists", "no such unit in this project")
            unit_id, building, room = unit.id, unit.building, unit.room
        else:
            building, room = body.unit.building, body.unit.room
            found = units.by_place.get((building or "", room or ""))
            if found is not None:
                # Units not (yet) onboarded are still recorded, by their text only.
                unit_id, building = found.id, found.building
    household_id = unit_id
    if body.complainant is not None and body.complainant.household_id is not None:
        assert units is not None
        unit = units.by_id.get(body.complainant.household_id)
        if unit is None:
            raise invalid("body.complainant.household_id", "exists", "no such unit in this project")
        household_id = unit.id
        if unit_id is None:
            unit_id, building, room = unit.id, unit.building, unit.room
    return unit_id, building, room, household_id


def _facts(row: Mapping[str, Any]) -> CaseFacts:
    return CaseFacts(
        id=row["id"],
        project_id=row["project_id"],
        household=household_key(row["household_id"], row["complainant_phone"]),
        phone=row["complainant_phone"],
        category=row["category"],
        building=row["building"],
        place=row["place"],
        content=row["content"],
        received_at=row["received_at"],
        is_open=is_open(row["status"]),
        group_case_id=row["group_case_id"],
        reference=row["reference"],
        prior_cases=row["prior_cases"],
    )


@dataclass(frozen=True, slots=True)
class Repeat:
    """Where this complaint stands among complaints on its matter (二次投诉)."""

    prior_cases: int = 0
    previous_case_id: UUID | None = None
    previous_reference: str | None = None
    reason: str | None = None


async def _named_previous(
    tx: recording.RecordingTx, body: ComplaintIn, project_id: UUID
) -> Row | None:
    """The earlier case the caller names (`previous_case`), checked to be of this project."""
    if body.previous_case is None:
        return None
    previous = await store.complaint_by_ref(await tx.session(), body.previous_case)
    if previous is None or previous.project_id != project_id:
        raise invalid("body.previous_case", "exists", "no such complaint in this project")
    return previous


def _repeat(
    body: ComplaintIn,
    new_case: CaseFacts,
    previous: Row | None,
    handled: list[Mapping[str, Any]],
    rules: TenantRules,
) -> Repeat:
    """The caller's word (`second_complaint`, `previous_case`) and what the records show (a
    handled case of the household on the same matter); the higher count wins."""
    candidates: list[Repeat] = []
    if body.second_complaint:
        candidates.append(Repeat(1, reason="the caller says it is a second complaint"))
    if previous is not None:
        candidates.append(
            Repeat(
                previous.prior_cases + 1,
                previous.id,
                previous.reference,
                f"the caller names the earlier case {previous.reference}",
            )
        )
    earlier: EarlierCase | None = find_earlier_case(new_case, [_facts(r) for r in handled], rules)
    if earlier is not None:
        candidates.append(
            Repeat(
                earlier.prior_cases,
                UUID(str(earlier.case_id)),
                earlier.reference,
                earlier.reason,
            )
        )
    if not candidates:
        return Repeat()
    # Prefer a named case over the bare flag at the same count.
    return max(candidates, key=lambda r: (r.prior_cases, r.previous_case_id is not None))


async def _record(
    tx: recording.RecordingTx,
    ctx: TenantContext,
    body: ComplaintIn,
    now: datetime,
    key: _Key | None,
) -> RecordResult:
    project = await directory_cache.project_by_ref(
        tx.session, ctx, body.project, sessions=tx.sessions
    )
    if project is None:
        raise invalid("body.project", "exists", f"unknown project {body.project!r}")
    rules = await directory_cache.tenant_rules(tx.session, ctx, load_rules, sessions=tx.sessions)
    _require_aware(body.received_at, "body.received_at")
    _require_aware(body.occurred_at, "body.occurred_at")
    received_at = body.received_at or now
    violation = check_received_at(received_at, now, rules, field="body.received_at")
    if violation is None and body.occurred_at is not None:
        violation = check_occurred_at(
            body.occurred_at, received_at, rules, field="body.occurred_at"
        )
    if violation is not None:
        raise invalid(violation.field, violation.rule, violation.message)
    names_a_unit = body.unit is not None or (
        body.complainant is not None and body.complainant.household_id is not None
    )
    units = (
        await directory_cache.project_units(tx.session, ctx, project.id, sessions=tx.sessions)
        if names_a_unit
        else None
    )
    unit_id, building, room, household_id = _resolve_unit(units, body)
    phone = body.complainant.phone if body.complainant else None
    channel = Channel(body.channel)

    category = classify_category(body.content, body.demand, rules, given=body.category)
    complaint_id = uuid7()
    new_case = CaseFacts(
        id=complaint_id,
        project_id=project.id,
        household=household_key(household_id, phone),
        phone=phone,
        category=category.category,
        building=building,
        place=body.place,
        content=body.content,
        received_at=received_at,
    )
    previous = await _named_previous(tx, body, project.id)
    tz = ZoneInfo(project.time_zone)
    day = now.astimezone(tz).date()
    conn = tx.conn
    # From here to commit, other complaints of the project wait: keep it to one read and
    # the writes.
    await recording.lock_matters(conn, ctx, project.id)
    matters = await recording.read_matters(
        conn,
        tenant_id=ctx.tenant_id,  # type: ignore[arg-type]
        project_id=project.id,
        day=day,
        category=category.category.value,
        around=received_at,
        window_hours=max(rules.group_window_hours, rules.duplicate_window_hours),
        household_id=household_id,
        phone=phone,
        repeat_window_days=rules.repeat_window_days,
    )
    repeat = _repeat(body, new_case, previous, matters.handled, rules)
    facts = [_facts(r) for r in matters.recent]
    duplicate = find_duplicate(new_case, facts, rules)
    if duplicate is not None:
        # The same household on an open case: the call joins that case. No new complaint,
        # no reference number, no group change (the household is already counted).
        await recording.give_back_number(conn, project.id, day, matters.number)
        return await _join_open_case(conn, ctx, body, duplicate, received_at, now, key)
    group = detect_group(new_case, facts, rules)
    grade = grade_complaint(
        GradingFacts(
            channel=channel,
            content=body.content,
            demand=body.demand,
            category=category.category,
            is_second_complaint=body.second_complaint,
            prior_cases=repeat.prior_cases,
            previous_reference=repeat.previous_reference,
            forwarded_dissatisfied=body.forwarded_result == "dissatisfied",
            group_size=group.size if group else 1,
        ),
        rules,
    )
    grade_value, grade_reasons = grade.grade, list(grade.reasons)
    if group is not None and grade_value is not Grade.MAJOR:
        # Joining an existing group: the group is major whatever this one's count says.
        grade_value = Grade.MAJOR
        grade_reasons = raised_by_group(grade_reasons, group.reason)

    reference = f"{project.code}-{day:%Y%m%d}-{matters.number:04d}"
    by_id = {r["id"]: r for r in matters.recent}
    group_id: UUID | None = None
    group_reference: str | None = None
    group_case: recording.GroupCase | None = None
    if group is not None:
        group_case = _group_case(
            ctx, project.id, group, reference, category.category.value, body.content, by_id
        )
        group_id, group_reference = group_case.id, group_case.reference

    values: dict[str, Any] = {
        "id": complaint_id,
        "tenant_id": ctx.tenant_id,
        "project_id": project.id,
        "reference": reference,
        "channel": channel.value,
        "status": CaseStatus.RECEIVED.value,
        "validity": "pending",
        "category": category.category.value,
        "category_source": "caller" if body.category else "rules",
        "category_reason": category.reason,
        "grade": grade_value.value,
        "grade_reasons": grade_reasons,
        "complainant_name": body.complainant.name if body.complainant else None,
        "complainant_phone": phone,
        "complainant_email": body.complainant.email if body.complainant else None,
        "household_id": household_id,
        "unit_id": unit_id,
        "building": building,
        "room": room,
        "received_at": received_at,
        "recorded_at": now,
        "occurred_at": body.occurred_at,
        "place": body.place,
        "lat": body.lat,
        "long": body.long,
        "content": body.content,
        "demand": body.demand,
        "receiver": body.receiver,
        "attachments": [a.model_dump(mode="json") for a in body.attachments],
        "external_reference": body.external_reference,
        "device_id": body.device_id,
        "previous_case_id": repeat.previous_case_id,
        "prior_cases": repeat.prior_cases,
        "forwarded_result": body.forwarded_result,
        "group_case_id": group_id,
        "flags": [],
        "calls": 1,
        "last_call_at": None,
        # The events below are versions 1..n; set the final one now, not by a later UPDATE.
        "version": 3 if group is not None else 2,
        "created_by": ctx.actor,
    }
    common = {"complaint_id": complaint_id, "reference": reference, "project_id": project.id}
    entries = [
        history.Entry(
            project.id,
            complaint_id,
            1,
            ComplaintReceived(
                **common,
                channel=channel.value,
                received_at=received_at,
                recorded_at=now,
                category=category.category.value,
                unit_id=unit_id,
                building=building,
                place=body.place,
                summary=body.content[:200],
                receiver=body.receiver,
                external_reference=body.external_reference,
                project_code=project.code,
                room=room,
                household_id=household_id,
                complainant_name=values["complainant_name"],
                complainant_phone=phone,
                occurred_at=body.occurred_at,
                content=body.content,
                demand=body.demand,
                attachments=values["attachments"],
                group_case_id=group_id,
                complainant_email=values["complainant_email"],
                lat=body.lat,
                long=body.long,
                device_id=body.device_id,
                previous_case_id=repeat.previous_case_id,
                prior_cases=repeat.prior_cases,
                forwarded_result=body.forwarded_result,
            ),
            reason=f"received by {body.receiver or ctx.actor} via {channel.value}",
        ),
        history.Entry(
            project.id,
            complaint_id,
            2,
            ComplaintClassified(
                **common,
                channel=channel.value,
                category=category.category.value,
                grade=grade_value.value,
                grade_reasons=grade_reasons,
                category_reason=category.reason,
                received_at=received_at,
                recorded_at=now,
                building=building,
                unit_id=unit_id,
                group_case_id=group_id,
                place=body.place,
            ),
            # The grade's why belongs in the history a reviewer reads, not only in the data.
            reason=f"{category.reason}; {grade_value.value}: {'; '.join(grade_reasons)}",
            data={"second_complaint_basis": repeat.reason} if repeat.reason else None,
        ),
    ]
    case: dict[str, Any] = {"kind": "new", "notify_complainant": False}
    if group is not None:
        assert group_id is not None and group_reference is not None
        entries.append(
            history.Entry(
                project.id,
                complaint_id,
                3,
                ComplaintGrouped(
                    **common,
                    group_case_id=group_id,
                    group_reference=group_reference,
                    household_count=group.size,
                    member_ids=[*group.member_case_ids, complaint_id],  # type: ignore[list-item]
                    category=category.category.value,
                ),
                reason=group.reason,
            )
        )
        case = {
            **case,
            "kind": "group",
            "group_case_id": str(group_id),
            "group_reference": group_reference,
            "household_count": group.size,
            "reason": group.reason,
            "notify_complainant": True,
        }
    assert values["version"] == len(entries)
    members: list[recording.MemberUpdate] = []
    notes: list[dict[str, Any]] = []
    if group is not None:
        assert group_id is not None and group_reference is not None
        members, member_entries, notes = await _regroup_members(
            conn, ctx, group, group_id, group_reference, by_id, complaint_id
        )
        entries += member_entries
    out = complaint_body(values, project.code)
    out["case"] = case
    result = RecordResult(201, out)
    await _write(
        conn,
        ctx,
        entries,
        result,
        complaint_id,
        key,
        complaint=values,
        group=group_case,
        members=members,
        notes=notes,
    )
    return result


async def _write(
    conn: asyncpg.Connection,
    ctx: TenantContext,
    entries: list[history.Entry],
    result: RecordResult,
    case_id: UUID,
    key: _Key | None,
    *,
    complaint: Mapping[str, Any] | None,
    group: recording.GroupCase | None = None,
    members: list[recording.MemberUpdate] | None = None,
    notes: list[dict[str, Any]] | None = None,
) -> None:
    """The last statement: the group case and members (if any), the complaint (if new), the
    timeline (with `notes`, timeline rows without an event) and outbox rows, the key."""
    timeline, events = history.timeline_and_events(ctx, entries)
    stored = await recording.write(
        conn,
        complaint=complaint,
        timeline=[*timeline, *(notes or ())],
        outbox=history.outbox.rows(*events),
        key=key.row(ctx, result, case_id) if key is not None else None,
        group=group,
        members=members or (),
    )
    if not stored:
        raise _KeyTaken


async def _join_open_case(
    conn: asyncpg.Connection,
    ctx: TenantContext,
    body: ComplaintIn,
    duplicate: DuplicateMatch,
    received_at: datetime,
    now: datetime,
    key: _Key | None,
) -> RecordResult:
    """Record the call on the open case it repeats (DOMAIN.md: every complaint is recorded,
    and the same matter is handled once): count it, put it on the case's timeline, tell
    dispatch through `complaint.duplicate_joined`, answer with the case (200: nothing new
    was created)."""
    case_id = UUID(str(duplicate.case_id))
    # Found by this transaction's matter query, so it is there: count the call and read
    # the case back in one statement.
    row = await recording.count_call(conn, case_id, received_at)
    calls, seq = row["calls"], row["version"]
    complainant = body.complainant
    channel = Channel(body.channel).value
    joined = ComplaintDuplicateJoined(
        complaint_id=case_id,
        reference=row["reference"],
        project_id=row["project_id"],
        reason=duplicate.reason,
        calls=calls,
        call_id=uuid7(),
        channel=channel,
        received_at=received_at,
        recorded_at=now,
        receiver=body.receiver,
        external_reference=body.external_reference,
        complainant_name=complainant.name if complainant else None,
        complainant_phone=complainant.phone if complainant else None,
        summary=body.content[:200],
        content=body.content,
        demand=body.demand,
        attachments=[a.model_dump(mode="json") for a in body.attachments],
    )
    entry = history.Entry(
        row["project_id"],
        case_id,
        seq,
        joined,
        reason=(
            f"call {calls} received by {body.receiver or ctx.actor} via {channel}: "
            f"{duplicate.reason}"
        ),
        # As the row lock has it: a work-order step may have moved the case since the
        # matters were read (it takes the row, not the project).
        data={"status_after": row["status"]},
    )
    out = complaint_body(row)
    out["case"] = {
        "kind": "duplicate",
        "joined": str(case_id),
        "reference": row["reference"],
        "reason": duplicate.reason,
        "calls": calls,
        "notify_complainant": False,
    }
    result = RecordResult(200, out)
    await _write(conn, ctx, [entry], result, case_id, key, complaint=None)
    return result


def _group_case(
    ctx: TenantContext,
    project_id: UUID,
    group: GroupDecision,
    reference: str,
    category: str,
    content: str,
    by_id: dict[Any, Mapping[str, Any]],
) -> recording.GroupCase:
    """The group case the complaint joins (the members' group, its reference read with
    them), or a new one named after the complaint (`G-<reference>`)."""
    assert ctx.tenant_id is not None
    if group.group_case_id is not None:
        for row in by_id.values():
            if row["group_case_id"] == group.group_case_id and row["group_reference"]:
                return recording.GroupCase(
                    UUID(str(group.group_case_id)),
                    ctx.tenant_id,
                    project_id,
                    row["group_reference"],
                    category,
                    content[:200],
                    group.size,
                    new=False,
                )
    return recording.GroupCase(
        uuid7(),
        ctx.tenant_id,
        project_id,
        f"G-{reference}",
        category,
        content[:200],
        group.size,
        new=True,
    )


async def _regroup_members(
    conn: asyncpg.Connection,
    ctx: TenantContext,
    group: GroupDecision,
    group_id: UUID,
    group_reference: str,
    by_id: dict[Any, Mapping[str, Any]],
    new_id: UUID,
) -> tuple[list[recording.MemberUpdate], list[history.Entry], list[dict[str, Any]]]:
    """Link every member to the group and raise each to major, with an event apiece, so
    each member's complainant is told too: the members' updates, their entries, and the
    timeline notes of members a staff override keeps from being raised.

    A grade set by a staff override is a person's decision, with a reason: the group
    still links the member (its household counts), but does not raise it; its timeline
    says the upgrade was not applied and why (`complaint.regrade_withheld`, no event: the
    member does not change). Only another override changes that grade."""
    members = [*group.member_case_ids, new_id]

    def changes(grade: str, group_case_id: UUID | None) -> bool:
        return grade != Grade.MAJOR.value or group_case_id != group_id

    changing = [
        row
        for member_id in group.member_case_ids
        if (row := by_id.get(member_id)) is not None and changes(row["grade"], row["group_case_id"])
    ]
    if not changing:
        return [], [], []
    # Grade, reasons and group as they are under the row lock: a staff override may have
    # committed since the matters were read (it locks the row, not the project).
    locked = await recording.lock_members(conn, [row["id"] for row in changing])
    updates: list[recording.MemberUpdate] = []
    entries: list[history.Entry] = []
    notes: list[dict[str, Any]] = []
    if any(m.validity == "invalid" for m in locked.values()):
        # Invalidated since the matter was read: it no longer counts as a household, and
        # the group (if any) is another one. Decide again on what is there now.
        raise recording.CaseMoved("a group member was invalidated")
    for row in changing:
        now = locked[row["id"]]
        if not changes(now.grade, now.group_case_id):
            continue
        seq = now.version
        common = {
            "complaint_id": row["id"],
            "reference": row["reference"],
            "project_id": row["project_id"],
        }
        payloads: list[EventPayload] = []
        grade, reasons = now.grade, now.grade_reasons
        override = (
            standing_override(now.grade, now.grade_reasons)
            if now.grade != Grade.MAJOR.value
            else None
        )
        if now.grade != Grade.MAJOR.value and override is None:
            grade = Grade.MAJOR.value
            reasons = raised_by_group(reasons, group.reason)
            payloads.append(
                ComplaintRegraded(
                    **common,
                    previous_grade=now.grade,
                    grade=grade,
                    grade_reasons=reasons,
                    reason=group.reason,
                    group_case_id=group_id,
                )
            )
        if now.group_case_id != group_id:
            payloads.append(
                ComplaintGrouped(
                    **common,
                    group_case_id=group_id,
                    group_reference=group_reference,
                    household_count=group.size,
                    member_ids=members,  # type: ignore[arg-type]
                    category=row["category"],
                )
            )
        # The member's next versions, one per event; its status does not change, and its
        # timeline rows say which it is (a closed case stays closed in the updates feed).
        entries += [
            history.Entry(
                row["project_id"],
                row["id"],
                seq + n,
                payload,
                reason=group.reason,
                data={"status_after": now.status},
            )
            for n, payload in enumerate(payloads, start=1)
        ]
        if payloads:
            updates.append(
                recording.MemberUpdate(row["id"], grade, reasons, group_id, len(payloads))
            )
        if override is not None:
            notes.append(
                history.note(
                    ctx,
                    project_id=row["project_id"],
                    complaint_id=row["id"],
                    kind="complaint.regrade_withheld",
                    reason=(
                        f"not raised to major with group {group_reference} ({group.size} "
                        f"households): the staff override to {now.grade} stands ({override})"
                    ),
                    data={
                        **{k: str(v) for k, v in common.items()},
                        "grade": now.grade,
                        "withheld_grade": Grade.MAJOR.value,
                        "withheld_reason": group.reason,
                        "override_reason": override,
                        "group_case_id": str(group_id),
                        "group_reference": group_reference,
                        "status_after": now.status,
                        "household_count": group.size,
                    },
                )
            )
    return updates, entries, notes
