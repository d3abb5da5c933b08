"""Switch on the OpenTelemetry instrumentations propdesk uses; each call is idempotent."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

# Probes and scrapes would otherwise be most of the traces.
EXCLUDED_URLS = "/healthz,/readyz,/metrics"
_EXCLUDED_PATHS = frozenset(EXCLUDED_URLS.split(","))
_INSTRUMENTED = "_propdesk_otel_instrumented"


def _is_excluded(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in _EXCLUDED_PATHS


def fastapi_telemetry_config() -> dict[str, Any]:
    """`FastAPI(telemetry=...)` for FastAPI's native OpenTelemetry support (what the service
    factory uses): server spans and OTel metrics on, per-dependency/endpoint/serialization
    "operation" spans off (several spans per request for little insight), probes excluded.
    """
    return {"operation_spans": False, "exclude": _is_excluded}


def instrument_app(app: FastAPI) -> None:
    """The contrib FastAPIInstrumentor, for an app not built by the service factory.

    Do not combine with native telemetry on the same app: FastAPI then steps back, but the
    contrib middleware is the slower of the two.
    """
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    if getattr(app, "_is_instrumented_by_opentelemetry", False):
        return
    # The per-message "http send/receive" spans double the cost of a request for little
    # insight; the server span already has status and timing.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=EXCLUDED_URLS, exclude_spans=["receive", "send"]
    )


def instrument_engine(engine: AsyncEngine | Engine) -> None:
    """Trace every statement of this engine (an AsyncEngine is traced via its sync_engine)."""
    from opentelemetry import metrics, trace
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.semconv.metrics import MetricInstruments

    sqla_instrumentation = "opentelemetry.instrumentation.sqlalchemy"
    sync_engine: Any = getattr(engine, "sync_engine", engine)
    if getattr(sync_engine, _INSTRUMENTED, False):
        return
    # SQLAlchemyInstrumentor().instrument(engine=...) only honours the first engine of the
    # process (the instrumentor is a singleton), so attach the engine tracer directly.
    connections_usage = metrics.get_meter(sqla_instrumentation).create_up_down_counter(
        name=MetricInstruments.DB_CLIENT_CONNECTIONS_USAGE,
        unit="connections",
        description="Connections currently in the state described by the state attribute.",
    )
    EngineTracer(trace.get_tracer(sqla_instrumentation), sync_engine, connections_usage)
    setattr(sync_engine, _INSTRUMENTED, True)


def instrument_asyncpg() -> None:
    """Trace raw asyncpg connections (the relay and consumers that bypass SQLAlchemy)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    instrumentor = AsyncPGInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()


def instrument_redis(client: Any | None = None) -> None:
    """Trace one Redis client, or every client created from now on when none is given."""
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    if client is not None:
        if not getattr(client, "_is_instrumented_by_opentelemetry", False):
            RedisInstrumentor.instrument_client(client)
        return
    instrumentor = RedisInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument()
