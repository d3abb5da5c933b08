"""The per-process directory cache: bounded staleness, per-tenant and per-scope entries, and
invalidation by this process's onboarding and rules changes (the rules case is in
test_rules_api: a PUT applies to the very next complaint)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from intake import directory_cache
from intake.directory_cache import DirectoryCache
from intake.onboarding.apply import apply_document
from intake.onboarding.document import parse_document
from propdesk.tenancy import TenantContext

from .conftest import COMPANY, onboard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    cache = DirectoryCache(ttl=30.0, clock=clock)
    tenant = uuid4()
    cache.put(tenant, "k", "v")
    clock.now += 29.9
    assert cache.get(tenant, "k") == (True, "v")
    clock.now += 0.2
    assert cache.get(tenant, "k") == (False, None)


def test_invalidation_drops_one_tenant_only() -> None:
    cache = DirectoryCache()
    a, b = uuid4(), uuid4()
    cache.put(a, "k", "a's")
    cache.put(b, "k", "b's")
    assert cache.get(a, "k") == (True, "a's")
    cache.invalidate_tenant(a)
    assert cache.get(a, "k") == (False, None)
    assert cache.get(b, "k") == (True, "b's")


def test_a_value_loaded_before_an_invalidation_is_not_stored() -> None:
    cache = DirectoryCache()
    tenant = uuid4()
    before = cache.generation(tenant)
    cache.invalidate_tenant(tenant)  # a rules change commits while the old value loads
    cache.put(tenant, "k", "old", generation=before)
    assert cache.get(tenant, "k") == (False, None)
    cache.put(tenant, "k", "new", generation=cache.generation(tenant))
    assert cache.get(tenant, "k") == (True, "new")


@pytest.mark.asyncio(loop_scope="session")
async def test_entries_are_keyed_by_scope() -> None:
    cache = DirectoryCache()
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
async def test_projects_are_per_tenant_and_per_scope(client, company_a, company_b) -> None:
    body = {"project": "SUNRISE", "channel": "phone", "content": "电梯坏了 缓存隔离"}
    for company in (company_a, company_b, company_a):
        r = await client.post("/v1/complaints", json=body, headers=company.token("intake_clerk"))
        assert r.status_code == 201, r.text
        assert r.json()["project_id"] == str(company.projects["SUNRISE"])
    # SUNRISE is cached for company A's tenant-wide scope; a MOON-only credential of the
    # same tenant still may not record there.
    moon_only = company_a.token("intake_clerk", projects=["MOON"])
    r = await client.post("/v1/complaints", json=body, headers=moon_only)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "body.project"


@pytest.mark.asyncio(loop_scope="session")
async def test_onboarding_in_this_process_is_seen_at_once(client, resources) -> None:
    code = f"C{uuid4().hex[:6].upper()}"
    company = await onboard(resources, code, "缓存物业")
    clerk = company.token("intake_clerk")
    body = {
        "project": "SUNRISE",
        "channel": "phone",
        "content": "楼道灯不亮",
        "unit": {"building": "9", "room": "901"},
    }
    first = await client.post("/v1/complaints", json=body, headers=clerk)
    assert first.status_code == 201, first.text
    assert first.json()["unit"]["id"] is None  # not onboarded: recorded by its text

    more = COMPANY.format(code=code, name="缓存物业").replace(
        '{code: "5", name: 5号楼, units: ["501", "502", "503"]}',
        '{code: "5", name: 5号楼, units: ["501", "502", "503"]},\n'
        '                 {code: "9", name: 9号楼, units: ["901"]}',
    )
    assert "901" in more
    await apply_document(resources.sessions, parse_document(more), actor="test")

    body["content"] = "楼道灯还是不亮"
    second = await client.post("/v1/complaints", json=body, headers=clerk)
    assert second.status_code in (200, 201), second.text
    assert second.json()["unit"]["id"] is not None


def test_the_module_cache_is_what_invalidation_clears() -> None:
    tenant = uuid4()
    directory_cache.CACHE.put(tenant, "k", "v")
    directory_cache.invalidate_tenant(tenant)
    assert directory_cache.CACHE.get(tenant, "k") == (False, None)


@pytest.mark.asyncio(loop_scope="session")
async def test_an_entry_in_use_is_refreshed_before_it_expires() -> None:
    import asyncio

    clock = Clock()
    cache = DirectoryCache(ttl=30.0, clock=clock)
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
