"""Integration fixtures: a database of our own on the real server, bootstrapped and
migrated, the intake app on it (in process, over ASGI), and two onboarded companies."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from uuid import UUID

import asyncpg
import httpx
import pytest

from intake.app import create_app
from intake.onboarding.apply import apply_document
from intake.onboarding.document import parse_document
from intake.store import apikeys
from propdesk.auth.tokens import issue_token
from propdesk.db.session import tenant_transaction
from propdesk.service.resources import ServiceResources
from propdesk.settings import Settings
from propdesk.tenancy import TenantContext
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.databases import fresh_database

COMPANY = """
tenant: {{code: {code}, name: {name}, settings: {{}}}}
projects:
  - {{code: SUNRISE, name: 阳光花园, city: 上海, time_zone: Asia/Shanghai, calendar: cn,
     buildings: [{{code: "1", name: 1号楼, units: ["101", "102", "103", "104"]}},
                 {{code: "5", name: 5号楼, units: ["501", "502", "503"]}}]}}
  - {{code: MOON, name: 月亮湾, city: 武汉, time_zone: Asia/Shanghai, calendar: cn,
     buildings: [{{code: A, name: A栋, units: ["1A"]}}]}}
departments:
  - {{code: cs, name: 客服部, kind: customer_service, project: SUNRISE}}
  - {{code: eng, name: 工程部, kind: engineering}}
staff:
  - {{code: S001, name: 王敏, roles: [intake_clerk], department: cs, projects: [SUNRISE]}}
routing: [{{category: facility_repair, department: eng}}]
"""


@dataclass
class Company:
    code: str
    tenant_id: UUID
    projects: dict[str, UUID]
    settings: Settings

    def token(self, *roles: str, subject: str | None = None, projects: list[str] | None = None):
        token = issue_token(
            self.settings,
            tenant_id=self.tenant_id,
            subject=subject or f"{self.code}:{'+'.join(roles)}",
            roles=roles,
            project_ids=[self.projects[p] for p in projects] if projects is not None else None,
        )
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
async def intake_settings(settings: Settings) -> Settings:
    return await fresh_database(settings, "intake_tests", ("intake",))


@pytest.fixture(scope="session")
async def resources(intake_settings: Settings) -> AsyncIterator[ServiceResources]:
    res = await ServiceResources.open("intake", intake_settings, nats=False)
    yield res
    await res.close()


@pytest.fixture(scope="session")
async def client(resources: ServiceResources) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(resources)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as c:
        yield c


async def onboard(resources: ServiceResources, code: str, name: str) -> Company:
    doc = parse_document(COMPANY.format(code=code, name=name))
    report = await apply_document(resources.sessions, doc, actor="test")
    ctx = TenantContext.for_tenant(report.tenant_id)
    async with tenant_transaction(resources.sessions, ctx) as s:
        from intake.store.tenants import project_ids_by_codes

        projects = await project_ids_by_codes(s, ["SUNRISE", "MOON"])
    return Company(code, report.tenant_id, projects, resources.settings)


@pytest.fixture(scope="session")
async def company_a(resources: ServiceResources) -> Company:
    return await onboard(resources, "ACME", "甲物业")


@pytest.fixture(scope="session")
async def company_b(resources: ServiceResources) -> Company:
    return await onboard(resources, "BETA", "乙物业")


async def make_key(
    resources: ServiceResources,
    company: Company,
    *,
    projects: list[str] | None = None,
    rate_limit: int = 6000,
) -> dict[str, str]:
    ctx = TenantContext.for_tenant(company.tenant_id, actor="test")
    async with tenant_transaction(resources.sessions, ctx) as s:
        new = await apikeys.create_key(
            s,
            tenant_id=company.tenant_id,
            name="test",
            project_ids=[company.projects[p] for p in projects] if projects else None,
            created_by="test",
            rate_limit_per_minute=rate_limit,
        )
    return {"X-API-Key": new.secret}


@pytest.fixture(scope="session")
def new_key(resources: ServiceResources):
    async def make(company: Company, **kwargs: object) -> dict[str, str]:
        return await make_key(resources, company, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="session")
def db_rows(intake_settings: Settings):
    async def fetch(sql: str, *args: object) -> list[asyncpg.Record]:
        return await admin_fetch(intake_settings, sql, *args)

    return fetch
