"""What `propdesk-service intake` runs: the API, the outbox relay, the work-order consumer
(the case follows its work order), and the sweep of expired idempotency keys."""

from __future__ import annotations

import logging

from intake import apikey_cache, directory_cache
from intake.app import create_app
from intake.handlers import consumers
from intake.store.idempotency import sweep_expired
from propdesk.db.session import tenant_transaction
from propdesk.service.resources import ServiceResources
from propdesk.service.spec import PeriodicTask, ServiceSpec
from propdesk.tenancy import system_context

log = logging.getLogger("intake.idempotency")
# Clients are promised 24 h; keep twice that so a retry at 23:59 still finds its key.
IDEMPOTENCY_RETENTION_HOURS = 48.0


async def sweep_idempotency_keys(res: ServiceResources) -> None:
    async with tenant_transaction(res.sessions, system_context("idempotency-sweep")) as s:
        removed = await sweep_expired(s, IDEMPOTENCY_RETENTION_HOURS)
    if removed:
        log.info(
            "swept %d idempotency key(s) older than %g h",
            removed,
            IDEMPOTENCY_RETENTION_HOURS,
            extra={"removed": removed},
        )


async def _on_start(res: ServiceResources) -> None:
    assert res.nc is not None
    await directory_cache.CACHE.connect(res.nc)
    await apikey_cache.CACHE.connect(res.nc)


SPEC = ServiceSpec(
    name="intake",
    create_app=create_app,
    consumers=lambda _res: consumers(),
    periodic=(PeriodicTask("idempotency-sweep", 3600.0, sweep_idempotency_keys),),
    on_start=_on_start,
)
