"""Conflicting changes to one complaint (or one project's matter) at the same moment, on
the real PostgreSQL.

Each race is made deterministic by holding a lock from another connection (the
complaint's row, or the project's matter lock) until every contender waits behind it,
then letting them go; contenders that must go in a given order are queued one after the
other. Whatever happened, the complaint's row, its timeline and its outbox must tell it:
one timeline row and one event per applied change and none for a loser, versions without
gap, and the row as its last events say. (Concurrent identical Idempotency-Keys:
test_idempotency_and_isolation.)"""

from __future__ import annotations

import itertools
import json
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from intake.handlers import consumers
from propdesk.bus.consumer import ConsumerRunner
from propdesk.events.contracts import work_order as wo
from propdesk.service.resources import ServiceResources
from propdesk.testing import lock_waits

from . import test_work_order_lifecycle as lifecycle
from .conftest import Company, onboard

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def company(resources) -> Company:
    # A company of its own per test: no other test's cases share its matters.
    return await onboard(resources, f"R{uuid4().hex[:6].upper()}", "竞态物业")


@pytest.fixture
def runner(resources) -> ConsumerRunner:
    [consumer] = consumers()
    return ConsumerRunner(consumer, resources.settings, resources.sessions)


# --- holding a complaint still -----------------------------------------------------------


async def in_turn(
    res: ServiceResources, lock_sql: str, arg: Any, contenders: list[Callable[[], Awaitable[Any]]]
) -> list[Any]:
    """Run the contenders while `lock_sql` (on `arg`) is held elsewhere, each started once
    the previous one waits (so they queue in this order), and release the lock once all
    wait."""
    return await lock_waits.in_turn(res.settings.database_url, lock_sql, [arg], contenders)


ROW_LOCK = "SELECT 1 FROM intake.complaints WHERE id = $1 FOR UPDATE"
MATTER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('intake:matter:' || $1::text, 0))"


# --- what is stored ----------------------------------------------------------------------


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def stored(db_rows, complaint_id: str) -> tuple[Any, list[Any], list[Any]]:
    """The complaint row, its timeline (oldest first) and its outbox events (by seq)."""
    [row] = await db_rows("SELECT * FROM intake.complaints WHERE id = $1::uuid", complaint_id)
    timeline = await db_rows(
        "SELECT type, data FROM intake.complaint_events WHERE complaint_id = $1::uuid ORDER BY id",
        complaint_id,
    )
    events = await db_rows(
        "SELECT event_type, (envelope->>'aggregate_seq')::int AS seq, envelope->'payload' AS p"
        " FROM intake.outbox WHERE envelope->>'aggregate_id' = $1 ORDER BY 2, id",
        complaint_id,
    )
    return row, timeline, events


def inconsistencies(row, timeline, events) -> list[str]:
    """What the complaint's stored history says that did not happen, or leaves out."""
    out = []
    seqs = [e["seq"] for e in events]
    if seqs != list(range(1, len(seqs) + 1)) or row["version"] != len(seqs):
        out.append(f"version {row['version']}, event seqs {seqs}")
    # Every complaint.* timeline row but notes is one event, in the same order.
    entries = [t["type"] for t in timeline if t["type"].startswith("complaint.")]
    entries = [t for t in entries if t != "complaint.regrade_withheld"]
    sent = [e["event_type"] for e in events if e["event_type"] != "complaint.status_changed"]
    if entries != sent:
        out.append(f"timeline {entries}, events {sent}")
    # One status_changed per change of status: a work-order step's, an approval.
    changes = [
        (_json(t["data"])["status_before"], _json(t["data"])["status_after"])
        for t in timeline
        if t["type"].startswith("work_order.")
        and _json(t["data"])["status_before"] != _json(t["data"])["status_after"]
    ]
    changes += [("?", "invalid") for t in timeline if t["type"].endswith("invalidation_approved")]
    statuses = [_json(e["p"]) for e in events if e["event_type"] == "complaint.status_changed"]
    if len(statuses) != len(changes):
        out.append(f"{len(statuses)} status_changed for {len(changes)} changes")
    if statuses and statuses[-1]["status"] != row["status"]:
        out.append(f"status {row['status']}, last status_changed {statuses[-1]['status']}")
    for a, b in itertools.pairwise(statuses):
        if b["previous_status"] != a["status"]:
            out.append(f"status_changed from {b['previous_status']} after one to {a['status']}")
    grades = [
        _json(e["p"])["grade"]
        for e in events
        if e["event_type"] in ("complaint.classified", "complaint.regraded", "complaint.overridden")
    ]
    if grades and grades[-1] != row["grade"]:
        out.append(f"grade {row['grade']}, events say {grades}")
    # The group its last event naming one says (received, classified, regraded, grouped).
    groups = [p["group_case_id"] for e in events if "group_case_id" in (p := _json(e["p"]))]
    if groups and str(row["group_case_id"]) != str(groups[-1]):
        out.append(f"group {row['group_case_id']}, events say {groups}")
    return out


def body(room: str, content: str, place: str, **more: Any) -> dict[str, Any]:
    return {
        "project": "SUNRISE",
        "channel": "phone",
        "category": "facility_repair",
        "content": content,
        "place": place,
        "unit": {"building": "5", "room": room},
        "complainant": {"name": "业主", "phone": f"1390000{room}"},
        **more,
    }


async def file(client, company: Company, room: str, content: str, place: str = "5号楼电梯"):
    r = await client.post(
        "/v1/complaints", json=body(room, content, place), headers=company.token("intake_clerk")
    )
    assert r.status_code == 201, r.text
    return r.json()


async def ask_invalidation(client, company: Company, cid: str) -> None:
    r = await client.post(
        f"/v1/complaints/{cid}/invalidation",
        json={"reason": "业主撤诉"},
        headers=company.token("intake_clerk", subject="clerk-ask"),
    )
    assert r.status_code == 201, r.text


# --- defects the races showed ------------------------------------------------------------


@pytest.mark.parametrize("closed_by", ["invalidation", "work order resolved"])
async def test_a_repeat_call_does_not_join_a_case_closed_while_it_was_recorded(
    resources, client, company, runner, db_rows, closed_by
) -> None:
    """The household calls again while its case is being closed: abnormal closure approved,
    or its work order resolved. The call read the case as open before the closure
    committed, then counted itself on the closed case (200, `duplicate_joined` after
    `invalidation_approved`): a call no one would handle. It must be what it is after the
    closure: a new complaint (a second complaint when the case was handled)."""
    case = await file(client, company, "501", "5号楼电梯坏了")
    handler = await lifecycle.staff_id(db_rows, company, "S001")
    order = lifecycle.Order(company, case, handler)
    if closed_by == "invalidation":
        await ask_invalidation(client, company, case["id"])

        async def close() -> int:
            r = await client.post(
                f"/v1/complaints/{case['id']}/invalidation/approve",
                json={"comment": "同意"},
                headers=company.token("director", subject="dir-1"),
            )
            assert r.status_code == 200, r.text
            return r.status_code

    else:
        dispatched, accepted, *_ = order.lifecycle()
        assert await runner.apply(dispatched) and await runner.apply(accepted)

        async def close() -> bool:
            return await runner.apply(
                order.event(wo.WorkOrderResolved, 3, "resolved", resolution="更换电梯主板")
            )

    async def call_again():
        return await client.post(
            "/v1/complaints",
            json=body("501", "5号楼电梯还是坏的", "5号楼电梯"),
            headers=company.token("intake_clerk"),
        )

    # The closure takes the row first; the call reads the open case, then queues behind.
    _, again = await in_turn(resources, ROW_LOCK, UUID(case["id"]), [close, call_again])

    assert again.status_code == 201, again.text
    new = again.json()
    assert new["case"]["kind"] == "new" and new["id"] != case["id"]
    row, timeline, events = await stored(db_rows, case["id"])
    assert row["calls"] == 1, "the call was counted on the closed case"
    assert "complaint.duplicate_joined" not in [t["type"] for t in timeline]
    assert not inconsistencies(row, timeline, events)
    if closed_by == "invalidation":
        assert row["status"] == "invalid"
        assert new["second_complaint"]["prior_cases"] == 0
    else:
        assert row["status"] == "resolved"
        assert new["second_complaint"] == {"prior_cases": 1, "previous_case_id": case["id"]}
        assert new["grade"] == "complex"


async def test_a_case_invalidated_while_a_group_forms_is_not_counted(
    resources, client, company, db_rows
) -> None:
    """Two households' cases, and a third household calls while the first case's abnormal
    closure is being approved. The third read both cases as valid, then locked the first
    after the approval committed and still counted it: a group of three households (two
    valid), and the invalid case raised to major and grouped. Serially, the approval first,
    there is no group."""
    first = await file(client, company, "501", "5号楼电梯坏了")
    second = await file(client, company, "502", "5号楼电梯坏了好几天")
    await ask_invalidation(client, company, first["id"])

    async def approve():
        return await client.post(
            f"/v1/complaints/{first['id']}/invalidation/approve",
            headers=company.token("director", subject="dir-2"),
        )

    async def third_household():
        return await client.post(
            "/v1/complaints",
            json=body("503", "5号楼电梯没人修", "5号楼电梯"),
            headers=company.token("intake_clerk"),
        )

    approved, third = await in_turn(
        resources, ROW_LOCK, UUID(first["id"]), [approve, third_household]
    )
    assert approved.status_code == 200, approved.text
    assert third.status_code == 201, third.text
    assert third.json()["case"]["kind"] == "new", third.json()["case"]
    assert third.json()["group_case_id"] is None
    for c in (first, second, third.json()):
        row, timeline, events = await stored(db_rows, c["id"])
        assert row["group_case_id"] is None and row["grade"] != "major", dict(row)
        assert not inconsistencies(row, timeline, events)
    groups = await db_rows(
        "SELECT 1 FROM intake.group_cases WHERE tenant_id = $1", company.tenant_id
    )
    assert groups == []


async def test_a_matter_that_keeps_changing_is_a_409_not_a_500(
    client, company, db_rows, monkeypatch
) -> None:
    """Recording runs again when a case it read moved before its lock, a few times, then
    answers 409 `case-changing` (send it again) and leaves nothing behind."""
    from intake.store import recording

    case = await file(client, company, "501", "5号楼电梯坏了")
    tries = []

    async def always_moved(conn, complaint_id, received_at):
        tries.append(complaint_id)
        raise recording.CaseMoved("closed meanwhile")

    monkeypatch.setattr(recording, "count_call", always_moved)
    r = await client.post(
        "/v1/complaints",
        json=body("501", "5号楼电梯还是坏的", "5号楼电梯"),
        headers=company.token("intake_clerk"),
    )
    assert r.status_code == 409 and r.json()["code"] == "case-changing", r.text
    assert len(tries) == 3
    row, timeline, events = await stored(db_rows, case["id"])
    assert row["calls"] == 1 and not inconsistencies(row, timeline, events)
    rows = await db_rows("SELECT 1 FROM intake.complaints WHERE tenant_id = $1", company.tenant_id)
    assert len(rows) == 1


async def test_moved_cases_and_deadlocks_have_budgets_of_their_own(
    client, company, db_rows, monkeypatch
) -> None:
    """Two moved cases, then a deadlock: the recording still gets its tries for each kind
    (a shared budget answered that deadlock on the third try with a 500)."""

    from intake.store import recording

    case = await file(client, company, "501", "5号楼电梯坏了")
    real = recording.count_call
    faults: list[Exception] = [
        recording.CaseMoved("closed meanwhile"),
        recording.CaseMoved("closed meanwhile"),
        asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    ]

    async def flaky(conn, complaint_id, received_at):
        if faults:
            raise faults.pop(0)
        return await real(conn, complaint_id, received_at)

    monkeypatch.setattr(recording, "count_call", flaky)
    r = await client.post(
        "/v1/complaints",
        json=body("501", "5号楼电梯还是坏的", "5号楼电梯"),
        headers=company.token("intake_clerk"),
    )
    assert r.status_code == 200 and r.json()["case"]["kind"] == "duplicate", r.text
    assert not faults
    row, timeline, events = await stored(db_rows, case["id"])
    assert row["calls"] == 2 and not inconsistencies(row, timeline, events)


# --- races the row lock already settles --------------------------------------------------

# The timeline entry (and event) each API change writes.
ENTRY_OF = {
    "invalidation": "complaint.invalidation_requested",
    "invalidation/approve": "complaint.invalidation_approved",
    "invalidation/reject": "complaint.invalidation_rejected",
    "classification": "complaint.overridden",
}
MAJOR = {"grade": "major", "reason": "影响整栋楼"}
# (invalidation pending first?, [(path, who, body)], [(status, problem code)]): the
# contenders queue in this order, so the outcome is known.
RACES = {
    "two invalidation requests": (
        False,
        [
            ("invalidation", "clerk", {"reason": "重复"}),
            ("invalidation", "assistant", {"reason": "x"}),
        ],
        [(201, None), (409, "invalidation-pending")],
    ),
    "approve vs reject": (
        True,
        [("invalidation/approve", "director", {}), ("invalidation/reject", "supervisor", {})],
        [(200, None), (409, "no-pending-invalidation")],
    ),
    "two approvals": (
        True,
        [("invalidation/approve", "director", {}), ("invalidation/approve", "supervisor", {})],
        [(200, None), (409, "no-pending-invalidation")],
    ),
    "two overrides to the same grade": (
        False,
        [("classification", "supervisor", MAJOR), ("classification", "assistant", MAJOR)],
        [(200, None), (409, "no-change")],
    ),
    "approve vs override": (
        True,
        [("invalidation/approve", "director", {}), ("classification", "supervisor", MAJOR)],
        [(200, None), (200, None)],
    ),
    "override vs approve": (
        True,
        [("classification", "supervisor", MAJOR), ("invalidation/approve", "director", {})],
        [(200, None), (200, None)],
    ),
}


@pytest.mark.parametrize("race", list(RACES))
async def test_conflicting_changes_at_once(resources, client, company, db_rows, race: str) -> None:
    """Two changes of one complaint at once: the second, once the first committed, is
    refused with the conflict it now meets or applies on top of it; the timeline and the
    outbox hold exactly the changes that answered 2xx, each event with the row's data."""
    pending, contenders, expected = RACES[race]
    case = await file(client, company, "501", "5号楼电梯坏了")
    if pending:
        await ask_invalidation(client, company, case["id"])
    who = {
        "clerk": company.token("intake_clerk", subject="clerk-r"),
        "assistant": company.token("affairs_assistant", subject="assistant-r"),
        "supervisor": company.token("cs_supervisor", subject="sup-r"),
        "director": company.token("director", subject="dir-r"),
    }
    _, before, _ = await stored(db_rows, case["id"])

    def send(path: str, actor: str, payload: dict):
        url = f"/v1/complaints/{case['id']}/{path}"
        return lambda: client.post(url, json=payload, headers=who[actor])

    answers = await in_turn(resources, ROW_LOCK, UUID(case["id"]), [send(*c) for c in contenders])
    assert [
        (r.status_code, r.json().get("code") if r.status_code >= 400 else None) for r in answers
    ] == expected, [r.text for r in answers]
    row, timeline, events = await stored(db_rows, case["id"])
    assert not inconsistencies(row, timeline, events)
    won = [
        ENTRY_OF[path] for (path, _, _), r in zip(contenders, answers, strict=True) if r.is_success
    ]
    assert [t["type"] for t in timeline[len(before) :]] == won
    # The last answer that applied is the row as stored.
    last = [r.json() for r in answers if r.is_success][-1]
    assert last.get("complaint", last)["version"] == row["version"]
    overridden = [_json(e["p"]) for e in events if e["event_type"] == "complaint.overridden"]
    for o in overridden:
        assert (o["previous_grade"], o["grade"]) == ("simple", "major"), o


async def test_the_same_work_order_event_twice_at_once_is_applied_once(
    resources, client, company, runner, db_rows
) -> None:
    """Two replicas of the consumer get the same delivery at once: the inbox row makes the
    second wait for the first and skip it; one timeline row, one status change."""
    case = await file(client, company, "501", "5号楼电梯坏了")
    order = lifecycle.Order(company, case, await lifecycle.staff_id(db_rows, company, "S001"))
    dispatched = order.lifecycle()[0]
    applied = await in_turn(
        resources,
        ROW_LOCK,
        UUID(case["id"]),
        [lambda: runner.apply(dispatched), lambda: runner.apply(dispatched)],
    )
    assert applied == [True, False]
    row, timeline, events = await stored(db_rows, case["id"])
    assert [t["type"] for t in timeline].count("work_order.dispatched") == 1
    assert row["status"] == "dispatched"
    assert not inconsistencies(row, timeline, events)


@pytest.mark.parametrize("first", ["step", "approval"])
async def test_a_work_order_step_and_an_approval_at_once(
    resources, client, company, runner, db_rows, first: str
) -> None:
    """Dispatch's first step and the approval of an abnormal closure meet on the case row:
    whichever comes second starts from what the first left. An approval after the step
    closes a dispatched case; a step after the approval is kept in the timeline and moves
    nothing (the case is invalid for good)."""
    case = await file(client, company, "501", "5号楼电梯坏了")
    await ask_invalidation(client, company, case["id"])
    order = lifecycle.Order(company, case, await lifecycle.staff_id(db_rows, company, "S001"))
    dispatched = order.lifecycle()[0]

    async def step():
        return await runner.apply(dispatched)

    async def approve():
        r = await client.post(
            f"/v1/complaints/{case['id']}/invalidation/approve",
            headers=company.token("director", subject="dir-s"),
        )
        assert r.status_code == 200, r.text
        return r.json()["complaint"]["status"]

    contenders = [step, approve] if first == "step" else [approve, step]
    await in_turn(resources, ROW_LOCK, UUID(case["id"]), contenders)
    row, timeline, events = await stored(db_rows, case["id"])
    assert row["status"] == "invalid"
    assert not inconsistencies(row, timeline, events)
    changes = [
        (p["previous_status"], p["status"])
        for e in events
        if e["event_type"] == "complaint.status_changed" and (p := _json(e["p"]))
    ]
    if first == "step":
        assert changes == [("received", "dispatched"), ("dispatched", "invalid")]
    else:
        assert changes == [("received", "invalid")]
        [wo_row] = [t for t in timeline if t["type"] == "work_order.dispatched"]
        assert _json(wo_row["data"])["status_after"] == "invalid"


async def test_households_completing_one_group_at_once_make_one_group(
    resources, client, company, db_rows
) -> None:
    """Two more households on a two-household matter, and a repeat call of the first, all
    at once (they queue on the project's matter lock): one group of four households, each
    member linked and raised once, the repeat counted on its case and not as a household."""
    first = await file(client, company, "501", "5号楼电梯坏了")
    second = await file(client, company, "502", "5号楼电梯坏了好几天")
    clerk = company.token("intake_clerk")

    def call(room: str, content: str):
        payload = body(room, content, "5号楼电梯")
        return lambda: client.post("/v1/complaints", json=payload, headers=clerk)

    third, fourth, repeat = await in_turn(
        resources,
        MATTER_LOCK,
        str(company.projects["SUNRISE"]),
        [call("503", "5号楼电梯没人修"), call("504", "5号楼电梯困人"), call("501", "电梯还是坏")],
    )
    assert (third.status_code, fourth.status_code, repeat.status_code) == (201, 201, 200)
    third, fourth, repeat = third.json(), fourth.json(), repeat.json()
    group_id = third["group_case_id"]
    assert third["case"]["household_count"] == 3 and fourth["case"]["household_count"] == 4
    assert fourth["group_case_id"] == group_id
    assert repeat["case"]["kind"] == "duplicate" and repeat["id"] == first["id"]
    [group] = await db_rows(
        "SELECT household_count FROM intake.group_cases WHERE tenant_id = $1", company.tenant_id
    )
    assert group["household_count"] == 4
    for c in (first, second, third, fourth):
        row, timeline, events = await stored(db_rows, c["id"])
        assert str(row["group_case_id"]) == group_id and row["grade"] == "major"
        assert not inconsistencies(row, timeline, events)
        grouped = [e for e in events if e["event_type"] == "complaint.grouped"]
        assert len(grouped) == 1, (c["reference"], grouped)
    row, _, _ = await stored(db_rows, first["id"])
    assert row["calls"] == 2


async def test_an_override_in_flight_while_a_group_forms_stands(
    resources, client, company, db_rows
) -> None:
    """A supervisor's override of a member and a third household's complaint meet on the
    member's row: the group locks it after the override committed, links it and leaves
    its grade (a `complaint.regrade_withheld` note, no regrade)."""
    first = await file(client, company, "501", "5号楼电梯坏了")
    await file(client, company, "502", "5号楼电梯坏了好几天")

    async def override():
        r = await client.post(
            f"/v1/complaints/{first['id']}/classification",
            json={"grade": "complex", "reason": "仅本户"},
            headers=company.token("cs_supervisor", subject="sup-g"),
        )
        assert r.status_code == 200, r.text
        return r

    async def third_household():
        r = await client.post(
            "/v1/complaints",
            json=body("503", "5号楼电梯没人修", "5号楼电梯"),
            headers=company.token("intake_clerk"),
        )
        assert r.status_code == 201, r.text
        return r.json()

    _, third = await in_turn(resources, ROW_LOCK, UUID(first["id"]), [override, third_household])
    assert third["case"]["kind"] == "group"
    row, timeline, events = await stored(db_rows, first["id"])
    assert row["grade"] == "complex" and str(row["group_case_id"]) == third["group_case_id"]
    assert [t["type"] for t in timeline][-3:] == [
        "complaint.overridden",
        "complaint.grouped",
        "complaint.regrade_withheld",
    ]
    assert "complaint.regraded" not in [e["event_type"] for e in events]
    assert not inconsistencies(row, timeline, events)
