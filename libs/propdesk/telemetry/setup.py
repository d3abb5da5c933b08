"""The process-wide tracer and meter providers.

Spans are recorded only while something receives them: an OTLP exporter
(`OTEL_EXPORTER_OTLP_ENDPOINT`) or the tests' in-memory exporter. Without one, every span
is a non-recording span (`ExportGate`): trace and span ids are still made and propagated
(traceparent on HTTP, in outbox rows, on NATS messages, in every log line), but no span
object is built, timed and thrown away. With an exporter, the sampler is the SDK's
(`OTEL_TRACES_SAMPLER`, default parent-based always-on)."""

from __future__ import annotations

import os
import threading
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from propdesk.settings import Settings

OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"

_lock = threading.Lock()
_provider: TracerProvider | None = None
_test_exporter: InMemorySpanExporter | None = None


class ExportGate(Sampler):
    """`sampler`'s decisions while spans are exported; DROP (non-recording spans, context
    still propagated) while nothing would receive them."""

    def __init__(self, sampler: Sampler) -> None:
        self.sampler = sampler
        self.exporting = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: trace.SpanKind | None = None,
        attributes: Any = None,
        links: Any = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        if not self.exporting:
            parent = trace.get_current_span(parent_context).get_span_context()
            return SamplingResult(Decision.DROP, None, parent.trace_state if parent else None)
        return self.sampler.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"ExportGate({self.sampler.get_description()}, exporting={self.exporting})"


def exporting() -> bool:
    """Whether spans are recorded (an exporter is installed). Instrumentations whose spans
    would all be dropped are not worth their hooks: `ServiceResources` instruments the
    database and Redis clients only then."""
    return _provider is not None and _gate().exporting


def _gate() -> ExportGate:
    assert _provider is not None
    return _provider.sampler  # type: ignore[return-value]


def setup_telemetry(service_name: str, settings: Settings | None = None) -> None:
    """Install the SDK tracer provider once per process; later calls are no-ops.

    OpenTelemetry allows the global provider to be set only once, and the runner starts the
    API, relay and consumers of one service in one process, so the first caller names it.
    """
    global _provider
    with _lock:
        if _provider is not None:
            return
        attributes: dict[str, str] = {SERVICE_NAME: service_name}
        if settings is not None:
            attributes["deployment.environment.name"] = settings.environment
        resource = Resource.create(attributes)
        provider = TracerProvider(resource=resource)
        # Before any tracer is made: tracers take the provider's sampler when created.
        provider.sampler = ExportGate(provider.sampler)
        if os.environ.get(OTLP_ENDPOINT_ENV):
            _enable_otlp_export(provider, resource)
        trace.set_tracer_provider(provider)
        _provider = provider


def _enable_otlp_export(provider: TracerProvider, resource: Resource) -> None:
    # Imported lazily: the exporters pull in protobuf and requests, which a process without
    # a collector never needs.
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    provider.sampler.exporting = True  # type: ignore[attr-defined]
    reader = PeriodicExportingMetricReader(OTLPMetricExporter())
    metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


def get_tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def install_test_exporter() -> InMemorySpanExporter:
    """An in-memory exporter fed synchronously with every finished span (tests only).

    Always the same exporter, cleared on each call, so tests that call it repeatedly do not
    stack processors.
    """
    global _test_exporter
    setup_telemetry("propdesk-test")
    with _lock:
        if _test_exporter is None:
            _test_exporter = InMemorySpanExporter()
            provider = trace.get_tracer_provider()
            if not isinstance(provider, TracerProvider):
                raise RuntimeError("a non-SDK tracer provider was installed before propdesk's")
            provider.add_span_processor(SimpleSpanProcessor(_test_exporter))
            _gate().exporting = True
        _test_exporter.clear()
        return _test_exporter
