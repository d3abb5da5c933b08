"""One trace runs HTTP → outbox → NATS → consumer: span parentage checked in memory."""

from __future__ import annotations

import asyncio
from uuid import UUID, uuid4

import httpx
from fastapi import APIRouter, Header

from propdesk.bus.consumer import Consumer, ConsumerRunner
from propdesk.bus.outbox import Outbox
from propdesk.bus.relay import Relay
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.service.app import create_service_app
from propdesk.settings import Settings
from propdesk.telemetry import install_test_exporter
from propdesk.tenancy import TenantContext
from propdesk.testing.bus_schema import SCHEMA, applied_recorder, count_applied, note_event


async def test_consumer_span_continues_the_http_request_trace(settings: Settings, bus_schema):
    exporter = install_test_exporter()
    engine = create_engine(settings)
    sessions = session_factory(engine)
    tenant, name = uuid4(), f"trace-{uuid4().hex[:8]}"
    router = APIRouter()
    written: list[UUID] = []

    @router.post("/notes", status_code=201)
    async def post_note(x_tenant: UUID = Header()) -> dict:
        env = note_event(x_tenant, None, body="traced")
        async with tenant_transaction(sessions, TenantContext.for_tenant(x_tenant)) as s:
            await Outbox(SCHEMA).add(s, env)
        written.append(env.id)
        return {"id": str(env.id)}

    app = create_service_app("trace-test", settings=settings, routers=[router])
    nc = await connect(settings, "trace-test")
    await ensure_stream(nc.jetstream(), settings)
    stop = asyncio.Event()
    runner = ConsumerRunner(
        Consumer(name, SCHEMA, [f"pd.bustest.*.{tenant}.>"], applied_recorder(name)),
        settings,
        sessions,
        nc,
    )
    tasks = [
        asyncio.create_task(Relay(SCHEMA, settings, nc).run(stop)),
        asyncio.create_task(runner.run(stop)),
    ]
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as client:
            resp = await client.post("/notes", headers={"X-Tenant": str(tenant)})
        assert resp.status_code == 201
        event_id = written[0]
        for _ in range(200):
            if str(event_id) in await count_applied(settings, name):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("event never consumed")
        await asyncio.sleep(0.2)  # let the consumer span end
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await nc.close()
        await engine.dispose()

    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    consume = next(
        s
        for s in spans
        if s.name == "consume bustest.noted"
        and s.attributes.get("messaging.message.id") == str(event_id)
    )
    publish = by_id[consume.parent.span_id]
    assert publish.name == "publish bustest.noted"
    assert publish.attributes["messaging.message.id"] == str(event_id)
    http_server = next(
        s for s in spans if s.name.startswith("POST /notes") and s.kind.name == "SERVER"
    )
    assert consume.context.trace_id == publish.context.trace_id == http_server.context.trace_id
    # The publish span hangs under the request: walk up from it to the server span.
    node = publish
    while node.parent is not None and node.parent.span_id in by_id:
        node = by_id[node.parent.span_id]
    assert node.context.span_id == http_server.context.span_id
