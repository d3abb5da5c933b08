"""complaint.classified through real JetStream into the dispatch consumer: a replayed
event (same id, and a copy with a new id) still makes exactly one work order."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from uuid import uuid4

import orjson
from sqlalchemy import text

from dispatch.handlers import on_complaint_classified
from dispatch.testing import Tenant
from propdesk.bus import Consumer
from propdesk.bus.consumer import ConsumerRunner
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import tenant_transaction
from propdesk.events import new_event
from propdesk.events.contracts.complaint import ComplaintClassified
from propdesk.service.resources import ServiceResources


async def test_replayed_classified_event_over_nats(res: ServiceResources, tenant: Tenant) -> None:
    settings = res.settings
    nc = await connect(settings, name="dispatch-consumer-test")
    js = nc.jetstream()
    await ensure_stream(js, settings)
    now = datetime.now(UTC)
    payload = ComplaintClassified(
        complaint_id=uuid4(),
        reference="TS-9",
        project_id=tenant.project_id,
        channel="phone",
        category="environment",
        grade="simple",
        grade_reasons=[],
        category_reason="test",
        received_at=now,
        recorded_at=now,
    )
    env = new_event(
        payload,
        tenant_id=tenant.tenant_id,
        project_id=tenant.project_id,
        aggregate_id=payload.complaint_id,
        producer="intake",
    )
    copy = env.model_copy(update={"id": uuid4()})  # a re-emitted event: new id, same complaint
    consumer = Consumer(
        name=f"dispatch-test-{tenant.tenant_id.hex[:12]}",
        schema="dispatch",
        subjects=[f"pd.complaint.classified.{tenant.tenant_id}.>"],
        handler=on_complaint_classified,
    )
    runner = ConsumerRunner(consumer, settings, res.sessions, nc)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        for e in (env, env, copy):
            # The second publish carries the same Nats-Msg-Id; send it under a fresh id so
            # that JetStream delivers it and the inbox has to catch it.
            await js.publish(
                e.subject,
                orjson.dumps(e.model_dump(mode="json")),
                headers={"Nats-Msg-Id": str(uuid4())},
            )
        for _ in range(100):
            if runner.handled + runner.duplicates >= 3:
                break
            await asyncio.sleep(0.05)
        assert (runner.handled, runner.duplicates) == (2, 1)
        async with tenant_transaction(res.sessions, tenant.ctx()) as session:
            rows = (
                await session.execute(
                    text(
                        "SELECT department_code, state FROM dispatch.work_orders"
                        " WHERE complaint_id = :c"
                    ),
                    {"c": payload.complaint_id},
                )
            ).all()
        assert len(rows) == 1
        # environment → cleaning by default; this tenant has no cleaning department.
        assert rows[0].department_code == "cleaning" and rows[0].state == "dispatched"
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)
        with contextlib.suppress(Exception):
            await js.delete_consumer(settings.stream_name, consumer.name)
        await nc.close()
