"""W3C trace context across the outbox and NATS: inject where the event is written,
extract where it is consumed, so the consumer's span is a child of the producer's."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import propagate
from opentelemetry.context import Context


def inject_current() -> dict[str, str]:
    """traceparent (and tracestate, baggage when present) of the current span; {} if none."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, str] | None) -> Context:
    """The parent context carried by headers; an empty context when they carry none.

    Pass the result as `context=` to `tracer.start_as_current_span(...)`.
    """
    # Header names differ in case between transports (NATS keeps them as written).
    normalised = {k.lower(): v for k, v in (carrier or {}).items()}
    return propagate.extract(normalised, context=Context())
