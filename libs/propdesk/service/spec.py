"""What a service is made of: its HTTP app, its consumers, its periodic jobs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from fastapi import FastAPI

from propdesk.bus.consumer import Consumer
from propdesk.service.resources import ServiceResources


@dataclass(frozen=True)
class PeriodicTask:
    """A job every replica runs on a timer; it must claim work with FOR UPDATE SKIP LOCKED."""

    name: str
    interval_seconds: float
    run: Callable[[ServiceResources], Awaitable[None]]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    create_app: Callable[[ServiceResources], FastAPI]
    consumers: Callable[[ServiceResources], Sequence[Consumer]] = lambda _res: ()
    periodic: Sequence[PeriodicTask] = field(default_factory=tuple)
    relay: bool = True
    on_start: Callable[[ServiceResources], Awaitable[None]] | None = None


def resources_app(res: ServiceResources, routers: Sequence = (), **kwargs) -> FastAPI:
    """The service app wired to a process's resources: readiness for each connection,
    and the resources on `app.state.resources` for the routers' dependencies."""
    from propdesk.service.app import create_service_app

    app = create_service_app(
        res.name,
        settings=res.settings,
        routers=routers,
        readiness=res.readiness_checks(),
        **kwargs,
    )
    app.state.resources = res
    return app
