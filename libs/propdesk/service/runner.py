"""`propdesk-service NAME`: one service process: HTTP API, outbox relay, consumers, jobs.

Every part can be switched off (`--no-api`, `--no-relay`, `--no-consumers`) so a service
can be scaled by role; by default one process runs them all. Without the API a replica
still serves /healthz, /readyz and /metrics on its port. Each run of a periodic job is a
`job <name>` span, the root of its own trace. SIGINT/SIGTERM stop everything in order:
stop taking work, finish what is in hand, close connections.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import logging
import signal
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind, Status, StatusCode

from propdesk.bus.consumer import ConsumerRunner
from propdesk.bus.relay import Relay
from propdesk.bus.retention import prune_inbox, prune_published
from propdesk.bus.streams import BusNotProvisioned
from propdesk.service.http_server import server_config
from propdesk.service.readiness import CACHE_ONLY
from propdesk.service.resources import ServiceResources
from propdesk.service.spec import PeriodicTask, ServiceSpec
from propdesk.settings import SERVICE_NAMES, Settings, get_settings

log = logging.getLogger("propdesk.runner")
tracer = trace.get_tracer("propdesk.runner")


def load_spec(name: str) -> ServiceSpec:
    module = importlib.import_module(f"{name}.service")
    spec = module.SPEC
    if not isinstance(spec, ServiceSpec):
        raise TypeError(f"{name}.service.SPEC is not a ServiceSpec")
    return spec


async def run_job(task: PeriodicTask, res: ServiceResources) -> bool:
    """One run of a periodic job in a span of its own, `job <name>`: the root of a trace
    (a job is nobody's request), under which the job opens a child span per tenant it acts
    for, so its log lines and the events it writes carry that trace. False if it failed
    (logged, and recorded on the span); the next run comes at the next interval."""
    with tracer.start_as_current_span(
        f"job {task.name}",
        context=Context(),
        kind=SpanKind.INTERNAL,
        attributes={"propdesk.job": task.name},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            await task.run(res)
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, repr(exc)[:300]))
            log.exception("periodic task %s failed", task.name, extra={"job": task.name})
            return False
    return True


async def _periodic(task: PeriodicTask, res: ServiceResources, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await run_job(task, res)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=task.interval_seconds)


def _inbox_pruning(schema: str) -> PeriodicTask:
    """Inbox rows past their retention go, hourly, where consumers run
    (`propdesk.bus.retention`)."""

    async def prune(res: ServiceResources) -> None:
        n = await prune_inbox(res.settings, schema)
        if n:
            log.info("pruned %d inbox rows of %s", n, schema, extra={"pruned": n})

    return PeriodicTask(name="inbox-prune", interval_seconds=3600, run=prune)


def _outbox_pruning(schema: str) -> PeriodicTask:
    """Published outbox rows older than the retention period go, hourly (every replica
    may run it: the DELETE is idempotent)."""

    async def prune(res: ServiceResources) -> None:
        n = await prune_published(res.settings, schema)
        if n:
            log.info("pruned %d published outbox rows of %s", n, schema, extra={"pruned": n})

    return PeriodicTask(name="outbox-prune", interval_seconds=3600, run=prune)


# How long a stopping service waits for the requests in flight. The deploy gives a process
# 30 s (compose) or 45 s (Kubernetes) between SIGTERM and SIGKILL; the relay's drain
# (`propdesk.bus.relay.DRAIN_SECONDS`) and the consumers' last batch need the rest.
HTTP_DRAIN_SECONDS = 20.0


async def serve(
    spec: ServiceSpec,
    settings: Settings,
    *,
    api: bool = True,
    relay: bool = True,
    consumers: bool = True,
    port: int | None = None,
) -> None:
    from propdesk.service.logging import configure_logging
    from propdesk.telemetry import setup_telemetry

    configure_logging(spec.name, settings)
    setup_telemetry(spec.name, settings)
    # `signalled`: SIGINT/SIGTERM arrived. `stop`: the relay, consumers and jobs end. The
    # HTTP server is stopped between the two (see the shutdown below).
    signalled = asyncio.Event()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, signalled.set)

    res = await ServiceResources.open(spec.name, settings, local_relay=relay and spec.relay)
    tasks: list[asyncio.Task] = []
    server: uvicorn.Server | None = None
    http: asyncio.Task | None = None
    try:
        if spec.on_start is not None:
            await spec.on_start(res)
        assert res.nc is not None
        if relay and spec.relay:
            tasks.append(asyncio.create_task(Relay(spec.name, settings, res.nc).run(stop)))
            tasks.append(asyncio.create_task(_periodic(_outbox_pruning(spec.name), res, stop)))
        if consumers:
            own_consumers = list(spec.consumers(res))
            for c in own_consumers:
                runner = ConsumerRunner(c, settings, res.sessions, res.nc)
                tasks.append(asyncio.create_task(runner.run(stop), name=f"consumer:{c.name}"))
            for p in spec.periodic:
                tasks.append(asyncio.create_task(_periodic(p, res, stop), name=p.name))
            if own_consumers:
                prune = _inbox_pruning(spec.name)
                tasks.append(asyncio.create_task(_periodic(prune, res, stop), name=prune.name))
        # A replica without the API (`--no-api`, scaled by role) still answers probes and
        # scrapes on the same port and paths, so one Deployment spec fits every role.
        app = spec.create_app(res) if api else probe_app(spec.name, res)
        config = server_config(
            app,
            service=spec.name,
            host=settings.host,
            port=port or settings.port_for(spec.name),
            drain_seconds=HTTP_DRAIN_SECONDS,
        )
        server = uvicorn.Server(config)
        http = asyncio.create_task(server.serve(), name="http")
        tasks.append(http)
        log.info("service %s started (%d tasks)", spec.name, len(tasks))
        tune_gc(settings)
        done_waiter = asyncio.create_task(signalled.wait())
        finished, _ = await asyncio.wait([done_waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in finished:
            if t is not done_waiter and t.exception() is not None:
                log.error("task %s crashed: %r", t.get_name(), t.exception())
                raise t.exception()  # type: ignore[misc]
    finally:
        # The HTTP server first: it takes no new request and answers those in flight,
        # whose events the relay, still running, publishes. (uvicorn also catches the
        # signal while it serves, `Server.capture_signals`, and stops the same way.)
        # Then the relay (which publishes what is left), the consumers and the jobs.
        if server is not None and http is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(http), HTTP_DRAIN_SECONDS + 5)
        stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                log.error("shutdown: %r", r)
        await res.close()
        log.info("service %s stopped", spec.name)


def probe_app(name: str, res: ServiceResources) -> FastAPI:
    """/healthz, /readyz (the process's connections: PostgreSQL, NATS; Redis degrades only)
    and /metrics, nothing else: the HTTP face of a worker replica."""
    from propdesk.service.app import create_service_app

    return create_service_app(
        name,
        settings=res.settings,
        readiness=res.readiness_checks(),
        degraded_only=CACHE_ONLY,
        title=f"propdesk {name} (worker)",
        configure_logs=False,
    )


def tune_gc(settings: Settings) -> None:
    """Fewer, cheaper garbage collections on a long-lived service: what was allocated at
    start (modules, app, pools) is frozen out of the collector's traversals, and the
    youngest generation is collected less often (`PROPDESK_GC_GEN0_THRESHOLD`). Full
    collections over a large heap otherwise stall the event loop, which every request in
    flight then waits out (the tail of the latency). 0 keeps Python's defaults."""
    if settings.gc_gen0_threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    _gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(settings.gc_gen0_threshold, gen1, gen2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="propdesk-service")
    parser.add_argument("service", choices=SERVICE_NAMES)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--no-api", action="store_true")
    parser.add_argument("--no-relay", action="store_true")
    parser.add_argument("--no-consumers", action="store_true")
    args = parser.parse_args(argv)
    spec = load_spec(args.service)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
            runner.run(
                serve(
                    spec,
                    get_settings(),
                    api=not args.no_api,
                    relay=not args.no_relay,
                    consumers=not args.no_consumers,
                    port=args.port,
                )
            )
    except KeyboardInterrupt:
        pass
    except BusNotProvisioned as exc:
        # Deployed, the operator provisions the bus before the services start: say what
        # to do, in one line, and let the orchestrator start this process again.
        log.error("service %s cannot start: %s", args.service, exc)
        return 3
    return 0


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop where it is installed (Linux and macOS; what uvicorn itself picks
    by default), else asyncio's own. The whole process runs on it: API, relay, consumers."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


if __name__ == "__main__":
    raise SystemExit(main())
