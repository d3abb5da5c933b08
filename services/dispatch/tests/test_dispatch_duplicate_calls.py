"""complaint.duplicate_joined on the real PostgreSQL: a repeat call is a step on the
complaint's one work order; a call that overtakes its classification is kept and written
when the order is created; neither makes a second order."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from uuid import UUID, uuid4

from sqlalchemy import text

from dispatch.handlers import on_complaint_classified
from dispatch.testing import Tenant
from propdesk.db.session import tenant_transaction
from propdesk.events import Envelope, new_event
from propdesk.events.contracts.complaint import ComplaintClassified, ComplaintDuplicateJoined
from propdesk.service.resources import ServiceResources


def classified(t: Tenant, complaint_id: UUID) -> ComplaintClassified:
    return t.classified(complaint_id=complaint_id, reference="TS-7", building="3")


def joined(t: Tenant, complaint_id: UUID, calls: int, content: str) -> ComplaintDuplicateJoined:
    now = datetime.now(UTC)
    return ComplaintDuplicateJoined(
        complaint_id=complaint_id,
        reference="TS-7",
        project_id=t.project_id,
        reason="same household, open case, same place",
        calls=calls,
        call_id=uuid4(),
        channel="wechat",
        received_at=now,
        recorded_at=now,
        receiver="小李",
        external_reference=f"WX-{calls}",
        complainant_name="孙先生",
        complainant_phone="13900001111",
        summary=content,
        content=content,
        demand="尽快",
    )


def envelope(t: Tenant, payload: ComplaintClassified | ComplaintDuplicateJoined) -> Envelope:
    return new_event(
        payload,
        tenant_id=t.tenant_id,
        project_id=t.project_id,
        aggregate_id=payload.complaint_id,
        producer="intake",
        actor="clerk-1",
    )


async def handle(res: ServiceResources, t: Tenant, env: Envelope) -> None:
    async with tenant_transaction(res.sessions, t.ctx()) as session:
        await on_complaint_classified(session, env)


async def rows(res: ServiceResources, t: Tenant, sql: str, **params: object) -> list:
    async with tenant_transaction(res.sessions, t.ctx()) as session:
        return list(await session.execute(text(sql), params))


async def orders_of(res: ServiceResources, t: Tenant, complaint_id: UUID) -> list:
    return await rows(
        res,
        t,
        "SELECT id, state, seq FROM dispatch.work_orders WHERE complaint_id = :c",
        c=complaint_id,
    )


async def outbox_of(res: ServiceResources, t: Tenant, work_order_id: UUID) -> list[str]:
    out = await rows(
        res,
        t,
        "SELECT event_type FROM dispatch.outbox WHERE envelope->>'aggregate_id' = :w ORDER BY id",
        w=str(work_order_id),
    )
    return [o.event_type for o in out]


async def test_a_repeat_call_is_a_step_on_the_one_order(res, tenant: Tenant, client) -> None:
    cid = uuid4()
    await handle(res, tenant, envelope(tenant, classified(tenant, cid)))
    [order] = await orders_of(res, tenant, cid)
    announced = await outbox_of(res, tenant, order.id)
    await handle(res, tenant, envelope(tenant, joined(tenant, cid, 2, "水管还在漏")))
    await handle(res, tenant, envelope(tenant, joined(tenant, cid, 3, "第三次打电话了")))

    [after] = await orders_of(res, tenant, cid)
    assert after.id == order.id and after.state == "dispatched" and after.seq == order.seq + 2
    r = await client.get(f"/v1/work-orders/{order.id}", headers=tenant.handler(tenant.handler_a))
    assert r.status_code == 200, r.text
    steps = r.json()["steps"]
    assert [s["action"] for s in steps] == ["dispatch", "duplicate_call", "duplicate_call"]
    call = steps[1]
    assert call["from_state"] == call["to_state"] == "dispatched"
    details = call["details"]
    assert details["note"] == "业主再次来电" and details["calls"] == 2
    assert details["content"] == "水管还在漏" and details["channel"] == "wechat"
    assert details["caller"] == {"name": "孙先生", "phone": "13900001111"}
    assert details["recorded_by"] == "clerk-1" and details["external_reference"] == "WX-2"
    assert steps[2]["details"]["content"] == "第三次打电话了"
    # No event goes out for a call.
    assert await outbox_of(res, tenant, order.id) == announced
    assert announced[0] == "work_order.dispatched"


async def test_a_call_before_its_order_is_kept_and_written_once(res, tenant: Tenant) -> None:
    cid = uuid4()
    await handle(res, tenant, envelope(tenant, joined(tenant, cid, 2, "先到的来电")))
    assert await orders_of(res, tenant, cid) == []
    kept = await rows(
        res,
        tenant,
        "SELECT details FROM dispatch.pending_duplicate_calls WHERE complaint_id = :c",
        c=cid,
    )
    assert [k.details["content"] for k in kept] == ["先到的来电"]

    await handle(res, tenant, envelope(tenant, classified(tenant, cid)))
    [order] = await orders_of(res, tenant, cid)
    steps = await rows(
        res,
        tenant,
        "SELECT seq, action, details FROM dispatch.work_order_steps"
        " WHERE work_order_id = :w ORDER BY seq",
        w=order.id,
    )
    assert [(s.seq, s.action) for s in steps] == [(1, "dispatch"), (2, "duplicate_call")]
    assert steps[1].details["content"] == "先到的来电" and order.seq == 2
    assert (
        await rows(
            res,
            tenant,
            "SELECT 1 FROM dispatch.pending_duplicate_calls WHERE complaint_id = :c",
            c=cid,
        )
        == []
    )
    # The dispatched event keeps the order's first sequence number.
    [dispatched] = await rows(
        res,
        tenant,
        "SELECT (envelope->>'aggregate_seq')::int AS seq FROM dispatch.outbox"
        " WHERE envelope->>'aggregate_id' = :w AND event_type = 'work_order.dispatched'",
        w=str(order.id),
    )
    assert dispatched.seq == 1


async def test_a_call_racing_its_classification_is_never_lost(res, tenant: Tenant) -> None:
    """Both at once, many times: each call ends up as exactly one step on one order."""
    for _ in range(10):
        cid = uuid4()
        await asyncio.gather(
            handle(res, tenant, envelope(tenant, classified(tenant, cid))),
            handle(res, tenant, envelope(tenant, joined(tenant, cid, 2, "同时到达"))),
        )
        [order] = await orders_of(res, tenant, cid)
        calls = await rows(
            res,
            tenant,
            "SELECT 1 FROM dispatch.work_order_steps"
            " WHERE work_order_id = :w AND action = 'duplicate_call'",
            w=order.id,
        )
        left = await rows(
            res,
            tenant,
            "SELECT 1 FROM dispatch.pending_duplicate_calls WHERE complaint_id = :c",
            c=cid,
        )
        assert (len(calls), len(left)) == (1, 0)
