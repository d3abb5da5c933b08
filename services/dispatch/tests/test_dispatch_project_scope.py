"""What is every project's (a routing rule or a day without a project) is changed only by
a credential for every project of the company: in the API, and by the database itself."""

from __future__ import annotations

from uuid import uuid4

import asyncpg
import pytest

from dispatch.handlers import consumers
from dispatch.testing import Tenant
from propdesk.auth.tokens import issue_token
from propdesk.bus.consumer import ConsumerRunner
from propdesk.db.session import driver_connection, tenant_transaction
from propdesk.events import new_event
from propdesk.events.contracts.tenant import TenantUpserted
from propdesk.tenancy import TenantContext

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _limited(tenant: Tenant, role: str) -> dict[str, str]:
    token = issue_token(
        tenant.settings,
        tenant_id=tenant.tenant_id,
        subject=str(uuid4()),
        roles=[role],
        project_ids=[tenant.project_id],
    )
    return {"authorization": f"Bearer {token}"}


async def test_a_project_director_changes_only_his_projects_rules(tenant: Tenant, client) -> None:
    company = tenant.token(uuid4(), "tenant_admin")
    director = _limited(tenant, "director")
    every = {"department": "eng", "category": "security", "priority": 10}
    r = await client.post("/v1/routing-rules", headers=company, json=every)
    assert r.status_code == 201, r.text
    rule = r.json()["id"]

    r = await client.post("/v1/routing-rules", headers=director, json=every)
    assert r.status_code == 403 and r.json()["code"] == "tenant-wide-scope-required", r.text
    r = await client.put(f"/v1/routing-rules/{rule}", headers=director, json={**every, "note": "x"})
    assert r.status_code == 403 and r.json()["code"] == "tenant-wide-scope-required", r.text
    r = await client.delete(f"/v1/routing-rules/{rule}", headers=director)
    assert r.status_code == 403, r.text
    # He still sees it (it routes his project's complaints too) and rules his own project.
    listed = (await client.get("/v1/routing-rules", headers=director)).json()
    assert [x["id"] for x in listed["items"]] == [rule]
    own = {**every, "project_id": str(tenant.project_id)}
    r = await client.post("/v1/routing-rules", headers=director, json=own)
    assert r.status_code == 201, r.text
    mine = r.json()["id"]
    r = await client.put(
        f"/v1/routing-rules/{mine}", headers=director, json={**own, "project_id": None}
    )
    assert r.status_code == 403, r.text  # nor turn his rule into everyone's
    elsewhere = {**every, "department": "finance_or_any", "project_id": str(uuid4())}
    for r in (
        await client.post("/v1/routing-rules", headers=director, json=elsewhere),
        await client.put(f"/v1/routing-rules/{mine}", headers=director, json=elsewhere),
    ):
        # Another project (existing or not: one answer), never a 500.
        assert r.status_code == 422, r.text
        assert ("body.project_id", "in_scope") in [
            (e["field"], e["rule"]) for e in r.json()["errors"]
        ]


async def test_a_project_admin_sets_days_only_for_his_project(tenant: Tenant, client) -> None:
    admin = _limited(tenant, "tenant_admin")
    url = f"/v1/calendars/{tenant.project_id}/days/2027-03-03"
    r = await client.put(url, headers=admin, json={"kind": "holiday", "tenant_wide": True})
    assert r.status_code == 403 and r.json()["code"] == "tenant-wide-scope-required", r.text
    r = await client.put(url, headers=admin, json={"kind": "holiday"})
    assert r.status_code == 200 and r.json()["scope"] == "project", r.text


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO dispatch.routing_rules (tenant_id, project_id, department, source,"
        " created_by) VALUES ($1, NULL, 'eng', 'api', 'probe')",
        "INSERT INTO dispatch.calendar_days (tenant_id, project_id, day, kind, name)"
        " VALUES ($1, NULL, '2027-03-04', 'holiday', 'probe')",
        "INSERT INTO dispatch.departments (id, tenant_id, project_id, code, name, kind)"
        " VALUES (gen_random_uuid(), $1, NULL, 'probe', 'probe', 'probe')",
    ],
)
async def test_the_database_refuses_rows_of_every_project_in_a_project_scope(
    res, tenant: Tenant, sql: str
) -> None:
    scoped = TenantContext.for_tenant(tenant.tenant_id, {tenant.project_id}, actor="probe")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with tenant_transaction(res.sessions, scoped) as session:
            conn = await driver_connection(session)
            await conn.execute(sql, tenant.tenant_id)
    async with tenant_transaction(res.sessions, tenant.ctx()) as session:  # every project
        conn = await driver_connection(session)
        await conn.execute(sql, tenant.tenant_id)
    # Deleting them is refused too (DELETE is checked against USING, which shows them):
    # the project-scoped context deletes nothing; the whole scope deletes the row.
    table = sql.split()[2]
    delete = f"DELETE FROM {table} WHERE tenant_id = $1 AND project_id IS NULL"
    async with tenant_transaction(res.sessions, scoped) as session:
        conn = await driver_connection(session)
        assert await conn.execute(delete, tenant.tenant_id) == "DELETE 0"
    async with tenant_transaction(res.sessions, tenant.ctx()) as session:
        conn = await driver_connection(session)
        assert await conn.execute(delete, tenant.tenant_id) != "DELETE 0"


async def test_the_directory_consumer_writes_the_company_row(res, tenant: Tenant) -> None:
    """`dispatch.tenants` is written only in a context of every project: the directory
    consumer, its one writer, applies `tenant.upserted` in the event's tenant with every
    project in scope, and a credential of one project reads what it wrote."""
    [directory] = [c for c in consumers() if c.name == "dispatch-directory"]
    runner = ConsumerRunner(directory, res.settings, res.sessions)
    renamed = TenantUpserted(
        tenant_id=tenant.tenant_id, code=f"t-{tenant.tenant_id.hex[:8]}", name="改名物业"
    )
    env = new_event(
        renamed,
        tenant_id=tenant.tenant_id,
        project_id=None,
        aggregate_id=tenant.tenant_id,
        producer="test",
    )
    assert await runner.apply(env)
    scoped = TenantContext.for_tenant(tenant.tenant_id, {tenant.project_id}, actor="probe")
    async with tenant_transaction(res.sessions, scoped) as session:
        conn = await driver_connection(session)
        name = await conn.fetchval(
            "SELECT name FROM dispatch.tenants WHERE id = $1", tenant.tenant_id
        )
    assert name == "改名物业"
