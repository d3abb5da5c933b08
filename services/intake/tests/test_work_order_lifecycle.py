"""Dispatch's work-order events through intake's consumer (inbox + complaint + timeline +
outbox in one transaction) on the real database: the case follows its work order, late
steps never move it backwards, a redelivered event is applied once, and a closed case
makes the household's next complaint on the matter a second complaint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from intake.handlers import consumers
from propdesk.bus.consumer import ConsumerRunner
from propdesk.events import Envelope, new_event
from propdesk.events.contracts import work_order as wo

from .conftest import Company, onboard

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
async def company(resources) -> Company:
    return await onboard(resources, f"W{uuid4().hex[:6].upper()}", "工单物业")


@pytest.fixture
def runner(resources) -> ConsumerRunner:
    [consumer] = consumers()
    assert consumer.name == "intake-work-orders" and consumer.subjects == ["pd.work_order.>"]
    return ConsumerRunner(consumer, resources.settings, resources.sessions)


class Order:
    """Builds the events dispatch would publish for one work order."""

    def __init__(self, company: Company, complaint: dict[str, Any], handler: UUID) -> None:
        self.company = company
        self.complaint = complaint
        self.id = uuid4()
        self.handler = handler
        self.t0 = datetime.now(UTC)

    def event(self, model: type[wo._WorkOrderFacts], seq: int, state: str, **extra: Any):
        at = self.t0 + timedelta(minutes=seq)
        payload = model(
            work_order_id=self.id,
            complaint_id=UUID(self.complaint["id"]),
            reference=self.complaint["reference"],
            project_id=UUID(self.complaint["project_id"]),
            department_id=None,
            department_code="eng",
            handler_id=self.handler,
            owner_id=self.handler if seq > 1 else None,
            grade=self.complaint["grade"],
            category=self.complaint["category"],
            state=state,
            at=at,
            actor=str(self.handler),
            **extra,
        )
        return new_event(
            payload,
            tenant_id=self.company.tenant_id,
            project_id=payload.project_id,
            aggregate_id=self.id,
            aggregate_seq=seq,
            producer="dispatch",
            actor=str(self.handler),
            occurred_at=at,
        )

    def lifecycle(self) -> list[Envelope]:
        t = self.t0
        return [
            self.event(
                wo.WorkOrderDispatched,
                1,
                "dispatched",
                received_at=t,
                recorded_at=t,
                rule_id="tenant:1",
                routing_reason="tenant rule 1: category=facility_repair → eng",
                assignment_reason="on duty, least open load",
            ),
            self.event(wo.WorkOrderAccepted, 2, "accepted", dispatched_at=t),
            self.event(wo.WorkOrderProgressed, 3, "in_progress", note="上门查看", site_visit=True),
            self.event(
                wo.WorkOrderFeedbackGiven,
                4,
                "in_progress",
                channel="phone",
                content="明天上午维修",
                commitment="24小时内修好",
                first=True,
                result=False,
            ),
            self.event(wo.WorkOrderResolved, 5, "resolved", resolution="更换灯泡"),
            self.event(wo.WorkOrderSignedOff, 6, "signed_off", signed_by="head", comment="ok"),
            self.event(
                wo.WorkOrderFeedbackGiven,
                7,
                "feedback_given",
                channel="phone",
                content="已修复",
                first=False,
                result=True,
            ),
            self.event(wo.WorkOrderClosed, 8, "closed", callback_result="satisfied"),
        ]


async def staff_id(db_rows, company: Company, code: str) -> UUID:
    [row] = await db_rows(
        "SELECT id FROM intake.staff WHERE tenant_id = $1 AND code = $2", company.tenant_id, code
    )
    return row["id"]


def complaint_body(phone: str, content: str) -> dict[str, Any]:
    return {
        "project": "SUNRISE",
        "channel": "phone",
        "content": content,
        "category": "facility_repair",
        "place": "5号楼电梯厅",
        "unit": {"building": "5", "room": "502"},
        "complainant": {"name": "孙先生", "phone": phone},
    }


async def record(
    client, company: Company, phone: str, content: str, status: int = 201
) -> dict[str, Any]:
    r = await client.post(
        "/v1/complaints",
        json=complaint_body(phone, content),
        headers=company.token("intake_clerk"),
    )
    assert r.status_code == status, r.text
    return r.json()


async def status_events(db_rows, complaint_id: str) -> list[tuple[str, str, str]]:
    rows = await db_rows(
        "SELECT envelope FROM intake.outbox WHERE event_type = 'complaint.status_changed'"
        " AND envelope->>'aggregate_id' = $1 ORDER BY id",
        complaint_id,
    )
    import json

    out = []
    for r in rows:
        env = r["envelope"] if isinstance(r["envelope"], dict) else json.loads(r["envelope"])
        p = env["payload"]
        out.append((p["previous_status"], p["status"], p["cause"]))
    return out


async def test_case_follows_its_work_order_and_a_closed_case_makes_a_second_complaint(
    client, company, runner, db_rows
) -> None:
    phone = f"136{uuid4().int % 10**8:08d}"
    first = await record(client, company, phone, "5号楼电梯厅的灯坏了, 晚上很黑")
    assert first["status"] == "received"
    handler = await staff_id(db_rows, company, "S001")
    order = Order(company, first, handler)
    events = order.lifecycle()
    for env in events:
        assert await runner.apply(env) is True
    # Redelivery: the inbox skips it, nothing is written twice.
    assert await runner.apply(events[-1]) is False

    reader = company.token("cs_supervisor")
    got = (await client.get(f"/v1/complaints/{first['id']}", headers=reader)).json()
    assert got["status"] == "closed"
    timeline = (await client.get(f"/v1/complaints/{first['id']}/timeline", headers=reader)).json()
    steps = [e for e in timeline["events"] if e["type"].startswith("work_order.")]
    assert [e["type"] for e in steps] == [e.type for e in events]
    dispatched = steps[0]
    assert "eng" in dispatched["reason"] and "王敏 (S001)" in dispatched["reason"]
    assert "category=facility_repair" in dispatched["reason"]
    first_feedback = steps[3]
    assert first_feedback["reason"].startswith("first feedback via phone: 明天上午维修")
    assert first_feedback["data"]["status_after"] == "in_progress"
    assert steps[-1]["data"]["status_before"] == "feedback_given"
    assert await status_events(db_rows, first["id"]) == [
        ("received", "dispatched", "work_order.dispatched"),
        ("dispatched", "accepted", "work_order.accepted"),
        ("accepted", "in_progress", "work_order.progressed"),
        ("in_progress", "resolved", "work_order.resolved"),
        ("resolved", "signed_off", "work_order.signed_off"),
        ("signed_off", "feedback_given", "work_order.feedback_given"),
        ("feedback_given", "closed", "work_order.closed"),
    ]

    # The household comes back about the same matter: a second complaint, found on its own.
    again = await record(client, company, phone, "5号楼电梯厅的灯又坏了")
    assert again["case"]["kind"] == "new"
    assert again["grade"] == "complex"
    assert again["second_complaint"] == {"prior_cases": 1, "previous_case_id": first["id"]}
    assert any(
        g.startswith("complex:second_complaint") and first["reference"] in g
        for g in again["grade_reasons"]
    ), again["grade_reasons"]


async def test_late_and_out_of_order_steps_never_move_the_case_backwards(
    client, company, runner, db_rows
) -> None:
    phone = f"135{uuid4().int % 10**8:08d}"
    c = await record(client, company, phone, "5号楼电梯厅门口有积水")
    order = Order(company, c, await staff_id(db_rows, company, "S001"))
    dispatched, accepted, *_, closed = order.lifecycle()
    for env in (dispatched, closed, accepted):  # accepted arrives after closed
        assert await runner.apply(env) is True
    reader = company.token("cs_supervisor")
    got = (await client.get(f"/v1/complaints/{c['id']}", headers=reader)).json()
    assert got["status"] == "closed"
    timeline = (await client.get(f"/v1/complaints/{c['id']}/timeline", headers=reader)).json()
    late = [e for e in timeline["events"] if e["type"] == "work_order.accepted"]
    assert late[0]["data"]["late"] is True and late[0]["data"]["status_after"] == "closed"
    assert await status_events(db_rows, c["id"]) == [
        ("received", "dispatched", "work_order.dispatched"),
        ("dispatched", "closed", "work_order.closed"),
    ]

    # Reopened: the case is handled-but-unsatisfied, and counts for the next complaint.
    reopened = order.event(wo.WorkOrderReopened, 9, "reopened", reason="业主不满意")
    assert await runner.apply(reopened) is True
    got = (await client.get(f"/v1/complaints/{c['id']}", headers=reader)).json()
    assert got["status"] == "reopened"
    listed = await client.get(
        "/v1/complaints", params={"status": "reopened", "project": "SUNRISE"}, headers=reader
    )
    assert c["id"] in {i["id"] for i in listed.json()["items"]}
    again = await record(client, company, phone, "5号楼电梯厅门口还是有积水")
    assert again["second_complaint"]["previous_case_id"] == c["id"]
    assert again["grade"] == "complex"


async def test_an_open_case_is_still_a_duplicate_target(client, company, runner, db_rows) -> None:
    """Dispatched and accepted cases are open: the same household's repeat joins them."""
    phone = f"134{uuid4().int % 10**8:08d}"
    c = await record(client, company, phone, "5号楼电梯厅的电梯按钮失灵")
    order = Order(company, c, await staff_id(db_rows, company, "S001"))
    for env in order.lifecycle()[:2]:
        await runner.apply(env)
    again = await record(client, company, phone, "5号楼电梯厅电梯按钮失灵, 还没修", status=200)
    assert again["case"]["kind"] == "duplicate" and again["case"]["joined"] == c["id"]
    assert again["id"] == c["id"] and again["calls"] == 2
    # The case keeps the work order's status: the call does not move it.
    assert again["status"] == "accepted"
    assert again["second_complaint"]["prior_cases"] == 0


async def test_unknown_complaint_is_a_permanent_error(company, runner) -> None:
    from propdesk.bus import PermanentError

    ghost = {
        "id": str(uuid4()),
        "reference": "X",
        "project_id": str(company.projects["SUNRISE"]),
        "grade": "simple",
        "category": "other",
    }
    env = Order(company, ghost, uuid4()).lifecycle()[1]
    with pytest.raises(PermanentError):
        await runner.apply(env)


async def test_bad_status_filter_names_the_field(client, company) -> None:
    r = await client.get(
        "/v1/complaints", params={"status": "open"}, headers=company.token("cs_supervisor")
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.status"


async def test_the_case_lock_is_not_planned_again_for_every_step(
    resources, client, company, db_rows
) -> None:
    """The statement that locks the case and reads its staff names keeps one generic plan
    after the planner's first five custom ones (with the staff ids as an array parameter it
    was planned afresh on every step), and names each distinct staff member once."""
    from intake.store import case_progress
    from propdesk.db.session import (
        create_engine,
        driver_connection,
        session_factory,
        tenant_transaction,
    )
    from propdesk.tenancy import TenantContext
    from propdesk.testing.admin_reads import admin_fetch

    c = await record(client, company, f"137{uuid4().int % 10**8:08d}", "2号楼水管漏水")
    s001 = await staff_id(db_rows, company, "S001")
    # Statistics of a company with thousands of staff: a tiny table hides the problem.
    await admin_fetch(
        resources.settings,
        "INSERT INTO intake.staff (id, tenant_id, code, name, roles)"
        " SELECT gen_random_uuid(), $1, 'X' || g, 'n' || g, ARRAY['handler']"
        " FROM generate_series(1, 3000) g",
        company.tenant_id,
    )
    await admin_fetch(resources.settings, "ANALYZE intake.staff")
    ctx = TenantContext.for_tenant(company.tenant_id, actor="test")
    plans_sql = (
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1"
    )
    counts = []
    # A connection of its own: a pooled one may carry the history of other tests' plans
    # (the planner compares the generic plan with the average of the custom ones so far).
    engine = create_engine(resources.settings)
    try:
        async with tenant_transaction(session_factory(engine), ctx) as s:
            conn = await driver_connection(s)
            for n in range(12):
                staff = [s001] * (1 + n % 3) + [uuid4()] * (n % 2)  # repeats and unknowns
                case = await case_progress.lock_case(conn, UUID(c["id"]), staff)
                assert case is not None and case.staff_names == {s001: "王敏 (S001)"}
                if n in (7, 11):
                    counts.append(await conn.fetchrow(plans_sql, case_progress._LOCK_CASE))
            with pytest.raises(ValueError, match="at most 5 staff"):
                await case_progress.lock_case(conn, UUID(c["id"]), [uuid4() for _ in range(6)])
    finally:
        await engine.dispose()
    # The planner's first five are custom plans; the last four calls reuse one generic plan.
    (g0, c0), (g1, c1) = counts
    assert c1 <= 5 and (g1 - g0, c1 - c0) == (4, 0), counts
