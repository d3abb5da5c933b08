"""Probes for every replica: a cache-only dependency (Redis) degrades /readyz but keeps the
replica ready, and a worker replica (`--no-api`) still serves /healthz, /readyz and
/metrics on its port."""

from __future__ import annotations

import asyncio
import contextlib
import signal

import httpx
from fastapi import FastAPI

from propdesk.devstack.ports import free_port
from propdesk.service.app import create_service_app
from propdesk.service.readiness import CACHE_ONLY
from propdesk.service.runner import serve
from propdesk.service.spec import ServiceSpec
from propdesk.settings import Settings
from propdesk.testing.waiting import eventually


async def ok() -> None:
    return None


async def refused() -> None:
    raise ConnectionError("Connection refused")


def app_with(checks: dict) -> FastAPI:
    return create_service_app(
        "probesvc",
        settings=Settings(),
        readiness=checks,
        degraded_only=CACHE_ONLY,
        configure_logs=False,
    )


async def readyz(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        return await client.get("/readyz")


async def test_a_cache_only_check_failing_degrades_but_stays_ready() -> None:
    checks = {"postgres": ok, "nats": ok, "redis": refused}
    resp = await readyz(app_with(checks))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "degraded"
    assert body["checks"] == {
        "postgres": "ok",
        "nats": "ok",
        "redis": "ConnectionError: Connection refused",
    }


async def test_a_required_check_failing_is_not_ready_whatever_the_cache_does() -> None:
    checks = {"postgres": ok, "nats": refused, "redis": refused}
    resp = await readyz(app_with(checks))
    assert resp.status_code == 503
    body = resp.json()
    # The failure that makes it unready is named; the degraded one is still reported.
    assert [e["field"] for e in body["errors"]] == ["nats"]
    assert body["checks"]["redis"].startswith("ConnectionError")


def no_api(_res: object) -> FastAPI:
    raise AssertionError("a --no-api replica must not build the service's API")


async def test_a_worker_replica_serves_health_readiness_and_metrics(settings: Settings) -> None:
    port = free_port()
    spec = ServiceSpec(name="sla", create_app=no_api)
    worker = asyncio.create_task(
        serve(
            spec,
            settings.model_copy(update={"gc_gen0_threshold": 0}),
            api=False,
            relay=False,
            consumers=False,
            port=port,
        )
    )
    loop = asyncio.get_running_loop()
    try:
        async with httpx.AsyncClient(base_url=f"http://{settings.host}:{port}") as client:

            async def healthy() -> httpx.Response | None:
                assert not worker.done(), worker.exception()
                with contextlib.suppress(httpx.TransportError):
                    return await client.get("/healthz")
                return None

            health = await eventually(healthy, "the worker's /healthz", within=20)
            ready = await client.get("/readyz")
            metrics = await client.get("/metrics")
            # The runner's server (`http_server.server_config`): bounds before the app.
            too_long = await client.get("/healthz", params={"q": "a" * 20_000})
            head = await client.head("/healthz")
    finally:
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    assert health.status_code == 200 and health.json() == {"status": "ok", "service": "sla"}
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok", "nats": "ok"}
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "propdesk_http_requests_total" in metrics.text
    assert too_long.status_code == 414
    assert too_long.headers["content-type"] == "application/problem+json"
    assert too_long.json()["code"] == "uri-too-long"
    # 405 before; the server sends GET's headers, its Content-Length among them.
    assert head.status_code == 200
    assert head.headers["content-length"] == health.headers["content-length"]
