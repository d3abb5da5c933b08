"""Every service's real app, on the real stack, answers its probes and scrapes: /healthz,
/readyz naming each dependency it checks (NATS included), /metrics. Redis is cache only:
with it gone intake reports itself degraded, stays ready, and still records (and replays)
complaints from PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from propdesk.auth.tokens import issue_token
from propdesk.service.resources import ServiceResources
from propdesk.service.runner import load_spec
from propdesk.settings import Settings
from propdesk.testing.databases import fresh_database

onboarding_apply = pytest.importorskip("intake.onboarding.apply")
onboarding_document = pytest.importorskip("intake.onboarding.document")

CHECKS = {
    "intake": {"postgres", "nats", "redis"},
    "dispatch": {"postgres", "nats"},
    "sla": {"postgres", "nats", "redis"},
    "callback": {"postgres", "nats", "redis"},
    "reporting": {"postgres", "nats", "redis"},
}
COMPANY = """
tenant: {{code: {code}, name: 探针物业, settings: {{}}}}
projects:
  - {{code: SUNRISE, name: 阳光花园, city: 上海, time_zone: Asia/Shanghai, calendar: cn,
     buildings: [{{code: "3", name: 3号楼, units: ["301"]}}]}}
departments:
  - {{code: cs, name: 客服部, kind: customer_service, project: SUNRISE}}
staff:
  - {{code: S001, name: 王敏, roles: [intake_clerk], department: cs, projects: [SUNRISE]}}
routing: []
"""


@pytest.fixture(scope="module")
async def probe_settings(settings: Settings) -> Settings:
    return await fresh_database(settings, "e2e_probes")


def client_of(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://svc")


@pytest.mark.parametrize("name", sorted(CHECKS))
async def test_the_service_answers_probes_and_scrapes(probe_settings: Settings, name: str):
    res = await ServiceResources.open(name, probe_settings)
    try:
        async with client_of(load_spec(name).create_app(res)) as client:
            health = await client.get("/healthz")
            ready = await client.get("/readyz")
            metrics = await client.get("/metrics")
    finally:
        await res.close()
    assert health.status_code == 200 and health.json() == {"status": "ok", "service": name}
    assert ready.status_code == 200, ready.text
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"] == dict.fromkeys(CHECKS[name], "ok")
    assert metrics.status_code == 200
    assert "propdesk_http_requests_total" in metrics.text


@pytest.fixture
async def intake_without_redis(probe_settings: Settings) -> AsyncIterator[ServiceResources]:
    res = await ServiceResources.open("intake", probe_settings)
    live = res.redis
    # Nothing listens on port 1; no retries: every Redis call is refused at once.
    res.redis = Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    try:
        yield res
    finally:
        await live.aclose()
        await res.close()


async def test_intake_without_redis_is_degraded_but_ready_and_records(
    probe_settings: Settings, intake_without_redis: ServiceResources
) -> None:
    res = intake_without_redis
    doc = onboarding_document.parse_document(COMPANY.format(code=f"PRB{uuid4().hex[:6]}"))
    tenant = (await onboarding_apply.apply_document(res.sessions, doc, actor="e2e")).tenant_id
    token = issue_token(probe_settings, tenant_id=tenant, subject="clerk", roles=["intake_clerk"])
    headers = {"authorization": f"Bearer {token}", "idempotency-key": f"probe-{uuid4()}"}
    complaint = {"project": "SUNRISE", "channel": "phone", "content": "3号楼电梯异响"}
    async with client_of(load_spec("intake").create_app(res)) as client:
        ready = await client.get("/readyz")
        first = await client.post("/v1/complaints", json=complaint, headers=headers)
        again = await client.post("/v1/complaints", json=complaint, headers=headers)

    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["checks"]["postgres"] == body["checks"]["nats"] == "ok"
    assert body["checks"]["redis"].startswith("ConnectionError")
    assert first.status_code == 201, first.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
