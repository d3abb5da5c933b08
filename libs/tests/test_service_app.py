"""The service factory over ASGI: problem bodies, probes, metrics, request ids, logs."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Annotated

import httpx
import nats
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.ext.asyncio import create_async_engine

from propdesk.auth.dependencies import require_staff
from propdesk.auth.roles import Role
from propdesk.auth.tokens import issue_token
from propdesk.service import create_service_app
from propdesk.service.logging import configure_logging
from propdesk.service.problems import PROBLEM_CONTENT_TYPE, ProblemError, field_error
from propdesk.service.query_params import READS_RAW_QUERY
from propdesk.service.readiness import nats_check, postgres_check, redis_check
from propdesk.settings import Settings, async_url
from propdesk.telemetry import install_test_exporter
from propdesk.tenancy import TenantContext
from propdesk.testing.asgi_client import asgi_client

LIMIT = 64
TENANT = uuid.UUID("11111111-1111-4111-8111-111111111111")


class Channel(StrEnum):
    PHONE = "phone"
    WECHAT = "wechat"


class NewItem(BaseModel):
    content: str = Field(max_length=5)
    channel: Channel


router = APIRouter()
app_log = logging.getLogger("propdesk.test.endpoint")


@router.post("/items/{item_id}", status_code=201)
async def create_item(item_id: int, item: NewItem) -> dict[str, str]:
    return {"content": item.content}


def page_size(size: int = 10) -> int:
    return size


@router.get("/search")
async def search(
    limit: int = 10,
    channel: Channel | None = None,
    status: list[str] = Query(default=[]),
    size: int = Depends(page_size),
) -> dict[str, object]:
    return {"limit": limit, "status": status, "size": size, "channel": channel}


class Window(BaseModel):
    since: str | None = None
    kinds: list[str] = []


@router.get("/window")
async def window(
    w: Annotated[Window, Query()],
    until: Annotated[str | None, Query(validation_alias="to")] = None,
    tags: Annotated[set[str] | None, Query()] = None,
) -> dict[str, object]:
    return {"since": w.since, "kinds": w.kinds, "until": until, "tags": sorted(tags or ())}


@router.get("/raw", openapi_extra=READS_RAW_QUERY)
async def raw(request: Request, limit: int = 10) -> dict[str, object]:
    return {"limit": limit, "anything": request.query_params.getlist("anything")}


@router.get(
    "/legacy",
    responses={"4XX": {"description": "a list of {code, description}", "content": {}}},
)
async def legacy(page: int = 1) -> dict[str, int]:
    return {"page": page}


@router.get("/boom")
async def boom() -> None:
    raise RuntimeError("db password is hunter2")


class _RlsRefusal(Exception):
    """As asyncpg raises it when a policy's WITH CHECK refuses a row."""

    sqlstate = "42501"


@router.get("/outside")
async def outside() -> None:
    try:
        raise _RlsRefusal('new row violates row-level security policy for table "rules"')
    except _RlsRefusal as exc:
        raise RuntimeError("statement failed") from exc  # wrapped, as SQLAlchemy does


@router.get("/refuse")
async def refuse() -> None:
    raise ProblemError(
        409,
        "Duplicate complaint",
        code="duplicate-complaint",
        detail="already recorded",
        errors=[field_error("body.external_id", "unique", "seen before")],
        headers={"X-Extra": "1"},
    )


@router.post("/upload")
async def upload(request: Request) -> dict[str, int]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return {"size": size}


@router.post("/swallow")
async def swallow(request: Request) -> dict[str, str]:
    # An endpoint that catches everything must still not turn an oversized body into a 200.
    try:
        await request.body()
    except Exception:
        return {"status": "ignored"}
    return {"status": "read"}


@router.get("/me")
async def me(ctx: TenantContext = require_staff(Role.INTAKE_CLERK)) -> dict[str, str]:
    app_log.info("looked at myself", extra={"widget": 42})
    return {"tenant_id": str(ctx.tenant_id), "actor": ctx.actor}


def make_app(settings: Settings, **kwargs) -> FastAPI:
    return create_service_app(
        "testsvc",
        settings=settings,
        routers=[router],
        readiness=kwargs.pop("readiness", {}),
        configure_logs=False,
        **kwargs,
    )


def client_for(app: FastAPI) -> httpx.AsyncClient:
    return asgi_client(app)


@pytest.fixture(scope="module")
def pure_settings() -> Settings:
    return Settings(max_body_bytes=LIMIT, log_json=True)


@pytest.fixture
async def client(pure_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(make_app(pure_settings)) as c:
        yield c


def assert_problem(resp: httpx.Response, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body = resp.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"https://propdesk.dev/problems/{code}"
    assert body["title"]
    assert body["request_id"] == resp.headers["x-request-id"]
    return body


async def test_validation_error_names_each_field_and_rule(client: httpx.AsyncClient) -> None:
    resp = await client.post("/items/7", json={"content": "much too long", "channel": "fax"})
    body = assert_problem(resp, 422, "validation-failed")
    assert body["instance"] == "/items/7"
    rules = {e["field"]: e["rule"] for e in body["errors"]}
    assert rules == {"body.content": "string_too_long", "body.channel": "enum"}
    assert all(e["message"] for e in body["errors"])

    resp = await client.post("/items/x", json={"channel": "phone"})
    body = assert_problem(resp, 422, "validation-failed")
    rules = {e["field"]: e["rule"] for e in body["errors"]}
    assert rules == {"path.item_id": "int_parsing", "body.content": "missing"}


async def test_a_single_valued_query_parameter_given_twice_is_422(
    client: httpx.AsyncClient,
) -> None:
    """Starlette would take the last value silently; a list parameter may repeat."""
    resp = await client.get("/search?limit=500&limit=1")
    body = assert_problem(resp, 422, "validation-failed")
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [("query.limit", "single")]

    # A string enumeration is one value, though a str is a sequence.
    resp = await client.get("/search?channel=phone&channel=wechat")
    body = assert_problem(resp, 422, "validation-failed")
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [("query.channel", "single")]

    # A dependency's parameter counts as the route's.
    resp = await client.get("/search?size=1&size=2")
    body = assert_problem(resp, 422, "validation-failed")
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [("query.size", "single")]

    resp = await client.get("/search?limit=5&status=open&status=closed&size=3")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"limit": 5, "status": ["open", "closed"], "size": 3, "channel": None}

    # A query model's fields, and a parameter read under another name, count by the names
    # FastAPI reads them by.
    for query, field in (("since=a&since=b", "query.since"), ("to=a&to=b", "query.to")):
        body = assert_problem(await client.get(f"/window?{query}"), 422, "validation-failed")
        assert [(e["field"], e["rule"]) for e in body["errors"]] == [(field, "single")]
    resp = await client.get("/window?since=a&kinds=x&kinds=y&to=b&tags=p&tags=q")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"since": "a", "kinds": ["x", "y"], "until": "b", "tags": ["p", "q"]}


async def test_a_query_parameter_the_route_does_not_take_is_422(client: httpx.AsyncClient) -> None:
    """Dropped silently before: `?project_id=` where the filter is `project` answered
    everything. A parameter the route reads under an alias counts by that name only; a
    route that reads its raw query says so and is left be."""
    resp = await client.get("/search?limit=5&other=1&lmit=2&other=3")
    body = assert_problem(resp, 422, "validation-failed")
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [
        ("query.other", "extra_forbidden"),
        ("query.lmit", "extra_forbidden"),
    ]
    assert body["errors"][0]["message"] == "unknown; takes channel, limit, size, status"
    body = assert_problem(await client.get("/window?until=1"), 422, "validation-failed")
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [("query.until", "extra_forbidden")]
    body = assert_problem(await client.get("/boom?x=1"), 422, "validation-failed")
    assert body["errors"][0]["message"] == "unknown; takes no query parameters"
    # A credential in the query (Open311's way) is told where it goes.
    body = assert_problem(await client.get("/boom?api_key=pdk_x"), 422, "validation-failed")
    assert body["errors"][0]["field"] == "query.api_key"
    assert "X-API-Key header" in body["errors"][0]["message"]
    resp = await client.get("/raw?anything=1&anything=2&limit=3")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"limit": 3, "anything": ["1", "2"]}
    body = assert_problem(await client.get("/raw?limit=3&limit=4"), 422, "validation-failed")
    assert [(e["field"], e["rule"]) for e in body["errors"]] == [("query.limit", "single")]
    # Probes and scrapes come from configurations the API does not control.
    for path in ("/healthz?probe=1", "/readyz?probe=1", "/metrics?module=x"):
        assert (await client.get(path)).status_code == 200, path


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/items/1", content=b'{"content": "a",', headers={"content-type": "application/json"}
    )
    body = assert_problem(resp, 400, "malformed-json")
    assert body["errors"][0]["field"] == "body"
    assert body["errors"][0]["rule"] == "json"


async def test_not_found_and_method_not_allowed_are_problems(client: httpx.AsyncClient) -> None:
    body = assert_problem(await client.get("/nowhere"), 404, "not-found")
    assert body["instance"] == "/nowhere"
    resp = await client.delete("/items/1")
    assert_problem(resp, 405, "method-not-allowed")
    assert resp.headers["allow"] == "POST"


async def test_problem_error_is_rendered_as_raised(client: httpx.AsyncClient) -> None:
    resp = await client.get("/refuse")
    body = assert_problem(resp, 409, "duplicate-complaint")
    assert body["title"] == "Duplicate complaint"
    assert body["detail"] == "already recorded"
    assert body["errors"] == [
        {"field": "body.external_id", "rule": "unique", "message": "seen before"}
    ]
    assert resp.headers["x-extra"] == "1"


async def test_unhandled_error_is_500_without_internals(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="propdesk.service.errors"):
        resp = await client.get("/boom")
    body = assert_problem(resp, 500, "internal-error")
    assert "hunter2" not in resp.text and "RuntimeError" not in resp.text
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "hunter2" in str(logged[0].exc_info[1])
    assert body["request_id"]


async def test_a_write_the_database_refuses_as_outside_scope_is_403(
    client: httpx.AsyncClient,
) -> None:
    """The last line behind the API's own scope checks: never a 500."""
    resp = await client.get("/outside")
    assert_problem(resp, 403, "outside-scope")


async def test_declared_oversized_body_is_413_without_reading(client: httpx.AsyncClient) -> None:
    resp = await client.post("/upload", content=b"x" * (LIMIT + 1))
    body = assert_problem(resp, 413, "payload-too-large")
    assert body["errors"] == [
        {"field": "body", "rule": "max_bytes", "message": f"at most {LIMIT} bytes are accepted"}
    ]
    ok = await client.post("/upload", content=b"x" * LIMIT)
    assert ok.json() == {"size": LIMIT}


async def test_streamed_oversized_body_stops_early(client: httpx.AsyncClient) -> None:
    sent = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(100):
            sent += 1
            yield b"y" * 16

    resp = await client.post("/upload", content=chunks())
    assert "content-length" not in resp.request.headers
    body = assert_problem(resp, 413, "payload-too-large")
    assert body["errors"][0]["rule"] == "max_bytes"
    assert sent < 10  # 64 bytes allowed: the fifth 16-byte chunk trips the limit

    resp = await client.post("/swallow", content=chunks())
    assert_problem(resp, 413, "payload-too-large")

    async def small() -> AsyncIterator[bytes]:
        yield b"z" * 10
        yield b"z" * 10

    assert (await client.post("/upload", content=small())).json() == {"size": 20}


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    resp = await client.get("/healthz", headers={"X-Request-ID": "abc-123.x"})
    assert resp.headers["x-request-id"] == "abc-123.x"
    resp = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])
    resp = await client.get("/healthz", headers={"X-Request-ID": "a" * 500})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"])
    other = await client.get("/healthz")
    assert other.headers["x-request-id"] != resp.headers["x-request-id"]


async def test_healthz_does_no_io(pure_settings: Settings) -> None:
    async def never_called() -> None:
        raise AssertionError("healthz must not run readiness checks")

    async with client_for(make_app(pure_settings, readiness={"postgres": never_called})) as c:
        resp = await c.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "service": "testsvc"}


async def test_metrics_count_requests_by_route_template(client: httpx.AsyncClient) -> None:
    await client.post("/items/41", json={"content": "ok", "channel": "phone"})
    await client.get("/no/such/path/12345")
    text = (await client.get("/metrics")).text
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("propdesk_http_requests_total{")
        and 'route="/items/{item_id}"' in ln
        and 'status="201"' in ln
    )
    assert 'service="testsvc"' in line and 'method="POST"' in line
    assert float(line.rsplit(" ", 1)[1]) >= 1
    assert "propdesk_http_request_duration_seconds_bucket{" in text
    assert 'route="<unmatched>"' in text
    assert "/no/such/path/12345" not in text
    assert "tenant" not in text.split("propdesk_http_request_duration_seconds", 1)[1][:2000]


async def test_log_lines_are_json_with_trace_and_tenant(pure_settings: Settings) -> None:
    exporter = install_test_exporter()
    app = make_app(pure_settings)
    stream = io.StringIO()
    handler = configure_logging("testsvc", pure_settings, stream=stream)
    token = issue_token(
        pure_settings, tenant_id=TENANT, subject="clerk-7", roles=[Role.INTAKE_CLERK]
    )
    try:
        async with client_for(app) as c:
            resp = await c.get(
                "/me", headers={"Authorization": f"Bearer {token}", "X-Request-ID": "req-log-1"}
            )
    finally:
        logging.getLogger().removeHandler(handler)
    assert resp.status_code == 200
    lines = [json.loads(ln) for ln in stream.getvalue().splitlines()]
    mine = [ln for ln in lines if ln["request_id"] == "req-log-1"]
    endpoint_line = next(ln for ln in mine if ln["logger"] == "propdesk.test.endpoint")
    access_line = next(ln for ln in mine if ln["logger"] == "propdesk.access")
    server_spans = [s for s in exporter.get_finished_spans() if s.name.startswith("GET /me")]
    assert server_spans
    trace_id = format(server_spans[0].context.trace_id, "032x")
    for line in (endpoint_line, access_line):
        assert line["service"] == "testsvc"
        assert line["tenant_id"] == str(TENANT)
        assert line["actor"] == "clerk-7"
        assert line["project_ids"] == "*"
        assert line["trace_id"] == trace_id
        assert re.fullmatch(r"[0-9a-f]{16}", line["span_id"])
        assert line["level"] == "info" and line["ts"].endswith("+00:00")
    assert endpoint_line["msg"] == "looked at myself" and endpoint_line["widget"] == 42
    assert access_line["status"] == 200 and access_line["route"] == "/me"
    assert access_line["duration_ms"] >= 0


# -- readiness against the real servers ------------------------------------------------


@pytest.fixture
async def real_checks(settings: Settings) -> AsyncIterator[dict]:
    engine = create_async_engine(async_url(settings.database_url))
    nc = await nats.connect(settings.nats_url)
    redis = Redis.from_url(settings.redis_url)
    try:
        yield {
            "postgres": postgres_check(engine),
            "nats": nats_check(nc),
            "redis": redis_check(redis),
        }
    finally:
        await redis.aclose()
        await nc.close()
        await engine.dispose()


async def test_readyz_ready_with_real_servers(settings: Settings, real_checks: dict) -> None:
    async with client_for(make_app(settings, readiness=real_checks)) as c:
        resp = await c.get("/readyz")
    assert resp.status_code == 200, resp.text
    assert resp.json()["checks"] == {"postgres": "ok", "nats": "ok", "redis": "ok"}
    assert resp.json()["status"] == "ready"


async def test_readyz_names_the_failed_check(settings: Settings, real_checks: dict) -> None:
    # Nothing listens on port 1; no retries, so the refusal itself is what /readyz reports.
    dead_redis = Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    checks = {**real_checks, "redis": redis_check(dead_redis)}
    try:
        async with client_for(make_app(settings, readiness=checks)) as c:
            resp = await c.get("/readyz")
    finally:
        await dead_redis.aclose()
    body = assert_problem(resp, 503, "not-ready")
    assert [e["field"] for e in body["errors"]] == ["redis"]
    assert body["errors"][0]["rule"] == "reachable"
    assert "ConnectionError" in body["errors"][0]["message"]
    assert body["checks"]["postgres"] == "ok" and body["checks"]["nats"] == "ok"
    assert "redis" in body["detail"]


async def test_readyz_times_out_a_hanging_check(pure_settings: Settings) -> None:
    import asyncio

    async def hangs() -> None:
        await asyncio.sleep(30)

    app = make_app(pure_settings, readiness={"nats": hangs}, readiness_timeout=0.2)
    async with client_for(app) as c:
        resp = await c.get("/readyz")
    body = assert_problem(resp, 503, "not-ready")
    assert body["checks"] == {"nats": "no answer within 0.2s"}


async def test_lifespan_can_add_checks(pure_settings: Settings) -> None:
    app = make_app(pure_settings)

    async def fails() -> None:
        raise OSError("disk on fire")

    app.state.readiness["postgres"] = fails
    async with client_for(app) as c:
        resp = await c.get("/readyz")
    body = assert_problem(resp, 503, "not-ready")
    assert body["errors"][0]["message"] == "OSError: disk on fire"


def test_outside_development_a_service_will_not_start_on_a_placeholder_secret() -> None:
    production = Settings(environment="production", token_secret="change-me-token-secret")
    with pytest.raises(RuntimeError, match="PROPDESK_TOKEN_SECRET"):
        make_app(production)
    make_app(Settings(environment="production", token_secret="q8V1f0nC3x2rJm5u7WbK9pLs4dTy6hEzAa0"))


async def test_openapi_documents_the_problems_the_service_sends(
    client: httpx.AsyncClient,
) -> None:
    """/openapi.json names one Problem schema for every error, and FastAPI's own
    `HTTPValidationError` (a shape no propdesk service sends) nowhere; the documented
    members are the ones a real 422 and a real 409 carry."""
    doc = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in json.dumps(doc)
    assert "ValidationError" not in doc["components"]["schemas"]
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    operations = [(path, op) for path, item in doc["paths"].items() for op in item.values()]
    assert operations
    for path, op in operations:
        errors = {code: op["responses"][code] for code in ("4XX", "5XX")}
        if path == "/legacy":  # declares its own error shape: kept, and no 422 beside it
            assert errors["4XX"]["description"] == "a list of {code, description}"
            assert "422" not in op["responses"]
            continue
        for code, response in errors.items():
            assert response["content"] == {PROBLEM_CONTENT_TYPE: {"schema": problem_ref}}, code
    item_responses = doc["paths"]["/items/{item_id}"]["post"]["responses"]
    assert item_responses["422"]["content"][PROBLEM_CONTENT_TYPE]["schema"] == problem_ref

    schemas = doc["components"]["schemas"]
    problem, field_error_schema = schemas["Problem"], schemas["ProblemFieldError"]
    invalid = (await client.post("/items/1", json={"content": "too long", "channel": "x"})).json()
    refused = (await client.get("/refuse")).json()
    for body in (invalid, refused):
        assert set(problem["required"]) <= set(body), body
        assert set(body) <= set(problem["properties"]), body
        for error in body["errors"]:
            assert set(error) == set(field_error_schema["required"]), error


def test_openapi_keeps_up_with_routes_added_after_it_was_built(
    pure_settings: Settings,
) -> None:
    app = make_app(pure_settings)
    first = app.openapi()
    assert app.openapi() is first  # built once while the routes stay

    @app.get("/later")
    async def later(n: int = 1) -> dict[str, int]:
        return {"n": n}

    doc = app.openapi()
    responses = doc["paths"]["/later"]["get"]["responses"]
    assert responses["422"]["content"][PROBLEM_CONTENT_TYPE]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    assert "HTTPValidationError" not in json.dumps(doc)
