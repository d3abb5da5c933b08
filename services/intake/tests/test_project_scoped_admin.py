"""A tenant admin limited to some projects cannot widen its own access: the API keys it
creates are limited to its projects, it lists and revokes only those, and it cannot load
the whole-company onboarding document (as it cannot replace the company's rules)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from .conftest import COMPANY

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _complaint(project: str) -> dict[str, object]:
    return {"project": project, "channel": "call_center", "content": f"路灯不亮 {uuid4().hex}"}


def _key_id(headers: dict[str, str]) -> str:
    return headers["X-API-Key"].split("_")[1]


async def test_a_moon_admins_key_is_limited_to_moon(client, company_a):
    moon_admin = company_a.token("tenant_admin", projects=["MOON"])
    created = await client.post("/v1/api-keys", json={"name": "cc-moon"}, headers=moon_admin)
    assert created.status_code == 201, created.text
    assert created.json()["project_ids"] == [str(company_a.projects["MOON"])]
    key = {"X-API-Key": created.json()["key"]}
    into_sunrise = await client.post("/v1/complaints", json=_complaint("SUNRISE"), headers=key)
    assert into_sunrise.status_code == 422, into_sunrise.text
    assert into_sunrise.json()["errors"][0]["field"] == "body.project"
    into_moon = await client.post("/v1/complaints", json=_complaint("MOON"), headers=key)
    assert into_moon.status_code == 201, into_moon.text


@pytest.mark.parametrize(
    ("projects", "field"),
    [
        (["SUNRISE"], "body.projects.0"),
        (["MOON", "SUNRISE"], "body.projects.1"),
        (["NOPE"], "body.projects.0"),  # the same answer: existence is not revealed
    ],
)
async def test_a_moon_admin_cannot_name_other_projects(client, company_a, projects, field):
    moon_admin = company_a.token("tenant_admin", projects=["MOON"])
    r = await client.post(
        "/v1/api-keys", json={"name": "cc", "projects": projects}, headers=moon_admin
    )
    assert r.status_code == 403, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "project-out-of-scope"
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_a_moon_admin_may_name_its_own_project(client, company_a):
    moon_admin = company_a.token("tenant_admin", projects=["MOON"])
    r = await client.post(
        "/v1/api-keys", json={"name": "cc", "projects": ["MOON"]}, headers=moon_admin
    )
    assert r.status_code == 201, r.text
    assert r.json()["project_ids"] == [str(company_a.projects["MOON"])]
    # A tenant-wide admin still gets a tenant-wide key by default, and unknown projects
    # stay a 422.
    admin = company_a.token("tenant_admin")
    wide = await client.post("/v1/api-keys", json={"name": "cc-all"}, headers=admin)
    assert wide.status_code == 201 and wide.json()["project_ids"] is None
    unknown = await client.post(
        "/v1/api-keys", json={"name": "cc", "projects": ["NOPE"]}, headers=admin
    )
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["field"] == "body.projects.0"


async def test_a_moon_admin_lists_and_revokes_only_moon_keys(client, company_a, new_key):
    moon_admin = company_a.token("tenant_admin", projects=["MOON"])
    admin = company_a.token("tenant_admin")
    whole = await new_key(company_a)
    sunrise = await new_key(company_a, projects=["SUNRISE"])
    both = await new_key(company_a, projects=["SUNRISE", "MOON"])
    moon = await new_key(company_a, projects=["MOON"])
    listed = await client.get("/v1/api-keys", headers=moon_admin)
    assert listed.status_code == 200
    seen = {k["key_id"] for k in listed.json()["items"]}
    assert _key_id(moon) in seen
    assert not seen & {_key_id(whole), _key_id(sunrise), _key_id(both)}
    assert all(
        k["project_ids"] == [str(company_a.projects["MOON"])] for k in listed.json()["items"]
    )
    everything = (await client.get("/v1/api-keys", headers=admin)).json()["items"]
    rows = {k["key_id"]: k["id"] for k in everything}
    for other in (whole, sunrise, both):
        r = await client.delete(f"/v1/api-keys/{rows[_key_id(other)]}", headers=moon_admin)
        assert r.status_code == 404, r.text
        assert r.json()["code"] == "api-key-not-found"
        assert (await client.get("/v1/complaints", headers=other)).status_code == 200
    own = await client.delete(f"/v1/api-keys/{rows[_key_id(moon)]}", headers=moon_admin)
    assert own.status_code == 204
    assert (await client.get("/v1/complaints", headers=moon)).status_code == 401


async def test_a_moon_admin_cannot_onboard_the_company(client, company_a, db_rows):
    moon_admin = company_a.token("tenant_admin", projects=["MOON"])
    renamed = COMPANY.format(code=company_a.code, name="甲物业").replace("阳光花园", "改名花园")
    r = await client.post(
        "/v1/onboarding",
        content=renamed.encode(),
        headers={**moon_admin, "Content-Type": "application/yaml"},
    )
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "tenant-wide-scope-required"
    [project] = await db_rows(
        "SELECT name FROM intake.projects WHERE id = $1", company_a.projects["SUNRISE"]
    )
    assert project["name"] == "阳光花园"
