"""Periodic jobs are traced: each run is the root span of its own trace, named after the
job, and what the job logs carries that trace (a failure too, recorded on the span)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from propdesk.service.logging import configure_logging
from propdesk.service.runner import _outbox_pruning, _periodic, run_job
from propdesk.service.spec import PeriodicTask
from propdesk.settings import Settings
from propdesk.telemetry import install_test_exporter

job_log = logging.getLogger("propdesk.test.job")
RES: Any = object()  # the jobs here do not touch their resources


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("testsvc", Settings(log_json=True), stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def lines_of(stream: io.StringIO) -> list[dict]:
    return [json.loads(ln) for ln in stream.getvalue().splitlines()]


async def test_each_run_is_a_root_span_named_after_the_job(log_lines: io.StringIO) -> None:
    exporter = install_test_exporter()
    stop = asyncio.Event()
    runs = 0

    async def tick(_res: Any) -> None:
        nonlocal runs
        runs += 1
        job_log.info("tick %d", runs)
        if runs == 2:
            stop.set()

    task = PeriodicTask(name="tick", interval_seconds=0.01, run=tick)
    # Started inside some other span (a start-up routine, say): the runs are still roots.
    with trace.get_tracer("test").start_as_current_span("start-up"):
        await asyncio.wait_for(asyncio.create_task(_periodic(task, RES, stop)), 5)

    spans = [s for s in exporter.get_finished_spans() if s.name == "job tick"]
    assert len(spans) == 2
    assert all(s.parent is None for s in spans)
    assert spans[0].context.trace_id != spans[1].context.trace_id
    assert all(s.attributes["propdesk.job"] == "tick" for s in spans)
    ticks = [ln for ln in lines_of(log_lines) if ln["logger"] == "propdesk.test.job"]
    assert [ln["trace_id"] for ln in ticks] == [format(s.context.trace_id, "032x") for s in spans]
    assert [ln["span_id"] for ln in ticks] == [format(s.context.span_id, "016x") for s in spans]


async def test_a_failed_run_is_logged_in_its_trace_and_marked_on_its_span(
    log_lines: io.StringIO,
) -> None:
    exporter = install_test_exporter()

    async def broken(_res: Any) -> None:
        raise RuntimeError("disk on fire")

    ok = await run_job(PeriodicTask(name="broken", interval_seconds=60, run=broken), RES)

    assert ok is False
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "job broken"]
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]
    (failed,) = [ln for ln in lines_of(log_lines) if ln["msg"] == "periodic task broken failed"]
    assert failed["trace_id"] == format(span.context.trace_id, "032x")
    assert failed["job"] == "broken" and "disk on fire" in failed["exc"]


async def test_the_outbox_prune_runs_in_its_span(settings: Settings, bus_schema: str) -> None:
    exporter = install_test_exporter()
    res: Any = SimpleNamespace(settings=settings)
    assert await run_job(_outbox_pruning(bus_schema), res) is True
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "job outbox-prune"]
    assert span.parent is None and span.status.status_code is StatusCode.UNSET
