"""Test support for dispatch's integration tests: a seeded tenant directory and tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

from dispatch.flows.dispatching import dispatch_classified
from dispatch.handlers import on_directory_event
from dispatch.store import work_orders as orders
from propdesk.auth.tokens import issue_token
from propdesk.db.session import tenant_transaction
from propdesk.events import new_event
from propdesk.events.contracts.complaint import ComplaintClassified
from propdesk.events.contracts.tenant import (
    DepartmentUpserted,
    ProjectUpserted,
    StaffUpserted,
    TenantUpserted,
)
from propdesk.service.resources import ServiceResources
from propdesk.settings import Settings
from propdesk.tenancy import TenantContext


@dataclass
class Tenant:
    """One seeded property company with one project, as the directory events built it."""

    settings: Settings
    tenant_id: UUID = field(default_factory=uuid4)
    project_id: UUID = field(default_factory=uuid4)
    engineering: UUID = field(default_factory=uuid4)
    service_center: UUID = field(default_factory=uuid4)
    handler_a: UUID = field(default_factory=uuid4)
    handler_b: UUID = field(default_factory=uuid4)
    head: UUID = field(default_factory=uuid4)
    duty_leader: UUID = field(default_factory=uuid4)
    assistant: UUID = field(default_factory=uuid4)

    def ctx(self) -> TenantContext:
        return TenantContext.for_tenant(self.tenant_id, actor="test")

    def token(self, staff_id: UUID | str, *roles: str) -> dict[str, str]:
        t = issue_token(self.settings, tenant_id=self.tenant_id, subject=str(staff_id), roles=roles)
        return {"authorization": f"Bearer {t}"}

    def handler(self, which: UUID) -> dict[str, str]:
        return self.token(which, "handler")

    def classified(self, **fields: Any) -> ComplaintClassified:
        """A new simple facility complaint of the project, classified now; `fields`
        override any of it."""
        now = datetime.now(UTC)
        values: dict[str, Any] = {
            "complaint_id": uuid4(),
            "reference": "TS-1",
            "project_id": self.project_id,
            "channel": "phone",
            "category": "facility_repair",
            "grade": "simple",
            "grade_reasons": [],
            "category_reason": "test",
            "received_at": now,
            "recorded_at": now,
        }
        return ComplaintClassified(**{**values, **fields})


async def seed_tenant(res: ServiceResources) -> Tenant:
    t = Tenant(settings=res.settings)
    p = t.project_id
    payloads = [
        TenantUpserted(tenant_id=t.tenant_id, code=f"t-{t.tenant_id.hex[:8]}", name="物业公司"),
        ProjectUpserted(project_id=p, code="P1", name="花园小区", time_zone="Asia/Shanghai"),
        DepartmentUpserted(
            department_id=t.engineering,
            project_id=p,
            code="eng",
            name="工程部",
            kind="engineering",
        ),
        DepartmentUpserted(
            department_id=t.service_center,
            project_id=p,
            code="cs",
            name="客服中心",
            kind="customer_service",
        ),
        StaffUpserted(
            staff_id=t.handler_a,
            project_ids=[p],
            department_id=t.engineering,
            name="张工",
            roles=["handler"],
            skills=["facility_repair"],
        ),
        StaffUpserted(
            staff_id=t.handler_b,
            project_ids=[p],
            department_id=t.engineering,
            name="李工",
            roles=["handler"],
            skills=["facility_repair"],
        ),
        StaffUpserted(
            staff_id=t.head,
            project_ids=[p],
            department_id=t.engineering,
            name="王经理",
            roles=["department_head"],
        ),
        StaffUpserted(
            staff_id=t.duty_leader,
            project_ids=[p],
            department_id=None,
            name="赵领班",
            roles=["duty_leader"],
        ),
        StaffUpserted(
            staff_id=t.assistant,
            project_ids=[p],
            department_id=t.service_center,
            name="陈助理",
            roles=["affairs_assistant"],
        ),
    ]
    await apply_directory(res, t, payloads)
    return t


async def apply_directory(res: ServiceResources, t: Tenant, payloads: list[Any]) -> None:
    """Apply directory events (tenant, projects, departments, staff) of `t`, one by one, as
    dispatch's consumer does."""
    for payload in payloads:
        env = new_event(
            payload,
            tenant_id=t.tenant_id,
            project_id=None,
            aggregate_id=uuid4(),
            producer="test",
        )
        async with tenant_transaction(res.sessions, t.ctx()) as session:
            await on_directory_event(session, env)


# Within the seeded project's working hours (Shanghai, a working Tuesday).
TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Shanghai"))


async def engineering_order(res: ServiceResources, t: Tenant) -> tuple[str, UUID]:
    """A facility complaint dispatched in working hours: (its URL, its engineer)."""
    async with tenant_transaction(res.sessions, t.ctx()) as session:
        wo = await dispatch_classified(session, t.tenant_id, t.classified(), now=TUESDAY_10)
    assert wo is not None
    async with tenant_transaction(res.sessions, t.ctx()) as session:
        row = await orders.get(session, wo)
    assert row is not None and row.handler_id in (t.handler_a, t.handler_b)
    return f"/v1/work-orders/{wo}", row.handler_id
