"""The whole loop across real services and NATS: an HTTP complaint at intake is
dispatched, accepted, resolved, signed off, fed back and closed at dispatch; intake's
record follows every step through its own consumer; a repeat call while the order is out
joins the case and is written on its one work order; the same household's next complaint
on the matter after the close is then a second complaint (二次投诉) on its own.

intake API → intake outbox → relay → JetStream → dispatch consumers → work order → dispatch
API steps (staff tokens made the way `propdesk token --staff CODE` makes them) → dispatch
outbox → relay → JetStream → intake-work-orders consumer → complaint status and timeline.
"""

from __future__ import annotations

import asyncio
import contextlib
from uuid import UUID, uuid4

import httpx
import pytest
from sqlalchemy import text

from propdesk.auth.tokens import issue_token
from propdesk.bus import Consumer
from propdesk.bus.consumer import ConsumerRunner
from propdesk.bus.relay import Relay
from propdesk.db.session import tenant_transaction
from propdesk.service.resources import ServiceResources
from propdesk.settings import Settings
from propdesk.tenancy import TenantContext
from propdesk.testing.databases import fresh_database
from propdesk.testing.waiting import eventually

intake_app = pytest.importorskip("intake.app")
from dispatch.app import create_app as create_dispatch_app  # noqa: E402
from dispatch.domain.lifecycle import State  # noqa: E402
from dispatch.handlers import DIRECTORY_TYPES, on_complaint_classified, on_directory_event  # noqa: E402
from intake.cli import resolve_staff  # noqa: E402
from intake.domain.case_status import WORK_ORDER_STATES  # noqa: E402
from intake.handlers import on_work_order_event  # noqa: E402
from intake.onboarding.apply import apply_document  # noqa: E402
from intake.onboarding.document import parse_document  # noqa: E402

COMPANY = """
tenant: {{code: {code}, name: 闭环物业, settings: {{}}}}
projects:
  - {{code: SUNRISE, name: 阳光花园, city: 上海, time_zone: Asia/Shanghai, calendar: cn,
     buildings: [{{code: "3", name: 3号楼, units: ["301"]}}]}}
departments:
  - {{code: cs, name: 客服部, kind: customer_service, project: SUNRISE}}
  - {{code: eng, name: 工程部, kind: engineering, project: SUNRISE}}
staff:
  - {{code: S001, name: 王敏, roles: [intake_clerk], department: cs, projects: [SUNRISE]}}
  - {{code: A001, name: 陈助理, roles: [affairs_assistant], department: cs, projects: [SUNRISE]}}
  - {{code: E001, name: 张工, roles: [handler], department: eng, projects: [SUNRISE],
     skills: [facility_repair]}}
  - {{code: H001, name: 李经理, roles: [department_head], department: eng, projects: [SUNRISE]}}
  - {{code: D001, name: 赵领班, roles: [duty_leader], projects: [SUNRISE]}}
routing: [{{category: facility_repair, department: eng, note: 工程部维修}}]
"""
STAFF = ("S001", "A001", "E001", "H001", "D001")


def test_every_dispatch_state_has_a_case_status() -> None:
    """The contract between the two services' vocabularies (no service imports the other;
    this cross-service test holds them together)."""
    assert set(WORK_ORDER_STATES) == {s.value for s in State}


@pytest.fixture(scope="module")
async def loop_settings(settings: Settings) -> Settings:
    return await fresh_database(settings, "e2e_lifecycle", ("intake", "dispatch"))


async def test_complaint_closes_at_dispatch_and_comes_back_as_a_second_complaint(
    loop_settings: Settings,
) -> None:
    s = loop_settings
    intake_res = await ServiceResources.open("intake", s)
    dispatch_res = await ServiceResources.open("dispatch", s)
    assert intake_res.nc is not None and dispatch_res.nc is not None
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    consumers: list[Consumer] = []
    code = f"LOOP{uuid4().hex[:6].upper()}"
    try:
        doc = parse_document(COMPANY.format(code=code))
        tenant: UUID = (await apply_document(intake_res.sessions, doc, actor="e2e")).tenant_id
        tasks.append(asyncio.create_task(Relay("intake", s, intake_res.nc).run(stop)))
        tasks.append(asyncio.create_task(Relay("dispatch", s, dispatch_res.nc).run(stop)))
        # Durables of this test only, filtered to its tenant (the stream is shared).
        suffix = tenant.hex[:12]
        wiring = [
            (
                Consumer(
                    f"e2e-loop-directory-{suffix}",
                    "dispatch",
                    [f"pd.{t}.{tenant}.>" for t in DIRECTORY_TYPES],
                    on_directory_event,
                ),
                dispatch_res,
            ),
            (
                Consumer(
                    f"e2e-loop-complaints-{suffix}",
                    "dispatch",
                    [
                        f"pd.complaint.classified.{tenant}.>",
                        f"pd.complaint.duplicate_joined.{tenant}.>",
                    ],
                    on_complaint_classified,
                ),
                dispatch_res,
            ),
            (
                Consumer(
                    f"e2e-loop-work-orders-{suffix}",
                    "intake",
                    [f"pd.work_order.*.{tenant}.>"],
                    on_work_order_event,
                ),
                intake_res,
            ),
        ]
        for consumer, res in wiring:
            consumers.append(consumer)
            runner = ConsumerRunner(consumer, s, res.sessions, res.nc)
            tasks.append(asyncio.create_task(runner.run(stop)))

        # Each person's token, as `propdesk token --tenant CODE --staff CODE` makes it.
        claims = {c: await resolve_staff(intake_res.sessions, code, c, []) for c in STAFF}

        def bearer(staff_code: str) -> dict[str, str]:
            cl = claims[staff_code]
            token = issue_token(
                s,
                tenant_id=cl.tenant_id,
                subject=str(cl.staff_id),
                roles=cl.roles,
                project_ids=cl.project_ids,
            )
            return {"authorization": f"Bearer {token}"}

        code_of = {str(c.staff_id): k for k, c in claims.items()}
        intake = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=intake_app.create_app(intake_res)),
            base_url="http://intake",
        )
        dispatch = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_dispatch_app(dispatch_res)),
            base_url="http://dispatch",
        )
        async with intake, dispatch:
            assistant = bearer("A001")

            async def routing_known() -> bool:
                r = await dispatch.get("/v1/routing-rules", headers=assistant)
                return r.status_code == 200 and bool(r.json().get("count"))

            async def directory_known() -> bool:
                # Every staff member, or the order could go to nobody (the duty leader
                # outside working hours) or the head could not sign off: the relay does not
                # keep the order of events across subjects.
                ctx = TenantContext.for_tenant(tenant, actor="e2e")
                async with tenant_transaction(dispatch_res.sessions, ctx) as session:
                    n = await session.scalar(text("SELECT count(*) FROM dispatch.staff"))
                return n == len(STAFF)

            await eventually(routing_known, "routing hints reach dispatch")
            await eventually(directory_known, "the directory reaches dispatch")

            complaint = {
                "project": "SUNRISE",
                "channel": "phone",
                "content": "3号楼301卫生间水管漏水, 请尽快维修",
                "category": "facility_repair",
                "place": "3号楼301卫生间",
                "unit": {"building": "3", "room": "301"},
                "complainant": {"name": "孙先生", "phone": "13900001111"},
            }
            r = await intake.post("/v1/complaints", headers=bearer("S001"), json=complaint)
            assert r.status_code == 201, r.text
            first = r.json()
            cid = first["id"]
            assert first["status"] == "received"

            async def the_order() -> dict | None:
                found = await dispatch.get(
                    "/v1/work-orders", params={"complaint_id": cid}, headers=assistant
                )
                items = found.json()["items"]
                return items[0] if items else None

            order = await eventually(the_order, "a work order for the complaint")
            url = f"/v1/work-orders/{order['id']}"

            async def intake_status(expected: str) -> None:
                async def probe() -> bool:
                    r = await intake.get(f"/v1/complaints/{cid}", headers=assistant)
                    return r.json()["status"] == expected

                await eventually(probe, f"intake shows {expected}")

            await intake_status("dispatched")

            # The owner calls again while the order is out: the call joins the case (200,
            # the same complaint), dispatch writes it on the one work order, makes no other.
            repeat = {**complaint, "channel": "wechat", "content": "3号楼301水管还在漏水, 催一下"}
            r = await intake.post("/v1/complaints", headers=bearer("S001"), json=repeat)
            assert r.status_code == 200, r.text
            assert r.json()["id"] == cid and r.json()["calls"] == 2
            assert r.json()["case"] == {
                "kind": "duplicate",
                "joined": cid,
                "reference": first["reference"],
                "reason": r.json()["case"]["reason"],
                "calls": 2,
                "notify_complainant": False,
            }

            async def the_call_on_the_order() -> dict | None:
                got = (await dispatch.get(url, headers=assistant)).json()
                calls = [st for st in got["steps"] if st["action"] == "duplicate_call"]
                return calls[0] if calls else None

            call = await eventually(the_call_on_the_order, "the repeat call on the work order")
            assert call["details"]["content"] == repeat["content"]
            assert call["details"]["channel"] == "wechat" and call["details"]["calls"] == 2

            async def work_orders_of_tenant() -> int:
                ctx = TenantContext.for_tenant(tenant, actor="e2e")
                async with tenant_transaction(dispatch_res.sessions, ctx) as session:
                    return await session.scalar(text("SELECT count(*) FROM dispatch.work_orders"))

            assert await work_orders_of_tenant() == 1
            # In working hours the engineer, outside them the duty shift leader.
            handler = bearer(code_of[order["handler_id"]])
            r = await dispatch.post(f"{url}/accept", headers=handler)
            assert r.status_code == 200, r.text
            await intake_status("accepted")
            r = await dispatch.post(
                f"{url}/resolve", headers=handler, json={"resolution": "更换水管"}
            )
            assert r.status_code == 200, r.text
            r = await dispatch.post(
                f"{url}/sign-off", headers=bearer("H001"), json={"comment": "已验收"}
            )
            assert r.status_code == 200, r.text
            r = await dispatch.post(
                f"{url}/feedback",
                headers=assistant,
                json={"channel": "phone", "content": "水管已更换", "commitment": "三天内回访"},
            )
            assert r.status_code == 200, r.text
            r = await dispatch.post(
                f"{url}/close", headers=assistant, json={"callback_result": "satisfied"}
            )
            assert r.status_code == 200 and r.json()["state"] == "closed", r.text
            await intake_status("closed")

            timeline = (
                await intake.get(f"/v1/complaints/{cid}/timeline", headers=assistant)
            ).json()
            steps = [e for e in timeline["events"] if e["type"].startswith("work_order.")]
            kinds = [e["type"] for e in steps]
            for step in (
                "dispatched",
                "accepted",
                "resolved",
                "signed_off",
                "feedback_given",
                "closed",
            ):
                assert f"work_order.{step}" in kinds, kinds
            assert kinds.index("work_order.dispatched") < kinds.index("work_order.closed")
            by_type = {e["type"]: e for e in steps}
            handler_name = (
                "张工 (E001)" if code_of[order["handler_id"]] == "E001" else "赵领班 (D001)"
            )
            assert handler_name in by_type["work_order.dispatched"]["reason"]
            assert "eng" in by_type["work_order.dispatched"]["reason"]
            assert "更换水管" in by_type["work_order.resolved"]["reason"]
            assert "已验收" in by_type["work_order.signed_off"]["reason"]
            assert "satisfied" in by_type["work_order.closed"]["reason"]

            # The same household, the same matter, after the case was closed.
            again = {**complaint, "content": "3号楼301卫生间水管又漏水了"}
            r = await intake.post("/v1/complaints", headers=bearer("S001"), json=again)
            assert r.status_code == 201, r.text
            second = r.json()
            assert second["case"]["kind"] == "new"
            assert second["grade"] == "complex"
            assert second["second_complaint"] == {"prior_cases": 1, "previous_case_id": cid}
            assert any(
                g.startswith("complex:second_complaint") and first["reference"] in g
                for g in second["grade_reasons"]
            ), second["grade_reasons"]
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for consumer, res in zip(consumers, (dispatch_res, dispatch_res, intake_res), strict=False):
            js = res.nc.jetstream() if res.nc else None
            if js is not None:
                with contextlib.suppress(Exception):
                    await js.delete_consumer(s.stream_name, consumer.name)
        await intake_res.close()
        await dispatch_res.close()
