"""Trace context across the outbox/NATS hop, and the instrumentation switches."""

from __future__ import annotations

import re

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from propdesk.settings import Settings, async_url
from propdesk.telemetry import (
    get_tracer,
    install_test_exporter,
    instrument_engine,
    instrument_redis,
    setup_telemetry,
)
from propdesk.telemetry.propagation import extract, inject_current

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def test_setup_is_idempotent() -> None:
    setup_telemetry("first")
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    setup_telemetry("second")
    assert trace.get_tracer_provider() is provider
    with get_tracer("t").start_as_current_span("s") as span:
        assert span.get_span_context().is_valid  # spans exist even with no exporter


def test_consumer_span_is_child_of_producer_span() -> None:
    exporter = install_test_exporter()
    tracer = get_tracer("test.propagation")
    with tracer.start_as_current_span("outbox.add", kind=SpanKind.PRODUCER) as producer:
        carrier = inject_current()
    assert TRACEPARENT.fullmatch(carrier["traceparent"])

    # The relay and consumer run elsewhere, with some unrelated span current.
    with tracer.start_as_current_span("relay.poll"):
        headers = {"Nats-Msg-Id": "e1", **carrier}
        with tracer.start_as_current_span(
            "consume", context=extract(headers), kind=SpanKind.CONSUMER
        ) as consumer:
            pass

    a = producer.get_span_context()
    assert consumer.parent is not None
    assert consumer.parent.span_id == a.span_id
    assert consumer.get_span_context().trace_id == a.trace_id
    finished = {s.name: s for s in exporter.get_finished_spans()}
    assert finished["consume"].parent.span_id == finished["outbox.add"].context.span_id
    assert finished["consume"].kind is SpanKind.CONSUMER
    assert finished["relay.poll"].context.trace_id != a.trace_id


def test_extract_is_case_insensitive_and_empty_means_new_root() -> None:
    install_test_exporter()
    tracer = get_tracer("test.propagation")
    with tracer.start_as_current_span("a") as a:
        carrier = {k.title(): v for k, v in inject_current().items()}  # "Traceparent"
    with tracer.start_as_current_span("b", context=extract(carrier)) as b:
        pass
    assert b.parent is not None and b.parent.span_id == a.get_span_context().span_id

    with tracer.start_as_current_span("unrelated"):
        with tracer.start_as_current_span("c", context=extract({})) as c:
            pass
        with tracer.start_as_current_span("d", context=extract(None)) as d:
            pass
    assert c.parent is None and d.parent is None


def test_inject_without_a_span_is_empty() -> None:
    setup_telemetry("test")
    assert inject_current() == {}


async def test_engine_statements_become_child_spans(settings: Settings) -> None:
    exporter = install_test_exporter()
    engine = create_async_engine(async_url(settings.database_url))
    instrument_engine(engine)
    instrument_engine(engine)  # idempotent: one span per statement, not two
    try:
        with get_tracer("test").start_as_current_span("handler") as parent:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 41 + 1"))
    finally:
        await engine.dispose()
    db_spans = [
        s
        for s in exporter.get_finished_spans()
        if s.parent is not None and s.parent.span_id == parent.get_span_context().span_id
    ]
    assert len(db_spans) == 1
    assert "SELECT 41 + 1" in str(db_spans[0].attributes)


async def test_redis_client_commands_become_spans(settings: Settings) -> None:
    exporter = install_test_exporter()
    redis = Redis.from_url(settings.redis_url)
    instrument_redis(redis)
    instrument_redis(redis)
    try:
        with get_tracer("test").start_as_current_span("handler") as parent:
            assert await redis.ping()
    finally:
        await redis.aclose()
    children = [
        s
        for s in exporter.get_finished_spans()
        if s.parent is not None and s.parent.span_id == parent.get_span_context().span_id
    ]
    assert [s.name for s in children] == ["PING"]


def test_without_an_exporter_spans_do_not_record_but_the_context_travels() -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON

    from propdesk.telemetry.setup import ExportGate

    gate = ExportGate(ALWAYS_ON)
    tracer = TracerProvider(sampler=gate).get_tracer("gate-test")
    with tracer.start_as_current_span("unexported") as span:
        assert not span.is_recording()
        context = span.get_span_context()
        assert context.is_valid and not context.trace_flags.sampled
        carrier = inject_current()
    _version, trace_id, span_id, flags = carrier["traceparent"].split("-")
    assert (trace_id, span_id) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert int(flags, 16) & 1 == 0  # not sampled
    # A consumer continues the same trace, still without recording.
    with tracer.start_as_current_span("consume", context=extract(carrier)) as child:
        assert child.get_span_context().trace_id == context.trace_id
        assert not child.is_recording()
    gate.exporting = True
    with tracer.start_as_current_span("exported") as span:
        assert span.is_recording() and span.get_span_context().trace_flags.sampled
