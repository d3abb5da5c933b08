"""The per-process routing cache: a change this process makes is seen by the very next
dispatch; entries expire; a value loaded before an invalidation is not stored after it."""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4
from zoneinfo import ZoneInfo

from dispatch.flows.dispatching import dispatch_classified
from dispatch.store.routing_cache import RoutingCache
from dispatch.testing import seed_tenant
from propdesk.db.session import tenant_transaction

TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


def test_entries_expire_and_invalidation_beats_a_slow_load() -> None:
    now = [100.0]
    cache = RoutingCache(ttl=10, clock=lambda: now[0])
    cache.put("k", "v1", cache.generation)
    assert cache.get("k") == "v1"
    now[0] += 10
    assert cache.get("k") is None
    loading_since = cache.generation
    cache.clear()  # a change committed while the value was being loaded
    cache.put("k", "stale", loading_since)
    assert cache.get("k") is None
    cache.put("k", "fresh", cache.generation)
    assert cache.get("k") == "fresh"


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
