"""Record a complaint: idempotency → project and unit → classification → duplicate and group
detection → insert with reference number → timeline and outbox, in one transaction.

A repeat from the same household on an open case (a duplicate) inserts nothing: the call
is counted and put on that case's timeline, and the answer is the case itself (200)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import orjson
import redis.asyncio as aioredis
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from intake import directory_cache, idempotency_cache
from intake.api.schemas import ComplaintIn
from intake.domain.case_status import CaseStatus, is_open
from intake.domain.classification import classify_category
from intake.domain.grading import REASON_SEPARATOR, GradingFacts, grade_complaint
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
from intake.domain.received_at import check_received_at
from intake.domain.rules import RulesError, TenantRules
from intake.domain.vocabulary import Channel, Grade
from intake.flows import history
from intake.flows.representation import complaint_body
from intake.store import complaints as store
from intake.store import idempotency
from propdesk.db.session import tenant_transaction
from propdesk.events.contracts.complaint import (
    ComplaintClassified,
    ComplaintDuplicateJoined,
    ComplaintGrouped,
    ComplaintReceived,
    ComplaintRegraded,
)
from propdesk.service.problems import ProblemError, field_error
from propdesk.tenancy import TenantContext

log = logging.getLogger("intake.record")


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


def _unprocessable(field: str, rule: str, message: str) -> ProblemError:
    return ProblemError(
        422,
        "Request validation failed",
        code="validation-failed",
        detail=f"{field}: {message}",
        errors=[field_error(field, rule, message)],
    )


def load_rules(overrides: dict[str, Any]) -> TenantRules:
    try:
        return TenantRules.from_overrides(overrides or None)
    except RulesError as exc:
        # Stored rules were valid when saved; a later stricter version must not stop intake.
        log.error("tenant rules invalid, using defaults: %s", exc)
        return TenantRules()


async def record_complaint(
    sessions: async_sessionmaker[AsyncSession],
    redis: aioredis.Redis | None,
    ctx: TenantContext,
    body: ComplaintIn,
    idempotency_key: str | None,
    *,
    now: datetime | None = None,
    prefetched: idempotency_cache.Prefetched | None = None,
) -> RecordResult:
    assert ctx.tenant_id is not None
    digest = request_hash(body) if idempotency_key else b""
    if idempotency_key:
        if prefetched is not None and prefetched.for_(ctx.tenant_id, idempotency_key):
            cached = prefetched.value
        else:
            cached = await idempotency_cache.get(redis, ctx.tenant_id, idempotency_key)
        if cached is not None:
            if cached[0] != digest:
                raise _idempotency_conflict(idempotency_key)
            return RecordResult(cached[1], cached[2], replayed=True)
    async with tenant_transaction(sessions, ctx) as s:
        if idempotency_key:
            stored = await idempotency.claim(s, ctx.tenant_id, idempotency_key, digest)
            if stored is not None:
                if stored.request_hash != digest:
                    raise _idempotency_conflict(idempotency_key)
                if stored.status_code is not None and stored.body is not None:
                    return RecordResult(stored.status_code, stored.body, replayed=True)
        result = await _record(s, ctx, body, now or datetime.now(UTC))
        if idempotency_key:
            await idempotency.complete(
                s,
                ctx.tenant_id,
                idempotency_key,
                result.status,
                result.body,
                UUID(result.body["id"]),
            )
    if idempotency_key:
        await idempotency_cache.put(
            redis, ctx.tenant_id, idempotency_key, digest, result.status, result.body
        )
    return result


def _require_aware(value: datetime | None, field: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise _unprocessable(field, "timezone_required", "must include a UTC offset")


async def _resolve_unit(
    s: AsyncSession, ctx: TenantContext, project_id: UUID, body: ComplaintIn
) -> tuple[UUID | None, str | None, str | None, UUID | None]:
    """(unit_id, building, room, household_id)."""
    unit_id: UUID | None = None
    building = room = None
    if body.unit is not None:
        if body.unit.id is not None:
            unit = await directory_cache.unit_by_id(s, ctx, body.unit.id)
            if unit is None or unit.project_id != project_id:
                raise _unprocessable("body.unit.id", "exists", "no such unit in this project")
            unit_id, building, room = unit.id, unit.building, unit.room
        else:
            building, room = body.unit.building, body.unit.room
            found = await directory_cache.find_unit(s, ctx, project_id, building or "", room or "")
            if found is not None:
                # Units not (yet) onboarded are still recorded, by their text only.
                unit_id, building = found.id, found.building
    household_id = unit_id
    if body.complainant is not None and body.complainant.household_id is not None:
        unit = await directory_cache.unit_by_id(s, ctx, body.complainant.household_id)
        if unit is None or unit.project_id != project_id:
            raise _unprocessable(
                "body.complainant.household_id", "exists", "no such unit in this project"
            )
        household_id = unit.id
        if unit_id is None:
            unit_id, building, room = unit.id, unit.building, unit.room
    return unit_id, building, room, household_id


def _facts(row: Row) -> CaseFacts:
    return CaseFacts(
        id=row.id,
        project_id=row.project_id,
        household=household_key(row.household_id, row.complainant_phone),
        phone=row.complainant_phone,
        category=row.category,
        building=row.building,
        place=row.place,
        content=row.content,
        received_at=row.received_at,
        is_open=is_open(row.status),
        group_case_id=row.group_case_id,
        reference=row.reference,
        prior_cases=row.prior_cases,
    )


@dataclass(frozen=True, slots=True)
class Repeat:
    """Where this complaint stands among complaints on its matter (二次投诉)."""

    prior_cases: int = 0
    previous_case_id: UUID | None = None
    previous_reference: str | None = None
    reason: str | None = None


async def _repeat(
    s: AsyncSession,
    body: ComplaintIn,
    new_case: CaseFacts,
    household_id: UUID | None,
    rules: TenantRules,
) -> Repeat:
    """The caller's word (`second_complaint`, `previous_case`) and what the records show (a
    handled case of the household on the same matter); the higher count wins."""
    candidates: list[Repeat] = []
    if body.second_complaint:
        candidates.append(Repeat(1, reason="the caller says it is a second complaint"))
    if body.previous_case is not None:
        previous = await store.complaint_by_ref(s, body.previous_case)
        if previous is None or previous.project_id != new_case.project_id:
            raise _unprocessable(
                "body.previous_case", "exists", "no such complaint in this project"
            )
        candidates.append(
            Repeat(
                previous.prior_cases + 1,
                previous.id,
                previous.reference,
                f"the caller names the earlier case {previous.reference}",
            )
        )
    earlier_rows = await store.handled_of_household(
        s,
        new_case.project_id,  # type: ignore[arg-type]
        household_id,
        new_case.phone,
        new_case.category.value,
        new_case.received_at,
        rules.repeat_window_days,
    )
    earlier: EarlierCase | None = find_earlier_case(
        new_case, [_facts(r) for r in earlier_rows], rules
    )
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
    s: AsyncSession, ctx: TenantContext, body: ComplaintIn, now: datetime
) -> RecordResult:
    project = await directory_cache.project_by_ref(s, ctx, body.project)
    if project is None:
        raise _unprocessable("body.project", "exists", f"unknown project {body.project!r}")
    rules = await directory_cache.tenant_rules(s, ctx, load_rules)
    _require_aware(body.received_at, "body.received_at")
    _require_aware(body.occurred_at, "body.occurred_at")
    received_at = body.received_at or now
    violation = check_received_at(received_at, now, rules, field="body.received_at")
    if violation is not None:
        raise _unprocessable(violation.field, violation.rule, violation.message)
    unit_id, building, room, household_id = await _resolve_unit(s, ctx, project.id, body)
    phone = body.complainant.phone if body.complainant else None
    channel = Channel(body.channel)

    category = classify_category(body.content, body.demand, rules, given=body.category)
    complaint_id = uuid4()
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
    # Before the lock: handled cases are changed by work-order events, which never take
    # it, and a complaint recorded meanwhile is not handled; so this read needs no lock,
    # and every other complaint of the project waits less.
    repeat = await _repeat(s, body, new_case, household_id, rules)
    # From here to commit, other complaints of the project wait: keep it to the matter
    # query, the reference number and the writes.
    await store.lock_project_matters(s, project.id)
    window = max(rules.group_window_hours, rules.duplicate_window_hours)
    recent = await store.recent_in_project(s, project.id, category.category, received_at, window)
    facts = [_facts(r) for r in recent]
    duplicate = find_duplicate(new_case, facts, rules)
    if duplicate is not None:
        # The same household on an open case: the call joins that case. No new complaint,
        # no reference number, no group change (the household is already counted).
        return await _join_open_case(s, ctx, body, duplicate, received_at, now)
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
        grade_reasons.insert(0, f"major:group{REASON_SEPARATOR}{group.reason}")

    tz = ZoneInfo(project.time_zone)
    day = now.astimezone(tz).date()
    prefix = f"{project.code}-{day:%Y%m%d}-"

    by_id = {r.id: r for r in recent}
    reference: str | None = None
    group_id: UUID | None = None
    group_reference: str | None = None
    if group is not None:
        # A new group's reference is made from this complaint's, so the number comes first.
        number = await store.next_reference_number(s, ctx.tenant_id, project.id, day)  # type: ignore[arg-type]
        reference = f"{prefix}{number:04d}"
        group_id, group_reference = await _open_or_join_group(
            s, ctx, project.id, group, reference, category.category, body.content
        )

    values: dict[str, Any] = {
        "id": complaint_id,
        "tenant_id": ctx.tenant_id,
        "project_id": project.id,
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
    if reference is None:
        # Most complaints: the number is drawn by the INSERT itself (one round trip).
        reference = await store.insert_numbered_complaint(s, values, day, prefix)
        values["reference"] = reference
    else:
        values["reference"] = reference
        await store.insert_complaint(s, values)

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
    await history.record_many(s, ctx, entries)
    if group is not None:
        assert group_id is not None and group_reference is not None
        await _regroup_members(s, ctx, group, group_id, group_reference, by_id, complaint_id)
    out = complaint_body(values, project.code)
    out["case"] = case
    return RecordResult(201, out)


async def _join_open_case(
    s: AsyncSession,
    ctx: TenantContext,
    body: ComplaintIn,
    duplicate: DuplicateMatch,
    received_at: datetime,
    now: datetime,
) -> RecordResult:
    """Record the call on the open case it repeats (DOMAIN.md: every complaint is recorded,
    and the same matter is handled once): count it, put it on the case's timeline, tell
    dispatch through `complaint.duplicate_joined`, answer with the case (200: nothing new
    was created)."""
    case_id = UUID(str(duplicate.case_id))
    # Found by this transaction's matter query, so it is there: count the call and read
    # the case back in one statement.
    row = await store.count_call(s, case_id, received_at)
    calls, seq = row.calls, row.version
    complainant = body.complainant
    channel = Channel(body.channel).value
    joined = ComplaintDuplicateJoined(
        complaint_id=case_id,
        reference=row.reference,
        project_id=row.project_id,
        reason=duplicate.reason,
        calls=calls,
        call_id=uuid4(),
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
    await history.record(
        s,
        ctx,
        project_id=row.project_id,
        complaint_id=case_id,
        seq=seq,
        payload=joined,
        reason=(
            f"call {calls} received by {body.receiver or ctx.actor} via {channel}: "
            f"{duplicate.reason}"
        ),
    )
    out = complaint_body(row._mapping)
    out["case"] = {
        "kind": "duplicate",
        "joined": str(case_id),
        "reference": row.reference,
        "reason": duplicate.reason,
        "calls": calls,
        "notify_complainant": False,
    }
    return RecordResult(200, out)


async def _open_or_join_group(
    s: AsyncSession,
    ctx: TenantContext,
    project_id: UUID,
    group: GroupDecision,
    reference: str,
    category: str,
    content: str,
) -> tuple[UUID, str]:
    if group.group_case_id is not None:
        gid = UUID(str(group.group_case_id))
        existing_reference = await store.join_group_case(s, gid, group.size)
        if existing_reference is not None:
            return gid, existing_reference
    gid = uuid4()
    group_reference = f"G-{reference}"
    await store.insert_group_case(
        s,
        {
            "id": gid,
            "tenant_id": ctx.tenant_id,
            "project_id": project_id,
            "reference": group_reference,
            "category": category,
            "matter": content[:200],
            "household_count": group.size,
        },
    )
    return gid, group_reference


async def _regroup_members(
    s: AsyncSession,
    ctx: TenantContext,
    group: GroupDecision,
    group_id: UUID,
    group_reference: str,
    by_id: dict[Any, Row],
    new_id: UUID,
) -> None:
    """Link every member to the group and raise each to major, with an event apiece, so
    each member's complainant is told too."""
    members = [*group.member_case_ids, new_id]
    for member_id in group.member_case_ids:
        row = by_id.get(member_id)
        if row is None:
            continue
        common = {"complaint_id": row.id, "reference": row.reference, "project_id": row.project_id}
        if row.grade != Grade.MAJOR.value:
            reasons = [f"major:group{REASON_SEPARATOR}{group.reason}", *row.grade_reasons]
            await store.update_complaint(
                s, row.id, {"grade": Grade.MAJOR.value, "grade_reasons": reasons}
            )
            seq = await history.bump_version(s, row.id)
            await history.record(
                s,
                ctx,
                project_id=row.project_id,
                complaint_id=row.id,
                seq=seq,
                payload=ComplaintRegraded(
                    **common,
                    previous_grade=row.grade,
                    grade=Grade.MAJOR.value,
                    grade_reasons=reasons,
                    reason=group.reason,
                    group_case_id=group_id,
                ),
                reason=group.reason,
            )
        if row.group_case_id != group_id:
            await store.update_complaint(s, row.id, {"group_case_id": group_id})
            seq = await history.bump_version(s, row.id)
            await history.record(
                s,
                ctx,
                project_id=row.project_id,
                complaint_id=row.id,
                seq=seq,
                payload=ComplaintGrouped(
                    **common,
                    group_case_id=group_id,
                    group_reference=group_reference,
                    household_count=group.size,
                    member_ids=members,  # type: ignore[arg-type]
                    category=row.category,
                ),
                reason=group.reason,
            )
