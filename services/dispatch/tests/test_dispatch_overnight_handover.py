"""The overnight hand-over takes only what the duty leader still holds (DOMAIN.md: what
*he* has not closed by the next working morning goes to the service center), on the real
PostgreSQL: a case reassigned at night, one resolved and later reopened, one he accepted
but did not close, and due times an older version left behind."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import text

from dispatch.domain.lifecycle import State
from dispatch.domain.ownership import (
    OVERNIGHT_STATES,
    OrderView,
    overnight_handover_due,
    overnight_handover_stands,
)
from dispatch.flows.dispatching import dispatch_classified
from dispatch.flows.overnight import run_overnight_handover
from dispatch.testing import Tenant
from propdesk.db.session import tenant_transaction
from propdesk.service.resources import ServiceResources

SH = ZoneInfo("Asia/Shanghai")
NIGHT = datetime(2026, 11, 24, 23, 0, tzinfo=SH)  # a Tuesday, after hours
MORNING = datetime(2026, 11, 25, 8, 30, tzinfo=SH)  # the next working start


# --- the rule, without I/O -------------------------------------------------------------

LEADER, OTHER = uuid4(), uuid4()


def view(state: State, owner: UUID | None, handler: UUID | None) -> OrderView:
    return OrderView(state=state, department_id=None, handler_id=handler, owner_id=owner)


def test_what_the_duty_leader_still_holds_is_handed_over() -> None:
    for state in (State.DISPATCHED, State.ACCEPTED, State.IN_PROGRESS, State.HANDOVER_PENDING):
        assert overnight_handover_stands(view(state, LEADER, LEADER), LEADER), state
    # Declined at night and not yet reassigned: still on his desk in the morning.
    assert overnight_handover_stands(view(State.REJECTED, LEADER, LEADER), LEADER)


def test_what_left_his_hands_or_was_resolved_is_not() -> None:
    assert not overnight_handover_stands(view(State.DISPATCHED, LEADER, OTHER), LEADER)
    assert not overnight_handover_stands(view(State.ACCEPTED, OTHER, OTHER), LEADER)
    assert not overnight_handover_stands(view(State.RESOLVED, LEADER, LEADER), LEADER)
    assert not overnight_handover_stands(view(State.CLOSED, LEADER, LEADER), LEADER)
    assert not overnight_handover_stands(view(State.REOPENED, LEADER, LEADER), LEADER)
    assert not overnight_handover_stands(view(State.DISPATCHED, None, None), None)
    assert State.REOPENED not in OVERNIGHT_STATES
    assert not overnight_handover_due(State.REOPENED, MORNING, MORNING)
    assert overnight_handover_due(State.IN_PROGRESS, MORNING, MORNING)


# --- on the real database ---------------------------------------------------------------


async def dispatch_at_night(res: ServiceResources, t: Tenant) -> str:
    async with tenant_transaction(res.sessions, t.ctx()) as session:
        wo = await dispatch_classified(session, t.tenant_id, t.classified(building="3"), now=NIGHT)
    assert wo is not None
    return f"/v1/work-orders/{wo}"


async def get(client: httpx.AsyncClient, t: Tenant, url: str) -> dict:
    r = await client.get(url, headers=t.token(uuid4(), "cs_supervisor"))
    assert r.status_code == 200, r.text
    return r.json()


async def post(client: httpx.AsyncClient, url: str, headers: dict, body: dict | None = None):
    r = await client.post(url, headers=headers, json=body if body is not None else {})
    assert r.status_code == 200, r.text
    return r.json()


async def set_due(res: ServiceResources, t: Tenant, url: str, due: datetime) -> None:
    """What the old steps left behind: a due time on an order that has moved on."""
    async with tenant_transaction(res.sessions, t.ctx()) as session:
        await session.execute(
            text("UPDATE dispatch.work_orders SET overnight_handover_at = :d WHERE id = :w"),
            {"d": due, "w": url.rsplit("/", 1)[1]},
        )


async def test_received_at_night(res, tenant: Tenant, client) -> None:
    url = await dispatch_at_night(res, tenant)
    wo = await get(client, tenant, url)
    assert wo["owner_id"] == wo["handler_id"] == str(tenant.duty_leader)
    assert datetime.fromisoformat(wo["overnight_handover_at"]) == MORNING


async def test_reassigned_at_night_and_accepted_stays_with_its_handler(
    res, tenant: Tenant, client, caplog
) -> None:
    """Probe 1: a supervisor gives the night's case to engineering, whose handler accepts
    it; the next morning's job leaves it where it is."""
    url = await dispatch_at_night(res, tenant)
    supervisor = tenant.token(uuid4(), "cs_supervisor")
    moved = await post(
        client,
        f"{url}/reassign",
        supervisor,
        {"department_code": "eng", "handler_id": str(tenant.handler_a), "reason": "漏水: 工程部"},
    )
    assert moved["handler_id"] == str(tenant.handler_a)
    assert moved["overnight_handover_at"] is None  # it left the duty leader's hands
    await post(client, f"{url}/accept", tenant.handler(tenant.handler_a))

    await run_overnight_handover(res.sessions, now=MORNING)
    wo = await get(client, tenant, url)
    assert wo["state"] == "accepted" and wo["department_code"] == "eng"
    assert wo["owner_id"] == wo["handler_id"] == str(tenant.handler_a)
    assert [o["kind"] for o in wo["owners"]] == ["first_receiver", "handover_accepted"]
    assert "transfer" not in [s["action"] for s in wo["steps"]]

    # Defence in depth: a due time left on such an order (as the old steps did) does not
    # move it either; the job drops it, loudly.
    await set_due(res, tenant, url, MORNING)
    with caplog.at_level(logging.WARNING, logger="dispatch.overnight"):
        await run_overnight_handover(res.sessions, now=MORNING + timedelta(minutes=1))
    wo = await get(client, tenant, url)
    assert wo["owner_id"] == wo["handler_id"] == str(tenant.handler_a)
    assert [o["kind"] for o in wo["owners"]] == ["first_receiver", "handover_accepted"]
    assert wo["overnight_handover_at"] is None
    assert any(
        getattr(r, "work_order_id", None) == wo["id"] and "dropped" in r.getMessage()
        for r in caplog.records
    )


async def test_resolved_at_night_then_reopened_weeks_later_is_not_taken(
    res, tenant: Tenant, client
) -> None:
    """Probe 2: the duty leader accepts and resolves it at night; it is signed off, fed
    back and closed; reopened weeks later, no job run hands it to the service center."""
    url = await dispatch_at_night(res, tenant)
    leader = tenant.token(tenant.duty_leader, "duty_leader")
    supervisor = tenant.token(uuid4(), "cs_supervisor")
    assistant = tenant.token(tenant.assistant, "affairs_assistant")
    await post(client, f"{url}/accept", leader)
    resolved = await post(client, f"{url}/resolve", leader, {"resolution": "关闭总阀, 已修复"})
    assert resolved["overnight_handover_at"] is None  # he closed it: nothing to hand over
    await post(client, f"{url}/sign-off", supervisor, {"comment": "ok"})
    await post(client, f"{url}/feedback", assistant, {"channel": "phone", "content": "已修复"})
    await post(client, f"{url}/close", assistant, {"callback_result": "satisfied"})
    await run_overnight_handover(res.sessions, now=MORNING)
    reopened = await post(client, f"{url}/reopen", assistant, {"reason": "又漏水了"})
    assert reopened["state"] == "reopened" and reopened["overnight_handover_at"] is None

    await run_overnight_handover(res.sessions, now=MORNING + timedelta(days=21))
    wo = await get(client, tenant, url)
    assert wo["state"] == "reopened"
    assert [o["kind"] for o in wo["owners"]] == ["first_receiver"]
    assert "transfer" not in [s["action"] for s in wo["steps"]]

    # Defence in depth: a resolved (and reopened) order is never claimed, due time or not.
    await set_due(res, tenant, url, MORNING)
    await run_overnight_handover(res.sessions, now=MORNING + timedelta(days=22))
    wo = await get(client, tenant, url)
    assert wo["state"] == "reopened"
    assert [o["kind"] for o in wo["owners"]] == ["first_receiver"]


async def test_accepted_by_the_duty_leader_but_not_closed_is_handed_over(
    res, tenant: Tenant, client
) -> None:
    """He accepted it and started on it, but did not close it by the morning: it is his
    unclosed case, and passes to the service center as the rule says."""
    url = await dispatch_at_night(res, tenant)
    leader = tenant.token(tenant.duty_leader, "duty_leader")
    await post(client, f"{url}/accept", leader)
    still = await post(client, f"{url}/progress", leader, {"note": "已关闭总阀, 待工程部维修"})
    assert datetime.fromisoformat(still["overnight_handover_at"]) == MORNING

    await run_overnight_handover(res.sessions, now=MORNING)
    wo = await get(client, tenant, url)
    assert wo["state"] == "dispatched" and wo["department_code"] == "cs"
    assert wo["owner_id"] == wo["handler_id"] == str(tenant.assistant)
    assert [o["kind"] for o in wo["owners"]] == ["first_receiver", "overnight_handover"]
    assert wo["overnight_handover_at"] is None


async def test_hand_over_accepted_at_night_ends_the_overnight_hand_over(
    res, tenant: Tenant, client
) -> None:
    url = await dispatch_at_night(res, tenant)
    leader = tenant.token(tenant.duty_leader, "duty_leader")
    await post(client, f"{url}/accept", leader)
    pending = await post(
        client,
        f"{url}/hand-over",
        leader,
        {"to_staff_id": str(tenant.handler_b), "reason": "需要电工"},
    )
    assert pending["overnight_handover_at"] is not None  # still his until accepted
    taken = await post(client, f"{url}/accept", tenant.handler(tenant.handler_b))
    assert taken["owner_id"] == str(tenant.handler_b)
    assert taken["overnight_handover_at"] is None

    await run_overnight_handover(res.sessions, now=MORNING)
    wo = await get(client, tenant, url)
    assert wo["owner_id"] == wo["handler_id"] == str(tenant.handler_b)
    assert [o["kind"] for o in wo["owners"]] == ["first_receiver", "handover_accepted"]
