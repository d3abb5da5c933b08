"""The FastAPI factory every propdesk service uses, so all five answer probes, scrapes,
errors and logs the same way."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from propdesk.auth.dependencies import Authenticator, BearerTokenAuthenticator
from propdesk.auth.tokens import check_token_secret
from propdesk.service.json_members import single_json_members
from propdesk.service.logging import configure_logging
from propdesk.service.metrics import metrics_endpoint
from propdesk.service.middleware import (
    BodyLimitMiddleware,
    HeadAsGetMiddleware,
    RequestMiddleware,
)
from propdesk.service.openapi_problems import install_problem_openapi
from propdesk.service.problems import field_error, install_problem_handlers, problem_response
from propdesk.service.query_params import READS_RAW_QUERY, checked_query
from propdesk.service.readiness import ReadinessChecks, run_checks, verdict
from propdesk.settings import Settings
from propdesk.telemetry import fastapi_telemetry_config, setup_telemetry

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[Any]]

DEFAULT_READINESS_TIMEOUT = 2.0


def create_service_app(
    name: str,
    *,
    settings: Settings,
    routers: Sequence[APIRouter] = (),
    readiness: ReadinessChecks | None = None,
    lifespan: Lifespan | None = None,
    title: str | None = None,
    version: str = "0.1.0",
    authenticators: Sequence[Authenticator] | None = None,
    readiness_timeout: float = DEFAULT_READINESS_TIMEOUT,
    configure_logs: bool = True,
    degraded_only: Collection[str] = (),
) -> FastAPI:
    """A FastAPI app with /healthz, /readyz, /metrics, problem+json errors, request ids,
    body limit, tracing, JSON logs and access logs.

    `readiness` is copied to `app.state.readiness` (a dict), which /readyz reads on each
    call: a lifespan that creates its clients at startup adds their checks there, e.g.
    `app.state.readiness["postgres"] = postgres_check(engine)`. A failing check named in
    `degraded_only` (e.g. `readiness.CACHE_ONLY`) leaves /readyz at 200, status "degraded".
    Likewise `app.state.authenticators` (default: staff bearer tokens) can be appended to.
    """
    if configure_logs:
        configure_logging(name, settings)
    check_token_secret(settings)  # outside development, refuse to start on a guessable one
    setup_telemetry(name, settings)

    app = FastAPI(
        title=title or f"propdesk {name}",
        version=version,
        lifespan=lifespan,
        telemetry=fastapi_telemetry_config(),
        # A query parameter the route does not take, or a single-valued one given twice,
        # is refused, not silently dropped or taken last (`query_params`).
        # Likewise a JSON body giving a member twice (`json_members`).
        dependencies=[Depends(checked_query), Depends(single_json_members)],
    )
    app.state.service_name = name
    app.state.settings = settings
    app.state.readiness = dict(readiness or {})
    app.state.degraded_only = frozenset(degraded_only)
    app.state.authenticators = list(
        authenticators if authenticators is not None else [BearerTokenAuthenticator(settings)]
    )

    install_problem_handlers(app)
    install_problem_openapi(app)
    app.include_router(_operational_router(name, readiness_timeout))
    for router in routers:
        app.include_router(router)

    # add_middleware prepends: the last added runs first. Request ids and the access log
    # wrap the body limit so a 413 is logged and carries the id too; HEAD becomes GET
    # innermost, so everything outside the router still sees HEAD.
    app.add_middleware(HeadAsGetMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestMiddleware, service=name)
    # Tracing: FastAPI's native OpenTelemetry support opens the server span outside the
    # whole middleware stack, so the access log and every handler run inside it. It costs
    # about a third of what the contrib FastAPIInstrumentor does per request.
    return app


def _operational_router(name: str, readiness_timeout: float) -> APIRouter:
    # Probes and scrapers are configured outside the API's reach (a scrape config may add
    # parameters of its own): these answer whatever the query holds.
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz", openapi_extra=READS_RAW_QUERY)
    async def healthz() -> Response:
        # Liveness only: touching a dependency here would get healthy pods restarted
        # whenever PostgreSQL has a bad minute.
        return JSONResponse({"status": "ok", "service": name})

    @router.get("/readyz", openapi_extra=READS_RAW_QUERY)
    async def readyz(request: Request) -> Response:
        checks: ReadinessChecks = request.app.state.readiness
        results = await run_checks(checks, limit_seconds=readiness_timeout)
        summary = {r.name: "ok" if r.ok else r.error for r in results}
        status, failed = verdict(results, request.app.state.degraded_only)
        if status != "not-ready":
            return JSONResponse({"status": status, "service": name, "checks": summary})
        return problem_response(
            503,
            "Service not ready",
            code="not-ready",
            detail="Failed: " + ", ".join(f"{r.name} ({r.error})" for r in failed),
            instance=request.url.path,
            errors=[field_error(r.name, "reachable", r.error or "failed") for r in failed],
            headers={"Retry-After": "5"},
            extensions={"service": name, "checks": summary},
        )

    router.add_api_route(
        "/metrics", metrics_endpoint, methods=["GET"], openapi_extra=READS_RAW_QUERY
    )
    return router
