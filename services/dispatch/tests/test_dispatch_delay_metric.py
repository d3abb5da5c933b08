"""`propdesk_dispatch_delay_seconds`: recording → dispatch, the procedure's 10-minute clock,
counted once per work order and only when the order committed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from dispatch.flows.dispatching import dispatch_classified
from dispatch.testing import Tenant
from propdesk.db.session import tenant_transaction
from propdesk.service.resources import ServiceResources

METRIC = "propdesk_dispatch_delay_seconds"


def observed() -> tuple[float, float, float]:
    """(count, sum, how many within 10 minutes)."""

    def value(suffix: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(f"{METRIC}{suffix}", labels) or 0.0

    return value("_count"), value("_sum"), value("_bucket", le="600.0")


async def test_a_dispatch_counts_its_delay_from_the_recording(
    res: ServiceResources, tenant: Tenant
) -> None:
    now = datetime.now(UTC)
    late = tenant.classified(recorded_at=now - timedelta(minutes=12))
    before = observed()
    async with tenant_transaction(res.sessions, tenant.ctx()) as session:
        assert await dispatch_classified(session, tenant.tenant_id, late, now=now)
        assert observed() == before, "nothing is counted before the commit"
    count, total, in_time = observed()
    assert count == before[0] + 1
    assert total - before[1] == pytest.approx(12 * 60)
    assert in_time == before[2], "12 minutes is beyond the 10-minute bucket"

    # The same complaint again (a redelivered classified event): no second order, no count.
    async with tenant_transaction(res.sessions, tenant.ctx()) as session:
        assert await dispatch_classified(session, tenant.tenant_id, late, now=now) is None
    assert observed()[0] == count


async def test_a_dispatch_that_rolls_back_is_not_counted(
    res: ServiceResources, tenant: Tenant
) -> None:
    before = observed()
    with pytest.raises(RuntimeError, match="after the dispatch"):
        async with tenant_transaction(res.sessions, tenant.ctx()) as session:
            assert await dispatch_classified(session, tenant.tenant_id, tenant.classified())
            raise RuntimeError("the batch failed after the dispatch")
    assert observed() == before
