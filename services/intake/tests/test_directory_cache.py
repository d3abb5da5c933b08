"""The per-process directory cache: bounded staleness, per-tenant and per-scope entries, and
invalidation by this process's onboarding and rules changes (the rules case is in
test_rules_api: a PUT applies to the very next complaint)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from intake import directory_cache
from intake.onboarding.apply import apply_document
from intake.onboarding.document import parse_document

from .conftest import COMPANY, onboard


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
