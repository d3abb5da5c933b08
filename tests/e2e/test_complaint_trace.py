"""One trace follows a real complaint across the services, checked span by span in memory.

HTTP POST /v1/complaints at intake → intake outbox → relay (`publish complaint.*`) →
JetStream → dispatch's complaint consumer (`consume complaint.classified`) → work order →
dispatch outbox → relay (`publish work_order.dispatched`) → intake's work-order consumer
(→ `complaint.status_changed`, published in turn) and reporting's activity consumer, which
takes every one of them. Every publish and consume span of these events belongs to the
HTTP request's trace, and each consume span is the child of its event's publish span.

The services' real consumers run (their handlers, batching and lanes), under durable names
of this test and subjects narrowed to its tenant (the stream is shared)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterable
from uuid import UUID, uuid4

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from sqlalchemy import text

from propdesk.auth.tokens import issue_token
from propdesk.bus.consumer import Consumer, ConsumerRunner
from propdesk.bus.relay import Relay
from propdesk.db.session import tenant_transaction
from propdesk.service.resources import ServiceResources
from propdesk.settings import Settings
from propdesk.telemetry import install_test_exporter
from propdesk.tenancy import TenantContext
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.databases import fresh_database
from propdesk.testing.waiting import eventually

intake_app = pytest.importorskip("intake.app")
intake_handlers = pytest.importorskip("intake.handlers")
onboarding_apply = pytest.importorskip("intake.onboarding.apply")
onboarding_document = pytest.importorskip("intake.onboarding.document")

from dispatch.handlers import consumers as dispatch_consumers  # noqa: E402
from reporting.service import ACTIVITY_CONSUMER  # noqa: E402

SERVICES = ("intake", "dispatch", "reporting")
COMPANY = """
tenant: {{code: {code}, name: 追踪物业, settings: {{}}}}
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
"""
STAFF_COUNT = 3
OUTBOX_ROWS = " UNION ALL ".join(
    f"SELECT event_id, event_type, published_at FROM {s}.outbox WHERE tenant_id = $1"
    for s in SERVICES
)


def for_tenant(subject: str, tenant: UUID) -> str:
    """`pd.<aggregate>[.<verb>].>` narrowed to one tenant (`pd.<type>.<tenant>.<project>`)."""
    assert subject.endswith(".>"), subject
    kind = subject.removeprefix("pd.").removesuffix(".>")
    verb = "" if "." in kind else ".*"
    return f"pd.{kind}{verb}.{tenant}.>"


def of_this_test(consumer: Consumer, tenant: UUID) -> Consumer:
    return dataclasses.replace(
        consumer,
        name=f"{consumer.name}-{tenant.hex[:12]}",
        subjects=[for_tenant(s, tenant) for s in consumer.subjects],
    )


@pytest.fixture(scope="module")
async def trace_settings(settings: Settings) -> Settings:
    return await fresh_database(settings, "e2e_trace", SERVICES)


@pytest.fixture
async def stack(trace_settings: Settings) -> AsyncIterator[dict[str, ServiceResources]]:
    opened: dict[str, ServiceResources] = {}
    try:
        for name in SERVICES:
            opened[name] = await ServiceResources.open(name, trace_settings)
        yield opened
    finally:
        for res in opened.values():
            await res.close()


def message_id(span: ReadableSpan) -> str | None:
    return (span.attributes or {}).get("messaging.message.id")  # type: ignore[return-value]


def bus_spans(spans: Iterable[ReadableSpan], ids: set[str]) -> list[ReadableSpan]:
    return [
        s
        for s in spans
        if s.kind in (SpanKind.PRODUCER, SpanKind.CONSUMER) and message_id(s) in ids
    ]


async def test_one_trace_follows_a_complaint_through_every_service(
    trace_settings: Settings, stack: dict[str, ServiceResources]
) -> None:
    s = trace_settings
    exporter = install_test_exporter()
    intake, dispatch, reporting = (stack[n] for n in SERVICES)
    doc = onboarding_document.parse_document(COMPANY.format(code=f"TRC{uuid4().hex[:6]}"))
    tenant: UUID = (
        await onboarding_apply.apply_document(intake.sessions, doc, actor="e2e")
    ).tenant_id

    runs = [
        *((c, dispatch) for c in dispatch_consumers()),
        *((c, intake) for c in intake_handlers.consumers()),
        (ACTIVITY_CONSUMER, reporting),
    ]
    consumers = {c.name: of_this_test(c, tenant) for c, _res in runs}
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(Relay("intake", s, intake.nc).run(stop)),
        asyncio.create_task(Relay("dispatch", s, dispatch.nc).run(stop)),
        *(
            asyncio.create_task(ConsumerRunner(consumers[c.name], s, r.sessions, r.nc).run(stop))
            for c, r in runs
        ),
    ]
    clerk = issue_token(s, tenant_id=tenant, subject="e2e-clerk", roles=["intake_clerk"])
    try:
        # The directory must reach dispatch first, so the complaint is routed, not parked.
        async def directory_known() -> bool:
            ctx = TenantContext.for_tenant(tenant, actor="e2e")
            async with tenant_transaction(dispatch.sessions, ctx) as session:
                n = await session.scalar(text("SELECT count(*) FROM dispatch.staff"))
            return n == STAFF_COUNT

        await eventually(directory_known, "the directory reaches dispatch", within=30)
        onboarding = {str(r["event_id"]) for r in await admin_fetch(s, OUTBOX_ROWS, tenant)}

        transport = httpx.ASGITransport(app=intake_app.create_app(intake))
        async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
            r = await client.post(
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

        def consumed(spans: list[ReadableSpan], group: str, event_id: str) -> bool:
            name = consumers[group].name
            return any(
                sp.kind is SpanKind.CONSUMER
                and message_id(sp) == event_id
                and sp.attributes.get("messaging.consumer.group.name") == name
                for sp in spans
            )

        async def the_whole_chain() -> tuple[dict[str, str], list[ReadableSpan]] | None:
            """Every event of the complaint published and consumed by each consumer of
            it, down to the status change the work order caused."""
            rows = await admin_fetch(s, OUTBOX_ROWS, tenant)
            chain = {str(r["event_id"]): r["event_type"] for r in rows}
            for event_id in onboarding:
                chain.pop(event_id, None)
            types = set(chain.values())
            if not {"complaint.classified", "work_order.dispatched"} <= types:
                return None
            if "complaint.status_changed" not in types:
                return None
            if any(r["published_at"] is None for r in rows):
                return None
            spans = list(exporter.get_finished_spans())
            published = {message_id(sp) for sp in spans if sp.kind is SpanKind.PRODUCER}
            for event_id, kind in chain.items():
                wanted = ["reporting-activity"]
                if kind == "complaint.classified":
                    wanted.append("dispatch-complaints")
                if kind.startswith("work_order."):
                    wanted.append("intake-work-orders")
                if event_id not in published:
                    return None
                if not all(consumed(spans, group, event_id) for group in wanted):
                    return None
            return chain, spans

        chain, spans = await eventually(the_whole_chain, "the complaint's whole chain", 30)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        js = intake.nc.jetstream() if intake.nc else None
        for c in consumers.values():
            if js is not None:
                with contextlib.suppress(Exception):
                    await js.delete_consumer(s.stream_name, c.name)

    (server,) = [
        sp for sp in spans if sp.kind is SpanKind.SERVER and sp.name == "POST /v1/complaints"
    ]
    trace_id = server.context.trace_id
    followed = bus_spans(spans, set(chain))
    assert {sp.name for sp in followed} >= {
        "publish complaint.classified",
        "consume complaint.classified",
        "publish work_order.dispatched",
        "consume work_order.dispatched",
        "publish complaint.status_changed",
        "consume complaint.status_changed",
    }
    strays = [
        (sp.name, message_id(sp), format(sp.context.trace_id, "032x"))
        for sp in followed
        if sp.context.trace_id != trace_id
    ]
    assert not strays, f"outside the request's trace {trace_id:032x}: {strays}"
    # Each consume span hangs under its own event's publish span.
    publish_of = {message_id(sp): sp for sp in followed if sp.kind is SpanKind.PRODUCER}
    for sp in followed:
        if sp.kind is SpanKind.CONSUMER:
            assert sp.parent is not None
            assert sp.parent.span_id == publish_of[message_id(sp)].context.span_id, sp.name
    # And every publish span descends from the HTTP request.
    by_id = {sp.context.span_id: sp for sp in spans}
    for sp in publish_of.values():
        node = sp
        while node.parent is not None and node.parent.span_id in by_id:
            node = by_id[node.parent.span_id]
        assert node.context.span_id == server.context.span_id, sp.name
