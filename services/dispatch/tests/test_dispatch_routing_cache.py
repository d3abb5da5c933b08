"""The per-process routing cache: a change this process makes is seen by the very next
dispatch (expiry, refresh and invalidation races: libs/tests/test_scoped_cache.py)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from uuid import uuid4
from zoneinfo import ZoneInfo

from dispatch.flows.dispatching import dispatch_classified
from dispatch.store import routing_cache
from dispatch.testing import seed_tenant
from propdesk.db.session import tenant_transaction

TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


async def test_a_rule_change_is_seen_by_the_next_dispatch(res, client) -> None:
    t = await seed_tenant(res)
    admin = t.token(uuid4(), "tenant_admin")

    async def department() -> str:
        c = t.classified(reference="TS-CACHE")
        async with tenant_transaction(res.sessions, t.ctx()) as session:
            wo = await dispatch_classified(session, t.tenant_id, c, now=TUESDAY_10)
        view = await client.get(f"/v1/work-orders/{wo}", headers=admin)
        assert view.status_code == 200, view.text
        return str(view.json()["department_code"])

    assert await department() == "eng"  # and the project's routing is now cached
    r = await client.post(
        "/v1/routing-rules",
        headers=admin,
        json={"department": "cs", "category": "facility_repair", "note": "先由客服受理"},
    )
    assert r.status_code == 201, r.text
    assert await department() == "cs"
    gone = await client.delete(f"/v1/routing-rules/{r.json()['id']}", headers=admin)
    assert gone.status_code in (200, 204), gone.text
    assert await department() == "eng"


async def test_routing_in_use_is_reloaded_in_its_own_transaction_before_it_expires(res) -> None:
    t = await seed_tenant(res)
    cache = routing_cache.CACHE
    started = cache.clock()
    async with tenant_transaction(res.sessions, t.ctx()) as session:
        first = await routing_cache.project_routing(session, t.project_id)
    assert first.departments, "the seeded project has departments to route to"
    try:
        # Past 90 % of the TTL, before expiry: served from the cache, reloaded behind it.
        cache.clock = lambda: started + routing_cache.TTL_SECONDS * 0.95
        async with tenant_transaction(res.sessions, t.ctx()) as session:
            assert await routing_cache.project_routing(session, t.project_id) is first
        await asyncio.gather(*cache._tasks)
        async with tenant_transaction(res.sessions, t.ctx()) as session:
            again = await routing_cache.project_routing(session, t.project_id)
    finally:
        cache.clock = time.monotonic
    assert again is not first, "the entry was reloaded"
    assert again == first, "under the same tenant context: the same rows"
