"""OpenTelemetry for propdesk processes: one tracer provider per process, optional OTLP export.

Spans are always created (so every log line can carry a trace id), but nothing leaves the
process unless OTEL_EXPORTER_OTLP_ENDPOINT is set; the OTLP exporters then read the rest of
their configuration (headers, timeouts) from the standard OTEL_* variables.
"""

from __future__ import annotations

from propdesk.telemetry.instrumentation import (
    fastapi_telemetry_config,
    instrument_app,
    instrument_asyncpg,
    instrument_engine,
    instrument_redis,
)
from propdesk.telemetry.setup import get_tracer, install_test_exporter, setup_telemetry

__all__ = [
    "fastapi_telemetry_config",
    "get_tracer",
    "install_test_exporter",
    "instrument_app",
    "instrument_asyncpg",
    "instrument_engine",
    "instrument_redis",
    "setup_telemetry",
]
