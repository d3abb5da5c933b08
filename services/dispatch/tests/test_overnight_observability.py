"""The overnight hand-over, run as the service runs it (a periodic job), is traced and
logged under the tenant it acts for: its "handed" line names tenant and trace, and the
`work_order.handed_over` event it writes carries the trace to every consumer."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson

from dispatch.flows.dispatching import dispatch_classified
from dispatch.flows.overnight import run_overnight_handover
from dispatch.testing import Tenant
from propdesk.db.session import tenant_transaction
from propdesk.service.logging import configure_logging
from propdesk.service.resources import ServiceResources
from propdesk.service.runner import run_job
from propdesk.service.spec import PeriodicTask
from propdesk.telemetry import install_test_exporter
from propdesk.testing.admin_reads import admin_fetch

SH = ZoneInfo("Asia/Shanghai")
NIGHT = datetime(2026, 11, 24, 23, 0, tzinfo=SH)  # a Tuesday, after hours
MORNING = datetime(2026, 11, 25, 8, 30, tzinfo=SH)  # the next working start


async def test_the_job_hands_over_under_the_tenant_and_in_its_trace(
    res: ServiceResources, tenant: Tenant
) -> None:
    async with tenant_transaction(res.sessions, tenant.ctx()) as session:
        wo = await dispatch_classified(
            session, tenant.tenant_id, tenant.classified(building="3"), now=NIGHT
        )
    assert wo is not None

    async def overnight(r: ServiceResources) -> None:
        await run_overnight_handover(r.sessions, now=MORNING)

    exporter = install_test_exporter()
    stream = io.StringIO()
    handler = configure_logging(
        "dispatch", res.settings.model_copy(update={"log_json": True}), stream=stream
    )
    try:
        assert await run_job(PeriodicTask("overnight-handover", 60.0, overnight), res)
    finally:
        logging.getLogger().removeHandler(handler)

    spans = exporter.get_finished_spans()
    (job,) = [s for s in spans if s.name == "job overnight-handover"]
    (ours,) = [
        s
        for s in spans
        if s.name == "overnight hand-over"
        and s.attributes["propdesk.tenant_id"] == str(tenant.tenant_id)
    ]
    assert job.parent is None
    assert ours.parent is not None and ours.parent.span_id == job.context.span_id
    assert ours.attributes["propdesk.handed"] == 1
    trace_id = format(job.context.trace_id, "032x")

    lines = [json.loads(ln) for ln in stream.getvalue().splitlines()]
    (handed,) = [
        ln
        for ln in lines
        if ln["logger"] == "dispatch.overnight" and ln["tenant_id"] == str(tenant.tenant_id)
    ]
    assert handed["msg"] == "handed 1 overnight case(s) to the service center"
    assert handed["trace_id"] == trace_id
    assert handed["span_id"] == format(ours.context.span_id, "016x")
    assert handed["actor"] == "dispatch:overnight-handover"

    (row,) = await admin_fetch(
        res.settings,
        "SELECT trace_context FROM dispatch.outbox"
        " WHERE event_type = 'work_order.handed_over' AND tenant_id = $1"
        " AND envelope -> 'payload' ->> 'kind' = 'overnight_handover'",
        tenant.tenant_id,
    )
    context = orjson.loads(row["trace_context"])
    _version, event_trace, parent_span, _flags = context["traceparent"].split("-")
    assert event_trace == trace_id
    assert parent_span == format(ours.context.span_id, "016x")
