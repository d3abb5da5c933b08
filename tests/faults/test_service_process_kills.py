"""Real service processes (`python -m propdesk.service.runner NAME`) killed with SIGKILL at
the worst line, then restarted: nothing lost, nothing applied twice.

- dispatch's `dispatch-complaints` consumer (batched: 32 events a transaction, 4 lanes) dies
  after a transaction committed and before its acks: one event alone, a batch in one
  transaction, and a batch cut between two transactions. Each classified complaint must
  end with exactly one work order and one `work_order.dispatched` outbox row.
- intake's HTTP process dies after a complaint's recording committed, before the replay
  cache is written and the answer sent: the client's retry with the same Idempotency-Key
  must get the first answer (replayed), and the complaint and its events exist once.
- intake told to stop (SIGTERM) while a request is in flight: the request is answered and
  its events published before the process exits 0.

Each test has a NATS server of its own (the service processes run their real durables,
which must see this test's events only) and the module a database of its own.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import IO
from uuid import UUID, uuid4

import httpx
import pytest
import redis.asyncio as aioredis

from propdesk.bus.outbox import Outbox
from propdesk.bus.relay import Relay
from propdesk.bus.streams import connect, ensure_stream
from propdesk.db.session import create_engine, session_factory, tenant_transaction
from propdesk.devstack.nats import NatsServer
from propdesk.devstack.ports import free_port
from propdesk.events import new_event
from propdesk.service.resources import ServiceResources
from propdesk.settings import Settings
from propdesk.tenancy import TenantContext
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.databases import fresh_database
from propdesk.testing.waiting import eventually

pytestmark = pytest.mark.faults

ACK_WAIT_SECONDS = 2


@pytest.fixture(scope="module")
async def services_db(settings: Settings) -> Settings:
    return await fresh_database(settings, "faults_services", ("intake", "dispatch"))


@pytest.fixture
async def own(services_db: Settings, tmp_path: Path):
    """The module's database and a NATS server of this test's own."""
    server = NatsServer(tmp_path, free_port(), server_name=f"faults-{uuid4().hex[:8]}")
    await asyncio.to_thread(server.start)
    try:
        yield services_db.model_copy(update={"nats_url": server.url})
    finally:
        await asyncio.to_thread(server.stop)


class ServiceProcess:
    """`python -m propdesk.service.runner NAME --port PORT [ARGS]` against `settings`, with
    PROPDESK_FAULT armed once (the marker file): the first run dies at the crash point, the
    restarted one (same environment) runs normally. Output goes to a file, not a pipe a
    long-running process could fill."""

    def __init__(self, name: str, settings: Settings, fault: str, tmp: Path, *args: str):
        self.name = name
        self.port = free_port()
        self.args = args
        self.marker = tmp / f"{name}-crashed"
        self.log_path = tmp / f"{name}.log"
        self.env = {k: v for k, v in os.environ.items() if k != "PROPDESK_APP_DATABASE_URL"}
        self.env.update(
            PROPDESK_DATABASE_URL=settings.database_url,
            PROPDESK_NATS_URL=settings.nats_url,
            PROPDESK_REDIS_URL=settings.redis_url,
            PROPDESK_FAULT=fault,
            PROPDESK_FAULT_MARKER=str(self.marker),
            # A killed delivery comes back this soon.
            PROPDESK_CONSUMER_ACK_WAIT_SECONDS=str(ACK_WAIT_SECONDS),
            PROPDESK_LOG_JSON="false",
        )
        self.proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: ASYNC230 (a child's stdout)
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "propdesk.service.runner",
            self.name,
            "--port",
            str(self.port),
            *self.args,
            env=self.env,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def healthy(self) -> None:
        async def up() -> bool:
            assert self.proc is not None
            assert self.proc.returncode is None, self.output()
            try:
                async with httpx.AsyncClient(timeout=1) as c:
                    return (await c.get(f"{self.url}/healthz")).status_code == 200
            except httpx.TransportError:
                return False

        await eventually(up, f"{self.name} answering /healthz")

    async def killed(self) -> None:
        """It died at its crash point, by SIGKILL."""
        assert self.proc is not None
        await asyncio.wait_for(self.proc.wait(), 15)
        self._close_log()
        assert self.proc.returncode == -signal.SIGKILL, self.output()
        assert self.marker.exists()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    async def metric(self, family: str, **labels: str) -> float:
        """A sample of the process's /metrics (0 when absent)."""
        async with httpx.AsyncClient(timeout=2) as c:
            text = (await c.get(f"{self.url}/metrics")).text
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            m = re.fullmatch(rf"{re.escape(family)}\{{([^}}]*)\}} (\S+)", line)
            if m and m.group(1) == want:
                return float(m.group(2))
        return 0.0


# -- dispatch -----------------------------------------------------------------------------


async def _publish_classified(own: Settings, tenant, n: int) -> list[UUID]:
    """`n` complaint.classified events of the tenant's project, as intake emits them (its
    outbox, its relay), all in the stream before dispatch starts. Their complaint ids."""
    complaints = [tenant.classified(reference=f"K-{i}") for i in range(n)]
    envs = [
        new_event(
            c,
            tenant_id=tenant.tenant_id,
            project_id=tenant.project_id,
            aggregate_id=c.complaint_id,
            aggregate_seq=2,
            producer="intake",
        )
        for c in complaints
    ]
    engine = create_engine(own)
    try:
        async with tenant_transaction(
            session_factory(engine), TenantContext.for_tenant(tenant.tenant_id)
        ) as s:
            await Outbox("intake").add(s, *envs)
    finally:
        await engine.dispose()
    nc = await connect(own, "fault-test-intake-relay")
    relay = Relay("intake", own, nc)
    try:
        await ensure_stream(nc.jetstream(), own)
        while await relay.publish_batch():
            pass
    finally:
        await relay.close()
        await nc.close()
    return [c.complaint_id for c in complaints]


async def _work_orders(own: Settings, tenant_id: UUID) -> dict[UUID, int]:
    rows = await admin_fetch(
        own,
        "SELECT complaint_id, count(*) AS n FROM dispatch.work_orders WHERE tenant_id = $1"
        " GROUP BY 1",
        tenant_id,
    )
    return {r["complaint_id"]: r["n"] for r in rows}


async def _dispatched_events(own: Settings, tenant_id: UUID) -> dict[UUID, int]:
    rows = await admin_fetch(
        own,
        "SELECT (envelope->'payload'->>'complaint_id')::uuid AS c, count(*) AS n"
        " FROM dispatch.outbox WHERE tenant_id = $1 AND event_type = 'work_order.dispatched'"
        " GROUP BY 1",
        tenant_id,
    )
    return {r["c"]: r["n"] for r in rows}


@pytest.mark.parametrize(
    "events",
    [
        # A group of one goes the one-event path (its own transaction, then ack).
        pytest.param(1, id="one event"),
        # The whole fetched batch in one shared transaction (one project: one lane).
        pytest.param(6, id="one shared transaction"),
        # 32 events a transaction: killed after the first commit, the rest never applied.
        pytest.param(40, id="between the transactions of a batch"),
    ],
)
async def test_dispatch_consumer_killed_after_commit_before_ack_dispatches_each_once(
    own: Settings, tmp_path: Path, events: int
):
    from dispatch.testing import seed_tenant

    res = await ServiceResources.open("dispatch", own, nats=False)
    try:
        tenant = await seed_tenant(res)
    finally:
        await res.close()
    complaints = await _publish_classified(own, tenant, events)
    want = dict.fromkeys(complaints, 1)

    dispatch = ServiceProcess("dispatch", own, "consumer.before_ack", tmp_path, "--no-api")
    nc = await connect(own, "fault-test-observer")
    js = nc.jetstream()
    try:
        await dispatch.start()
        await dispatch.killed()
        # What committed before the kill: a work order and its event apiece, nothing acked.
        first = await _work_orders(own, tenant.tenant_id)
        assert set(first.values()) == {1}, first
        assert await _dispatched_events(own, tenant.tenant_id) == first
        if events <= 32:
            assert first == want  # the whole batch was one transaction (or one event)
        else:
            assert 0 < len(first) < events, first
        info = await js.consumer_info(own.stream_name, "dispatch-complaints")
        assert info.ack_floor.stream_seq == 0, info  # not one ack

        await dispatch.start()

        async def settled() -> bool:
            info = await js.consumer_info(own.stream_name, "dispatch-complaints")
            return info.num_pending == 0 and info.num_ack_pending == 0

        try:
            await eventually(lambda: _all(own, tenant.tenant_id, want), "every complaint")
            # The killed deliveries came back after ack_wait and were acked this time.
            await eventually(settled, "every message acked", within=ACK_WAIT_SECONDS + 10)
            labels = {"consumer": "dispatch-complaints"}
            duplicates = await dispatch.metric("propdesk_bus_consumer_duplicates_total", **labels)
            handled = await dispatch.metric("propdesk_bus_consumer_handled_total", **labels)
        finally:
            await dispatch.stop()
        assert await _work_orders(own, tenant.tenant_id) == want
        assert await _dispatched_events(own, tenant.tenant_id) == want
        # The restarted process skipped what the killed one committed (the inbox) and
        # applied the rest.
        assert (duplicates, handled) == (len(first), events - len(first)), dispatch.output()
        dead = await admin_fetch(
            own,
            "SELECT count(*) AS n FROM dispatch.dead_letters WHERE tenant_id = $1",
            tenant.tenant_id,
        )
        assert dead[0]["n"] == 0
    finally:
        await dispatch.stop()
        await nc.close()


async def _all(own: Settings, tenant_id: UUID, want: dict[UUID, int]) -> bool:
    return (await _work_orders(own, tenant_id)).keys() >= want.keys()


# -- intake -------------------------------------------------------------------------------

COMPANY = """
tenant: {{code: {code}, name: 故障物业, settings: {{}}}}
projects:
  - {{code: SUNRISE, name: 阳光花园, city: 上海, time_zone: Asia/Shanghai, calendar: cn,
     buildings: [{{code: "1", name: 1号楼, units: ["101"]}}]}}
departments:
  - {{code: cs, name: 客服部, kind: customer_service, project: SUNRISE}}
staff:
  - {{code: S001, name: 王敏, roles: [intake_clerk], department: cs, projects: [SUNRISE]}}
routing: []
"""


async def _onboard(own: Settings) -> tuple[UUID, dict[str, str]]:
    """A company and an API key of it: (tenant id, the key's header)."""
    from intake.onboarding.apply import apply_document
    from intake.onboarding.document import parse_document
    from intake.store import apikeys

    res = await ServiceResources.open("intake", own, nats=False)
    try:
        doc = parse_document(COMPANY.format(code=f"KILL{uuid4().hex[:6]}"))
        report = await apply_document(res.sessions, doc, actor="test")
        ctx = TenantContext.for_tenant(report.tenant_id, actor="test")
        async with tenant_transaction(res.sessions, ctx) as s:
            key = await apikeys.create_key(
                s,
                tenant_id=report.tenant_id,
                name="call centre",
                project_ids=None,
                created_by="test",
            )
    finally:
        await res.close()
    return report.tenant_id, {"X-API-Key": key.secret}


async def test_intake_killed_after_commit_before_answer_replays_on_retry(
    own: Settings, tmp_path: Path
):
    tenant_id, key = await _onboard(own)
    headers = {**key, "Idempotency-Key": f"cc-{uuid4()}"}
    body = {
        "project": "SUNRISE",
        "channel": "call_center",
        "content": f"电梯故障，困人 {uuid4().hex[:8]}",
        "external_reference": f"CC-{uuid4().hex[:10]}",
        "complainant": {"name": "赵女士", "phone": f"139{uuid4().int % 10**8:08d}"},
    }
    redis = aioredis.from_url(own.redis_url)

    async def cached_answers() -> list[bytes]:
        return [k async for k in redis.scan_iter(match=f"pd:intake:idem:{{{tenant_id}}}:*")]

    async def complaints() -> list[UUID]:
        rows = await admin_fetch(
            own,
            "SELECT id FROM intake.complaints WHERE tenant_id = $1 AND external_reference = $2",
            tenant_id,
            body["external_reference"],
        )
        return [r["id"] for r in rows]

    async def events() -> dict[str, int]:
        rows = await admin_fetch(
            own,
            "SELECT event_type, count(*) AS n FROM intake.outbox WHERE tenant_id = $1"
            " AND event_type LIKE 'complaint.%' GROUP BY 1",
            tenant_id,
        )
        return {r["event_type"]: r["n"] for r in rows}

    intake = ServiceProcess("intake", own, "intake.after_commit", tmp_path)
    nc = await connect(own, "fault-test-observer")
    try:
        await intake.start()
        await intake.healthy()
        async with httpx.AsyncClient(base_url=intake.url, timeout=10) as client:
            with pytest.raises(httpx.TransportError):  # no answer: the process died
                await client.post("/v1/complaints", json=body, headers=headers)
        await intake.killed()
        # Committed, with its events; the replay cache never written.
        (complaint_id,) = await complaints()
        recorded = {"complaint.received": 1, "complaint.classified": 1}
        assert await events() == recorded
        assert await cached_answers() == []

        await intake.start()
        await intake.healthy()
        async with httpx.AsyncClient(base_url=intake.url, timeout=10) as client:
            retry = await client.post("/v1/complaints", json=body, headers=headers)
            assert retry.status_code == 201, retry.text
            assert retry.headers["idempotent-replayed"] == "true"
            assert retry.json()["id"] == str(complaint_id)
            # The retry stored the answer for the next one (Redis, this time).
            assert len(await cached_answers()) == 1
            again = await client.post("/v1/complaints", json=body, headers=headers)
            assert again.status_code == 201 and again.json() == retry.json()
            assert again.headers["idempotent-replayed"] == "true"

        assert await complaints() == [complaint_id]
        assert await events() == recorded

        # The restarted process's relay published each event once.
        js = nc.jetstream()
        subjects = f"pd.complaint.*.{tenant_id}.>"

        async def in_stream() -> int:
            info = await js.stream_info(own.stream_name, subjects_filter=subjects)
            return sum((info.state.subjects or {}).values())

        await eventually(lambda: _at_least(in_stream, 2), "the complaint's events published")
        await intake.stop()
        assert await in_stream() == 2
        unpublished = await admin_fetch(
            own,
            "SELECT count(*) AS n FROM intake.outbox WHERE tenant_id = $1 AND published_at IS NULL",
            tenant_id,
        )
        assert unpublished[0]["n"] == 0
    finally:
        await intake.stop()
        await nc.close()
        await redis.aclose()


async def _at_least(probe, n: int) -> bool:
    return await probe() >= n


async def test_intake_stopped_mid_request_answers_it_and_publishes_its_events(
    own: Settings, tmp_path: Path
):
    """SIGTERM (a rolling deploy) while a complaint's request is in flight, before it has
    recorded anything: the HTTP server stops taking requests but answers this one, the
    relay (still running) publishes its events, and the process exits 0. The relay does
    not stop before the HTTP server has, nor leave committed events behind."""
    tenant_id, key = await _onboard(own)
    body = {
        "project": "SUNRISE",
        "channel": "call_center",
        "content": f"楼道灯不亮 {uuid4().hex[:8]}",
        "complainant": {"name": "钱先生", "phone": f"136{uuid4().int % 10**8:08d}"},
    }
    intake = ServiceProcess("intake", own, "", tmp_path)
    intake.env["PROPDESK_PAUSE"] = "intake.recording:2"
    nc = await connect(own, "shutdown-test-observer")
    try:
        await intake.start()
        await intake.healthy()
        async with httpx.AsyncClient(base_url=intake.url, timeout=15) as client:
            request = asyncio.create_task(client.post("/v1/complaints", json=body, headers=key))
            await asyncio.sleep(0.5)  # the request is in, held before recording
            assert intake.proc is not None
            intake.proc.send_signal(signal.SIGTERM)
            answer = await request
        assert answer.status_code == 201, answer.text
        assert await asyncio.wait_for(intake.proc.wait(), 30) == 0, intake.output()
        assert "service intake stopped" in intake.output()

        unpublished = await admin_fetch(
            own,
            "SELECT event_type FROM intake.outbox WHERE tenant_id = $1"
            " AND event_type LIKE 'complaint.%' AND published_at IS NULL",
            tenant_id,
        )
        assert [r["event_type"] for r in unpublished] == []
        info = await nc.jetstream().stream_info(
            own.stream_name, subjects_filter=f"pd.complaint.*.{tenant_id}.>"
        )
        assert sum((info.state.subjects or {}).values()) == 2  # received, classified
    finally:
        await intake.stop()
        await nc.close()
