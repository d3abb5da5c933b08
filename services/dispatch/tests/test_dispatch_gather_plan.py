"""The assignment's one statement reads what it returns, not the whole tenant: a property
group's company can have thousands of staff and work orders (`store.dispatching`)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import pytest

from dispatch.handlers import consumers
from dispatch.store.dispatching import LOCK_AND_GATHER, lock_and_gather
from dispatch.testing import Tenant
from propdesk.bus.consumer import ConsumerRunner
from propdesk.db.session import (
    create_engine,
    driver_connection,
    session_factory,
    tenant_transaction,
)
from propdesk.events import new_event
from propdesk.settings import asyncpg_dsn
from propdesk.testing.query_plans import rows_read

pytestmark = pytest.mark.asyncio(loop_scope="session")

COMPANY_STAFF = 300
OTHER_COMPANY_STAFF = 5000
OTHER_ORDERS = 3000


def _literal(value: Any) -> str:
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::timestamptz"
    text = str(value).replace("'", "''")
    return f"'{text}'::uuid" if isinstance(value, UUID) else f"'{text}'"


async def test_staff_and_order_lookups_do_not_scan_the_tenant(res, tenant: Tenant) -> None:
    admin = await asyncpg.connect(asyncpg_dsn(res.settings.database_url))
    try:
        # The rest of a big company (other departments' staff in other projects), and a
        # bigger company beside it.
        for tenant_id, n in ((tenant.tenant_id, COMPANY_STAFF), (uuid4(), OTHER_COMPANY_STAFF)):
            await admin.execute(
                "INSERT INTO dispatch.staff (id, tenant_id, project_ids, department_id, name,"
                " roles) SELECT gen_random_uuid(), $1, ARRAY[gen_random_uuid()],"
                " gen_random_uuid(), 'staff ' || g, ARRAY['handler', 'duty_leader']"
                " FROM generate_series(1, $2) g",
                tenant_id,
                n,
            )
        # And its history: open orders of other handlers and projects.
        await admin.execute(
            "INSERT INTO dispatch.work_orders (id, tenant_id, project_id, complaint_id,"
            " reference, category, grade, state, handler_id, rule_id, routing_reason,"
            " assignment_reason, received_at, recorded_at, dispatched_at)"
            " SELECT gen_random_uuid(), $1, gen_random_uuid(), gen_random_uuid(), 'R-' || g,"
            " 'facility_repair', 'simple', 'dispatched', gen_random_uuid(), 'default', '', '',"
            " now(), now(), now() FROM generate_series(1, $2) g",
            tenant.tenant_id,
            OTHER_ORDERS,
        )
        await admin.execute("ANALYZE dispatch.staff")
        await admin.execute("ANALYZE dispatch.work_orders")
    finally:
        await admin.close()

    # Working hours, after hours; each in the plan the planner makes for the values at
    # hand (custom) and in the one it keeps for every call (generic).
    for role, plan_mode in itertools.product((None, "duty_leader"), ("custom", "generic")):
        async with tenant_transaction(res.sessions, tenant.ctx()) as session:
            conn = await driver_connection(session)
            args: list[Any] = [
                tenant.project_id,
                tenant.engineering,
                datetime.now(UTC),
                f"dispatch:complaint:{uuid4()}",
                uuid4(),
                tenant.tenant_id,
            ] + ([role] if role else [])
            sql = LOCK_AND_GATHER[role is not None]
            if plan_mode == "custom":
                explained = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
            else:
                # EXPLAIN of a statement with bound values plans it for those values,
                # whatever plan_cache_mode says: the generic plan is the one a prepared
                # statement keeps, run through EXECUTE.
                await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                await conn.execute(f"PREPARE gather AS {sql}")
                # (EXECUTE takes no bound parameters: the values as literals.)
                values = ", ".join(_literal(a) for a in args)
                explained = await conn.fetchval(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE gather({values})"
                )
                await conn.execute("DEALLOCATE gather")
            text = explained if isinstance(explained, str) else json.dumps(explained)
            # A generic plan keeps the parameters; a custom one has the values in their place.
            assert ("$6" in text) == (plan_mode == "generic"), text
            plan = json.loads(text)[0]["Plan"]
            existing, people = await lock_and_gather(
                conn,
                tenant.tenant_id,
                args[4],
                tenant.project_id,
                args[2],
                department_id=tenant.engineering,
                role=role,
            )
        staff_read = rows_read(plan, "staff")
        # In working hours the department's staff only; after hours the duty leaders are
        # looked for among the company's staff, never beyond it.
        limit = 10 if role is None else COMPANY_STAFF + 10
        assert staff_read <= limit, (role, plan_mode, json.dumps(plan, indent=1))
        orders_read = rows_read(plan, "work_orders")
        assert orders_read <= 10, (role, plan_mode, orders_read, json.dumps(plan, indent=1))
        assert existing is None
        assert {c.staff_id for c in people.department_staff} == {
            tenant.handler_a,
            tenant.handler_b,
            tenant.head,
        }
        assert {c.staff_id for c in people.with_role} == ({tenant.duty_leader} if role else set())


async def test_after_hours_duty_leaders_are_found_when_the_department_is_unknown(
    res, tenant: Tenant
) -> None:
    """A complaint routed to a department dispatch does not know yet still gets the duty
    leader after hours (the role branch must not exclude everyone when there is none)."""
    async with tenant_transaction(res.sessions, tenant.ctx()) as session:
        conn = await driver_connection(session)
        _, people = await lock_and_gather(
            conn,
            tenant.tenant_id,
            uuid4(),
            tenant.project_id,
            datetime.now(UTC),
            department_id=None,
            role="duty_leader",
        )
    assert [c.staff_id for c in people.with_role] == [tenant.duty_leader]
    assert people.department_staff == []


async def test_the_classified_consumer_plans_the_gather_once(res, tenant: Tenant) -> None:
    """The consumer of classified complaints runs its transactions on generic plans: the
    assignment's statement is not planned again for each complaint. (Left to choose, the
    planner kept custom plans for it: a NULL role dropped a branch, a small tenant beside
    a big one was estimated below the generic plan; 0.9 ms of planning per complaint.)"""
    [consumer] = [c for c in consumers() if c.name == "dispatch-complaints"]
    # One connection, so that its prepared statements can be read afterwards.
    one = res.settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    engine = create_engine(one)
    try:
        runner = ConsumerRunner(consumer, one, session_factory(engine))
        for _ in range(8):
            c = tenant.classified()
            env = new_event(
                c,
                tenant_id=tenant.tenant_id,
                project_id=tenant.project_id,
                aggregate_id=c.complaint_id,
                producer="intake",
            )
            assert await runner.apply(env)
        async with engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            rows = await raw.fetch(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
                " WHERE statement = ANY($1::text[])",
                list(LOCK_AND_GATHER.values()),
            )
            mode = await raw.fetchval("SHOW plan_cache_mode")
    finally:
        await engine.dispose()
    # Within or after hours, as the clock has it: one of the two statements ran each time.
    assert sum(r["generic_plans"] for r in rows) == 8, rows
    assert sum(r["custom_plans"] for r in rows) == 0, rows
    assert mode == "auto"  # only for the consumer's transactions
