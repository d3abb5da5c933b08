"""OpenTelemetry for propdesk processes: one tracer provider per process, optional OTLP export.

Trace and span ids are always made and propagated (so every log line, outbox row and NATS
message carries them), but spans are recorded, and the database and Redis clients
instrumented, only when something receives them: OTEL_EXPORTER_OTLP_ENDPOINT is set (the
OTLP exporters then read the rest of their configuration, headers, timeouts, sampler, from
the standard OTEL_* variables) or a test installed its in-memory exporter.
"""

from __future__ import annotations

from propdesk.telemetry.instrumentation import (
    fastapi_telemetry_config,
    instrument_app,
    instrument_asyncpg,
    instrument_engine,
    instrument_redis,
)
from propdesk.telemetry.setup import (
    exporting,
    get_tracer,
    install_test_exporter,
    setup_telemetry,
)

__all__ = [
    "exporting",
    "fastapi_telemetry_config",
    "get_tracer",
    "install_test_exporter",
    "instrument_app",
    "instrument_asyncpg",
    "instrument_engine",
    "instrument_redis",
    "setup_telemetry",
]
