"""Onboard the benchmark's companies through intake's public API, one API key each."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import httpx

from bench.workload import TENANTS, company_document
from propdesk.auth.tokens import issue_token
from propdesk.settings import get_settings


@dataclass(frozen=True, slots=True)
class Company:
    """One onboarded company: its integration key (the load), and its administrator's
    token (the bench's own set-up calls, such as the projects' working hours)."""

    tenant_id: UUID
    api_key: str
    admin_token: str


async def onboard_tenants(base_url: str, tenants: int = TENANTS) -> list[Company]:
    """Each company's document as the platform operator, then an API key from that
    company's tenant admin. The keys' rate limit is the maximum the API allows, so the
    limiter runs (one Redis round trip per request) but never answers 429."""
    settings = get_settings()
    operator = issue_token(settings, tenant_id=None, subject="bench", roles=["operator"])
    companies: list[Company] = []
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as client:
        for t in range(1, tenants + 1):
            r = await client.post(
                "/v1/onboarding",
                json=company_document(t),
                headers={"Authorization": f"Bearer {operator}"},
            )
            r.raise_for_status()
            tenant_id = UUID(r.json()["tenant_id"])
            admin = issue_token(
                settings, tenant_id=tenant_id, subject="bench-admin", roles=["tenant_admin"]
            )
            r = await client.post(
                "/v1/api-keys",
                json={"name": "bench", "rate_limit_per_minute": 1_000_000},
                headers={"Authorization": f"Bearer {admin}"},
            )
            r.raise_for_status()
            companies.append(Company(tenant_id, r.json()["key"], admin))
    return companies
