"""Conflicting steps on one work order at the same moment, on the real PostgreSQL.

Each race is made deterministic by holding the order's row lock from another connection
until every contender is waiting on it (or, for the reader, on a table lock queued behind
a step in flight), then letting them go. Whatever order they then take, the order's
steps, owner chain and outbox must tell exactly what happened: one step per step that
answered 200, an event for each and none for a loser, seqs without gap, each step
starting where the previous one ended. (Concurrent accepts of one order:
test_dispatch_work_orders.)"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text

from dispatch.flows import steps as flows
from dispatch.flows.dispatching import apply_override, apply_regrade, dispatch_classified
from dispatch.flows.overnight import run_overnight_handover
from dispatch.store import work_orders as orders
from dispatch.testing import Tenant, engineering_order
from propdesk.db.session import tenant_transaction
from propdesk.events.contracts.complaint import ComplaintOverridden, ComplaintRegraded
from propdesk.service.resources import ServiceResources
from propdesk.tenancy import TenantContext
from propdesk.testing.lock_waits import lock_holder, until_waiting

SH = ZoneInfo("Asia/Shanghai")
NIGHT = datetime(2026, 11, 24, 23, 0, tzinfo=SH)  # a Tuesday, after hours
MORNING = datetime(2026, 11, 25, 8, 30, tzinfo=SH)  # the next working start

# The event each step sends (besides `handed_over` on a change of owner); a transfer sends
# only `handed_over`.
EVENT_OF = {
    "dispatch": "work_order.dispatched",
    "accept": "work_order.accepted",
    "reject": "work_order.rejected",
    "progress": "work_order.progressed",
    "resolve": "work_order.resolved",
    "sign_off": "work_order.signed_off",
    "give_feedback": "work_order.feedback_given",
    "follow_up": "work_order.followed_up",
    "reassign": "work_order.reassigned",
    "hand_over": "work_order.handover_requested",
    "close": "work_order.closed",
    "reopen": "work_order.reopened",
    "transfer": None,
}
ACTION_OF = {  # a step's path → its action
    "accept": "accept",
    "reject": "reject",
    "resolve": "resolve",
    "sign-off": "sign_off",
    "reopen": "reopen",
    "feedback": "give_feedback",
    "follow-ups": "follow_up",
    "close": "close",
}


# --- what is stored ----------------------------------------------------------------------


async def stored(res: ServiceResources, t: Tenant, wo_id: UUID):
    """The order, its steps, owner chain and outbox events."""
    async with tenant_transaction(res.sessions, t.ctx()) as s:
        row = await orders.get(s, wo_id)
        steps = await orders.steps(s, wo_id)
        owners = await orders.owners(s, wo_id)
        events = (
            await s.execute(
                text(
                    "SELECT event_type, (envelope->>'aggregate_seq')::int AS seq,"
                    " envelope->'payload'->>'state' AS state FROM dispatch.outbox"
                    " WHERE envelope->>'aggregate_id' = :w ORDER BY id"
                ),
                {"w": str(wo_id)},
            )
        ).all()
    assert row is not None
    return row, steps, owners, events


def inconsistencies(row, steps, owners, events) -> list[str]:
    """What the stored history says that did not happen, or leaves out."""
    out = []
    if [s["seq"] for s in steps] != list(range(1, len(steps) + 1)):
        out.append(f"step seqs {[s['seq'] for s in steps]}")
    if row.seq != len(steps) or steps[-1]["to_state"] != row.state:
        out.append(f"order at seq {row.seq}, {row.state}; last step {steps[-1]}")
    for a, b in itertools.pairwise(steps):
        if b["from_state"] != a["to_state"]:
            out.append(f"step {b['seq']} {b['action']} from {b['from_state']}, not {a['to_state']}")
    to_state = {s["seq"]: s["to_state"] for s in steps}
    by_seq: dict[int, list[str]] = {}
    for e in events:
        by_seq.setdefault(e.seq, []).append(e.event_type)
        if to_state.get(e.seq) != e.state:
            out.append(f"{e.event_type} at seq {e.seq} says {e.state}")
    for s in steps:
        sent = [x for x in by_seq.pop(s["seq"], []) if x != "work_order.handed_over"]
        expected = [EVENT_OF[s["action"]]] if EVENT_OF.get(s["action"]) else []
        if sent != expected:
            out.append(f"step {s['seq']} {s['action']} sent {sent}")
    if by_seq:
        out.append(f"events of no step: {by_seq}")
    handed = [e for e in events if e.event_type == "work_order.handed_over"]
    if len(handed) != len(owners):
        out.append(f"{len(handed)} handed_over events for {len(owners)} owner changes")
    for a, b in itertools.pairwise(owners):
        if b["from_staff_id"] != a["to_staff_id"]:
            out.append(f"owner chain {a['to_staff_id']} then from {b['from_staff_id']}")
    if owners and owners[-1]["to_staff_id"] != row.owner_id:
        out.append(f"owner {row.owner_id}, chain ends at {owners[-1]['to_staff_id']}")
    firsts = [s["details"]["first"] for s in steps if s["action"] == "give_feedback"]
    if firsts and firsts.count(True) != 1:
        out.append(f"feedback `first` flags {firsts}")
    return out


# --- holding an order still --------------------------------------------------------------


async def all_at_once(
    res: ServiceResources, wo_id: UUID, contenders: list[Callable[[], Awaitable[Any]]]
) -> list[Any]:
    """Run the contenders while the order's row is locked elsewhere; release it once every
    one of them waits for it."""
    async with lock_holder(res.settings.database_url) as holder:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT 1 FROM dispatch.work_orders WHERE id = $1 FOR UPDATE", wo_id)
        tasks = [asyncio.create_task(c()) for c in contenders]
        await until_waiting(
            res.settings.database_url,
            holder,
            len(tasks),
            f"{len(tasks)} contenders waiting for the order",
        )
        await hold.rollback()
        return await asyncio.gather(*tasks)


def order_id(url: str) -> UUID:
    return UUID(url.rsplit("/", 1)[1])


async def post_ok(client: httpx.AsyncClient, url: str, headers: dict, body: dict | None = None):
    r = await client.post(url, headers=headers, json=body if body is not None else {})
    assert r.status_code == 200, r.text
    return r.json()


# --- defects the races showed ------------------------------------------------------------


def regraded(t: Tenant, complaint_id: UUID) -> ComplaintRegraded:
    return ComplaintRegraded(
        complaint_id=complaint_id,
        reference="TS-1",
        project_id=t.project_id,
        previous_grade="simple",
        grade="major",
        grade_reasons=["major:group"],
        reason="group complaint",
    )


def overridden(t: Tenant, complaint_id: UUID) -> ComplaintOverridden:
    return ComplaintOverridden(
        complaint_id=complaint_id,
        reference="TS-1",
        project_id=t.project_id,
        previous_category=None,
        category=None,
        previous_grade="simple",
        grade="major",
        reason="three households",
        by="clerk-1",
    )


async def test_two_corrections_to_the_same_grade_at_once_record_one_step(
    res, tenant: Tenant
) -> None:
    """A regrade and a staff override both making the order major, applied at once (two
    replicas of the consumer): the order is corrected once. Both used to compare the grade
    before locking the order, so the second recorded an `override` from major to major."""
    url, _ = await engineering_order(res, tenant)
    async with tenant_transaction(res.sessions, tenant.ctx()) as s:
        row = await orders.get(s, order_id(url))
    assert row is not None and row.grade == "simple"

    async def correct(apply, payload) -> bool:
        async with tenant_transaction(res.sessions, tenant.ctx()) as s:
            return await apply(s, payload)

    applied = await all_at_once(
        res,
        row.id,
        [
            lambda: correct(apply_regrade, regraded(tenant, row.complaint_id)),
            lambda: correct(apply_override, overridden(tenant, row.complaint_id)),
        ],
    )
    assert sorted(applied) == [False, True]
    after, steps, owners, events = await stored(res, tenant, row.id)
    assert after.grade == "major"
    corrections = [(s["action"], s["details"]["from"]) for s in steps[1:]]
    assert len(corrections) == 1 and corrections[0][1] == "simple", corrections
    assert not inconsistencies(after, steps, owners, events)


async def test_an_order_read_while_a_step_commits_agrees_with_its_history(
    res, tenant: Tenant, client: httpx.AsyncClient
) -> None:
    """GET /v1/work-orders/{id} while the handler's accept is committing: the state, owner,
    steps and owner chain are of one moment. The row and its history used to be read by
    separate statements, so the reader could get a `dispatched` order without an owner
    whose steps already ended in `accept` and whose owner chain named the handler."""
    url, me = await engineering_order(res, tenant)
    wo_id = order_id(url)
    handler = TenantContext.for_tenant(tenant.tenant_id, actor=str(me), roles={"handler"})
    reader = tenant.token(uuid4(), "cs_supervisor")
    async with lock_holder(res.settings.database_url) as holder:
        async with tenant_transaction(res.sessions, handler) as session:
            await flows.accept(session, handler, wo_id)  # written, not yet committed
            # A lock queued behind the accept's writes: the reader's history waits behind it.
            hold = holder.transaction()
            await hold.start()
            queued = asyncio.create_task(
                holder.execute("LOCK TABLE dispatch.work_order_steps IN ACCESS EXCLUSIVE MODE")
            )
            await until_waiting(
                res.settings.database_url, holder, 0, "the table lock queued behind the accept"
            )
            read = asyncio.create_task(client.get(url, headers=reader))
            await until_waiting(res.settings.database_url, holder, 1, "the reader waiting")
        await queued  # the accept committed
        await hold.rollback()
        r = await read
    assert r.status_code == 200, r.text
    wo = r.json()
    assert (wo["state"], wo["owner_id"]) == ("accepted", str(me)), wo
    assert [s["action"] for s in wo["steps"]] == ["dispatch", "accept"]
    assert wo["steps"][-1]["to_state"] == wo["state"]
    assert [o["to_staff_id"] for o in wo["owners"]] == [wo["owner_id"]]


# --- races the row lock already settles --------------------------------------------------


async def _accepted(client: httpx.AsyncClient, t: Tenant, url: str, me: UUID) -> None:
    await post_ok(client, f"{url}/accept", t.handler(me))


async def _resolved(client: httpx.AsyncClient, t: Tenant, url: str, me: UUID) -> None:
    await _accepted(client, t, url, me)
    await post_ok(client, f"{url}/resolve", t.handler(me), {"resolution": "更换水管"})


async def _handover_pending(client: httpx.AsyncClient, t: Tenant, url: str, me: UUID) -> None:
    await _accepted(client, t, url, me)
    other = t.handler_b if me == t.handler_a else t.handler_a
    await post_ok(client, f"{url}/hand-over", t.handler(me), {"to_staff_id": str(other)} | REASON)


async def _feedback_given(client: httpx.AsyncClient, t: Tenant, url: str, me: UUID) -> None:
    await _resolved(client, t, url, me)
    await post_ok(client, f"{url}/sign-off", t.token(t.head, "department_head"), {})
    await post_ok(
        client,
        f"{url}/feedback",
        t.token(t.assistant, "affairs_assistant"),
        {"channel": "phone", "content": "已修复"},
    )


REASON = {"reason": "需要电工"}
FEEDBACK = {"channel": "phone", "content": "已安排维修"}
# (setup, [(path, who, body)]): who is "handler" (the order's), "receiver" (of the pending
# hand-over), "head", "supervisor" or "assistant".
RACES = {
    "accept vs reject": (
        None,
        [("accept", "handler", {}), ("reject", "handler", {"reason": "不归工程部"})],
    ),
    "resolve vs approved compensation": (
        _accepted,
        [
            ("resolve", "handler", {"resolution": "更换水管"}),
            (
                "resolve",
                "head",
                {"resolution": "赔偿", "compensation": {"amount": "200", "description": "x"}},
            ),
        ],
    ),
    "sign-off vs reopen": (
        _resolved,
        [("sign-off", "head", {}), ("reopen", "assistant", {"reason": "又漏水了"})],
    ),
    "two sign-offs": (_resolved, [("sign-off", "head", {}), ("sign-off", "supervisor", {})]),
    "hand-over accepted vs declined": (
        _handover_pending,
        [("accept", "receiver", {}), ("reject", "receiver", {"reason": "不是电工活"})],
    ),
    "first feedback twice": (
        _accepted,
        [("feedback", "assistant", FEEDBACK), ("feedback", "supervisor", FEEDBACK)],
    ),
    "close vs follow-up": (
        _feedback_given,
        [
            ("close", "assistant", {"callback_result": "satisfied"}),
            ("follow-ups", "supervisor", {"note": "跟进"}),
        ],
    ),
}


@pytest.mark.parametrize("race", list(RACES))
async def test_conflicting_steps_at_once(
    res, tenant: Tenant, client: httpx.AsyncClient, race: str
) -> None:
    """Two steps on one order at once: one wins and the other is a 409 naming the state
    the winner left, or (where each is legal after the other) both apply, one after the
    other; the history holds exactly the steps that answered 200."""
    setup, contenders = RACES[race]
    url, me = await engineering_order(res, tenant)
    if setup is not None:
        await setup(client, tenant, url, me)
    receiver = tenant.handler_b if me == tenant.handler_a else tenant.handler_a
    who = {
        "handler": tenant.handler(me),
        "receiver": tenant.handler(receiver),
        "head": tenant.token(tenant.head, "department_head"),
        "supervisor": tenant.token(uuid4(), "cs_supervisor"),
        "assistant": tenant.token(tenant.assistant, "affairs_assistant"),
    }
    _, before, _, _ = await stored(res, tenant, order_id(url))

    def send(path: str, actor: str, body: dict):
        return lambda: client.post(f"{url}/{path}", headers=who[actor], json=body)

    answers = await all_at_once(res, order_id(url), [send(*c) for c in contenders])

    row, steps, owners, events = await stored(res, tenant, order_id(url))
    assert not inconsistencies(row, steps, owners, events)
    won = [
        ACTION_OF[path]
        for (path, _, _), r in zip(contenders, answers, strict=True)
        if r.status_code == 200
    ]
    lost = [r for r in answers if r.status_code != 200]
    assert won, [r.text for r in answers]
    new = steps[len(before) :]
    assert sorted(s["action"] for s in new) == sorted(won)
    for r in lost:
        problem = r.json()
        assert r.status_code == 409 and problem["code"] == "illegal-transition", r.text
        # Refused in the state the winner left.
        assert problem["current_state"] in {s["to_state"] for s in new}, (problem, new)


async def test_the_overnight_job_passes_over_an_order_being_accepted(
    res, tenant: Tenant, client: httpx.AsyncClient
) -> None:
    """The morning job meets the duty leader's night case while he is accepting it: it
    skips the locked order rather than wait or take it from under him; the accept
    applies, and the next run hands the accepted but unresolved case to the service center
    (what he still holds, accepted or not)."""
    async with tenant_transaction(res.sessions, tenant.ctx()) as session:
        wo_id = await dispatch_classified(
            session, tenant.tenant_id, tenant.classified(building="3"), now=NIGHT
        )
    assert wo_id is not None
    url = f"/v1/work-orders/{wo_id}"
    leader = tenant.token(tenant.duty_leader, "duty_leader")

    async with lock_holder(res.settings.database_url) as holder:
        hold = holder.transaction()
        await hold.start()
        await holder.execute("SELECT 1 FROM dispatch.work_orders WHERE id = $1 FOR UPDATE", wo_id)
        accepting = asyncio.create_task(client.post(f"{url}/accept", headers=leader, json={}))
        await until_waiting(
            res.settings.database_url, holder, 1, "the duty leader's accept waiting"
        )
        # Skips it (locked); a job that waited for it would wait for ever here.
        await asyncio.wait_for(run_overnight_handover(res.sessions, now=MORNING), 10)
        await hold.rollback()
        accepted = await accepting
    assert accepted.status_code == 200, accepted.text
    row, steps, owners, events = await stored(res, tenant, wo_id)
    assert [s["action"] for s in steps] == ["dispatch", "accept"]
    assert row.overnight_handover_at is not None  # still his, still due
    assert not inconsistencies(row, steps, owners, events)

    await run_overnight_handover(res.sessions, now=MORNING + timedelta(minutes=1))
    row, steps, owners, events = await stored(res, tenant, wo_id)
    assert [s["action"] for s in steps] == ["dispatch", "accept", "transfer"]
    assert (row.state, row.owner_id) == ("dispatched", tenant.assistant)
    assert [o["kind"] for o in owners] == ["first_receiver", "overnight_handover"]
    assert not inconsistencies(row, steps, owners, events)
