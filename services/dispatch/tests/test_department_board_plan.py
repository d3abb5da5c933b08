"""A department's board reads that department's orders, not the company's history
(migration 0011's index)."""

from __future__ import annotations

import json
from uuid import uuid4

import asyncpg
import pytest
from sqlalchemy import text

from dispatch.domain.lifecycle import OPEN_STATES
from dispatch.store.work_orders import BOARD, DEPARTMENT_CODE_USED
from dispatch.testing import Tenant
from propdesk.db.session import tenant_transaction
from propdesk.settings import asyncpg_dsn
from propdesk.testing.query_plans import rows_read

pytestmark = pytest.mark.asyncio(loop_scope="session")

COMPANY_ORDERS = 3000  # of another department: what the board must not read


async def test_a_board_and_the_unknown_code_check_read_one_department(res, tenant: Tenant) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(res.settings.database_url))
    try:
        await admin.execute(
            "INSERT INTO dispatch.work_orders (id, tenant_id, project_id, complaint_id,"
            " reference, category, grade, state, handler_id, rule_id, routing_reason,"
            " assignment_reason, received_at, recorded_at, dispatched_at, department_code)"
            " SELECT gen_random_uuid(), $1, $2, gen_random_uuid(), 'B-' || g,"
            " 'environment', 'simple', 'dispatched', gen_random_uuid(), 'default', '', '',"
            " now(), now(), now(), 'cleaning' FROM generate_series(1, $3) g",
            tenant.tenant_id,
            tenant.project_id,
            COMPANY_ORDERS,
        )
        await admin.execute("ANALYZE dispatch.work_orders")
    finally:
        await admin.close()

    states = [s.value for s in OPEN_STATES]
    for sql, params in (
        (BOARD, {"code": "engineering", "states": states, "p": None, "d": None}),
        (BOARD, {"code": "engineering", "states": states, "p": tenant.project_id, "d": None}),
        (DEPARTMENT_CODE_USED, {"code": f"nothing-{uuid4().hex[:6]}"}),
    ):
        async with tenant_transaction(res.sessions, tenant.ctx()) as session:
            explained = await session.scalar(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql), params)
        plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
        read = rows_read(plan, "work_orders")
        assert read <= 10, (sql[:40], params, read, json.dumps(plan, indent=1))
