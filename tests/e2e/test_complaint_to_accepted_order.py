"""The whole path across real services and NATS: an HTTP complaint at intake becomes a
work order at dispatch, which its handler accepts.

intake API → intake outbox → relay → JetStream → dispatch consumers (directory, then
complaint.classified) → work order → dispatch API accept. Both services run in process
on one fresh database (one schema each, as in the local stack)."""

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
onboarding_apply = pytest.importorskip("intake.onboarding.apply")
onboarding_document = pytest.importorskip("intake.onboarding.document")

from dispatch.app import create_app as create_dispatch_app  # noqa: E402
from dispatch.handlers import (  # noqa: E402
    DIRECTORY_TYPES,
    on_complaint_classified,
    on_directory_event,
)

COMPANY = """
tenant: {{code: {code}, name: 端到端物业, settings: {{}}}}
projects:
  - {{code: SUNRISE, name: 阳光花园, city: 上海, time_zone: Asia/Shanghai, calendar: cn,
     buildings: [{{code: "3", name: 3号楼, units: ["301"]}}]}}
departments:
  - {{code: cs, name: 客服部, kind: customer_service, project: SUNRISE}}
  - {{code: eng, name: 工程部, kind: engineering, project: SUNRISE}}
staff:
  - {{code: S001, name: 王敏, roles: [intake_clerk], department: cs, projects: [SUNRISE]}}
  - {{code: E001, name: 张工, roles: [handler], department: eng, projects: [SUNRISE],
     skills: [facility_repair]}}
  - {{code: D001, name: 赵领班, roles: [duty_leader], projects: [SUNRISE]}}
routing:
  - {{category: facility_repair, department: eng, note: 工程部维修}}
  - {{category: fees, department: cs, project: SUNRISE, handler_staff: S001, note: 前台先答复}}
"""
STAFF_COUNT = 3


@pytest.fixture(scope="module")
async def e2e_settings(settings: Settings) -> Settings:
    return await fresh_database(settings, "e2e_dispatch", ("intake", "dispatch"))


async def test_http_complaint_becomes_an_accepted_work_order(e2e_settings: Settings) -> None:
    s = e2e_settings
    intake_res = await ServiceResources.open("intake", s)
    dispatch_res = await ServiceResources.open("dispatch", s)
    assert intake_res.nc is not None and dispatch_res.nc is not None
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    tenant: UUID | None = None
    try:
        doc = onboarding_document.parse_document(COMPANY.format(code=f"E2E{uuid4().hex[:6]}"))
        report = await onboarding_apply.apply_document(intake_res.sessions, doc, actor="e2e")
        tenant: UUID = report.tenant_id

        tasks.append(asyncio.create_task(Relay("intake", s, intake_res.nc).run(stop)))
        tasks.append(asyncio.create_task(Relay("dispatch", s, dispatch_res.nc).run(stop)))
        # Durables of this test only, filtered to its tenant (the stream is shared).
        suffix = tenant.hex[:12]
        consumers = [
            Consumer(
                f"e2e-dispatch-directory-{suffix}",
                "dispatch",
                [f"pd.{t}.{tenant}.>" for t in DIRECTORY_TYPES],
                on_directory_event,
            ),
            Consumer(
                f"e2e-dispatch-complaints-{suffix}",
                "dispatch",
                [f"pd.complaint.classified.{tenant}.>"],
                on_complaint_classified,
            ),
        ]
        for c in consumers:
            runner = ConsumerRunner(c, s, dispatch_res.sessions, dispatch_res.nc)
            tasks.append(asyncio.create_task(runner.run(stop)))

        clerk = issue_token(s, tenant_id=tenant, subject="e2e-clerk", roles=["intake_clerk"])
        intake = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=intake_app.create_app(intake_res)),
            base_url="http://intake",
        )
        dispatch = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_dispatch_app(dispatch_res)),
            base_url="http://dispatch",
        )
        async with intake, dispatch:
            # The directory must reach dispatch before the complaint does, or the order
            # would be routed to a department or duty leader dispatch does not know yet:
            # events of different subjects are not ordered with respect to each other.
            reader = issue_token(s, tenant_id=tenant, subject="e2e-admin", roles=["tenant_admin"])
            auth = {"authorization": f"Bearer {reader}"}

            async def routing_known() -> bool:
                # Both rules, the project-bound one too (it names a project and a staff
                # member by code: they must reach dispatch before the rules do).
                rules = (await dispatch.get("/v1/routing-rules", headers=auth)).json()
                bound = [r for r in rules.get("items", []) if r["project_id"]]
                return (
                    rules.get("count") == 2 and bool(bound) and bool(bound[0]["handler_staff_id"])
                )

            async def directory_known() -> bool:
                ctx = TenantContext.for_tenant(tenant, actor="e2e")
                async with tenant_transaction(dispatch_res.sessions, ctx) as session:
                    n = await session.scalar(text("SELECT count(*) FROM dispatch.staff"))
                return n == STAFF_COUNT

            await eventually(routing_known, "routing hints reach dispatch")
            await eventually(directory_known, "the directory reaches dispatch")

            r = await intake.post(
                "/v1/complaints",
                headers={"authorization": f"Bearer {clerk}"},
                json={
                    "project": "SUNRISE",
                    "channel": "phone",
                    "content": "3号楼301卫生间水管漏水, 请尽快维修",
                    "category": "facility_repair",
                    "unit": {"building": "3", "room": "301"},
                },
            )
            assert r.status_code == 201, r.text
            complaint_id = r.json()["id"]

            async def the_order() -> dict | None:
                found = await dispatch.get(
                    "/v1/work-orders", params={"complaint_id": complaint_id}, headers=auth
                )
                items = found.json()["items"]
                return items[0] if items else None

            order = await eventually(the_order, "a work order for the complaint")
            assert order["state"] == "dispatched"
            assert order["handler_id"], order["assignment_reason"]
            if not order["after_hours"]:
                assert order["department_code"] == "eng"
                assert order["rule_id"].startswith("tenant:")

            handler = issue_token(
                s, tenant_id=tenant, subject=order["handler_id"], roles=["handler", "duty_leader"]
            )
            r = await dispatch.post(
                f"/v1/work-orders/{order['id']}/accept",
                headers={"authorization": f"Bearer {handler}"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["state"] == "accepted"
            assert r.json()["owner_id"] == order["handler_id"]
            full = (await dispatch.get(f"/v1/work-orders/{order['id']}", headers=auth)).json()
            assert [st["action"] for st in full["steps"]] == ["dispatch", "accept"]
            assert full["building"] == "3"
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        js = dispatch_res.nc.jetstream() if dispatch_res.nc else None
        if js is not None and tenant is not None:
            for name in ("directory", "complaints"):
                with contextlib.suppress(Exception):
                    await js.delete_consumer(
                        s.stream_name, f"e2e-dispatch-{name}-{tenant.hex[:12]}"
                    )
        await intake_res.close()
        await dispatch_res.close()
