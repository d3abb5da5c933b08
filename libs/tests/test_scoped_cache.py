"""The scoped per-process cache: bounded staleness, entries per tenant and per scope,
invalidation of one tenant or all, and entries in use refreshed before they expire."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

from propdesk.db.scoped_cache import ScopedCache
from propdesk.tenancy import TenantContext


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _cache(clock: Clock | None = None) -> ScopedCache:
    return ScopedCache("test", ttl=30.0, clock=clock or Clock())


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = _cache(clock)
    tenant = uuid4()
    cache.put(tenant, "k", "v")
    clock.now += 29.9
    assert cache.get(tenant, "k") == (True, "v")
    clock.now += 0.2
    assert cache.get(tenant, "k") == (False, None)


def test_invalidation_drops_one_tenant_only() -> None:
    cache = _cache()
    a, b = uuid4(), uuid4()
    cache.put(a, "k", "a's")
    cache.put(b, "k", "b's")
    assert cache.get(a, "k") == (True, "a's")
    cache.invalidate_tenant(a)
    assert cache.get(a, "k") == (False, None)
    assert cache.get(b, "k") == (True, "b's")


def test_a_value_loaded_before_an_invalidation_is_not_stored() -> None:
    cache = _cache()
    tenant = uuid4()
    before = cache.generation(tenant)
    cache.invalidate_tenant(tenant)  # a rules change commits while the old value loads
    cache.put(tenant, "k", "old", generation=before)
    assert cache.get(tenant, "k") == (False, None)
    cache.put(tenant, "k", "new", generation=cache.generation(tenant))
    assert cache.get(tenant, "k") == (True, "new")


@pytest.mark.asyncio(loop_scope="session")
async def test_entries_are_keyed_by_scope() -> None:
    cache = _cache()
    tenant, project = uuid4(), uuid4()
    wide = TenantContext.for_tenant(tenant, actor="t")
    narrow = TenantContext(tenant_id=tenant, project_ids=frozenset({project}), actor="t")
    loads: list[str] = []

    async def load(value: str):
        loads.append(value)
        return value

    assert await cache.through(wide, ("x",), lambda: load("wide")) == "wide"
    assert await cache.through(narrow, ("x",), lambda: load("narrow")) == "narrow"
    assert await cache.through(wide, ("x",), lambda: load("again")) == "wide"
    assert loads == ["wide", "narrow"]


@pytest.mark.asyncio(loop_scope="session")
async def test_an_entry_in_use_is_refreshed_before_it_expires() -> None:
    clock = Clock()
    cache = _cache(clock)
    ctx = TenantContext.for_tenant(uuid4(), actor="t")
    refreshes: list[str] = []
    gate = asyncio.Event()

    async def load() -> str:
        return "v1"

    async def refresh() -> str:
        refreshes.append("v2")
        await gate.wait()
        return "v2"

    assert await cache.through(ctx, ("x",), load, refresh) == "v1"
    clock.now += 14.9  # before 50 % of the TTL: nothing to do
    assert await cache.through(ctx, ("x",), load, refresh) == "v1"
    assert refreshes == []
    clock.now += 12.2  # past 90 %: still served, reloaded in the background, once
    assert await cache.through(ctx, ("x",), load, refresh) == "v1"
    assert await cache.through(ctx, ("x",), load, refresh) == "v1"
    await asyncio.sleep(0)
    assert refreshes == ["v2"]
    gate.set()
    await asyncio.gather(*cache._tasks)
    assert await cache.through(ctx, ("x",), load, refresh) == "v2"
    clock.now += 29.0  # the refreshed entry lives a full TTL from its reload
    assert cache.get(ctx.tenant_id, (ctx.project_ids, ctx.system, "x")) == (True, "v2")


def test_invalidating_all_drops_every_tenant_and_beats_a_slow_load() -> None:
    cache = _cache()
    a, b = uuid4(), uuid4()
    cache.put(a, "k", "a's")
    loading_since = cache.generation(b)
    cache.invalidate_all()  # a change committed while b's value was being loaded
    assert cache.get(a, "k") == (False, None)
    cache.put(b, "k", "stale", generation=loading_since)
    assert cache.get(b, "k") == (False, None)
    cache.put(b, "k", "fresh", generation=cache.generation(b))
    assert cache.get(b, "k") == (True, "fresh")


@pytest.mark.asyncio(loop_scope="session")
async def test_invalidations_reach_the_caches_of_other_processes_over_nats(settings) -> None:
    from propdesk.bus.streams import connect
    from propdesk.testing.waiting import eventually

    name = f"test-{uuid4().hex[:8]}"
    here, there = ScopedCache(name, ttl=300.0), ScopedCache(name, ttl=300.0)
    other = ScopedCache(f"{name}-other", ttl=300.0)
    connections = [await connect(settings, f"cache-{n}") for n in range(3)]
    try:
        for cache, nc in zip((here, there, other), connections, strict=True):
            await cache.connect(nc)
        a, b = uuid4(), uuid4()
        for cache in (here, there, other):
            cache.put(a, "k", "a's")
            cache.put(b, "k", "b's")
        generation = here.generation(a)
        here.invalidate_tenant(a)

        async def dropped() -> bool:
            return there.get(a, "k") == (False, None)

        await eventually(dropped, "the other process's cache dropping the tenant", within=5)
        assert there.get(b, "k") == (True, "b's"), "only the tenant named"
        there.invalidate_all()

        async def all_dropped() -> bool:
            return here.get(b, "k") == (False, None)

        await eventually(all_dropped, "this cache dropping everything", within=5)
        await asyncio.sleep(0.2)
        # Its own announcement is not applied twice (a second bump would discard a load
        # that started after the first); a cache of another name hears none of it.
        assert here.generation(a) == (generation[0] + 1, generation[1] + 1)
        assert other.get(a, "k") == (True, "a's") and other.get(b, "k") == (True, "b's")
    finally:
        for nc in connections:
            await nc.close()
