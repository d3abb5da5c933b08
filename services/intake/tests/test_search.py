"""`q=` free-text search: Chinese and English, user wildcards taken literally, and the
trigram index really used by the app role under row-level security."""

from __future__ import annotations

import json
import re
from uuid import uuid4

import pytest

from intake.store.complaints import has_trigrams

from .conftest import onboard

session_loop = pytest.mark.asyncio(loop_scope="session")


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("漏水", False),
        ("漏水了", True),
        ("ab", False),
        ("pipe", True),
        ("5%_", False),
        ("50%", False),
        ("100%", True),
        ("a b c", False),
    ],
)
def test_has_trigrams(q: str, expected: bool) -> None:
    assert has_trigrams(q) is expected


async def _post(client, headers, content: str, **over: object) -> dict:
    body = {"project": "SUNRISE", "channel": "wechat", "content": content, **over}
    r = await client.post("/v1/complaints", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def _search(client, headers, q: str, **params: object) -> list[str]:
    r = await client.get("/v1/complaints", params={"q": q, "limit": 200, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return [c["id"] for c in r.json()["items"]]


@session_loop
async def test_chinese_english_and_wildcards(client, resources):
    company = await onboard(resources, f"S{uuid4().hex[:6].upper()}", "搜索物业")
    clerk = company.token("intake_clerk")
    leak = await _post(client, clerk, "厨房天花板漏水严重", place="5号楼")
    pipe = await _post(client, clerk, "The PIPE in the basement is leaking", demand="fix it")
    pct = await _post(client, clerk, "物业费多收了50%的费用")
    five = await _post(client, clerk, "物业费多收了500元")
    under = await _post(client, clerk, "电表编号 a_b 不对")
    named = await _post(client, clerk, "门禁坏了", complainant={"name": "欧阳娜娜"})

    assert await _search(client, clerk, "漏水") == [leak["id"]]  # two characters: no index
    assert await _search(client, clerk, "天花板漏水") == [leak["id"]]
    assert await _search(client, clerk, "pipe") == [pipe["id"]]
    assert await _search(client, clerk, "Basement IS leak") == [pipe["id"]]
    assert await _search(client, clerk, "FIX IT") == [pipe["id"]]  # demand
    assert await _search(client, clerk, "5号楼") == [leak["id"]]  # place
    assert await _search(client, clerk, "欧阳娜娜") == [named["id"]]  # complainant name
    assert await _search(client, clerk, named["reference"]) == [named["id"]]
    # % and _ are the user's characters, not wildcards.
    assert await _search(client, clerk, "50%") == [pct["id"]]
    assert await _search(client, clerk, "多收了50%的") == [pct["id"]]
    assert set(await _search(client, clerk, "多收了5")) == {pct["id"], five["id"]}
    assert await _search(client, clerk, "a_b") == [under["id"]]
    assert await _search(client, clerk, "%") == [pct["id"]]
    assert await _search(client, clerk, "_") == [under["id"]]
    assert await _search(client, clerk, "\\") == []
    assert await _search(client, clerk, "漏水", category="noise") == []


@session_loop
async def test_search_is_tenant_and_project_scoped(client, resources):
    a = await onboard(resources, f"T{uuid4().hex[:6].upper()}", "甲")
    b = await onboard(resources, f"U{uuid4().hex[:6].upper()}", "乙")
    word = f"独特词{uuid4().hex[:6]}"
    mine = await _post(client, a.token("intake_clerk"), f"{word} 电梯坏了")
    theirs = await _post(client, b.token("intake_clerk"), f"{word} 电梯坏了")
    moon = await _post(client, a.token("intake_clerk"), f"{word} 路灯坏了", project="MOON")
    assert set(await _search(client, a.token("intake_clerk"), word)) == {mine["id"], moon["id"]}
    assert await _search(client, b.token("intake_clerk"), word) == [theirs["id"]]
    scoped = a.token("intake_clerk", projects=["MOON"])
    assert await _search(client, scoped, word) == [moon["id"]]


@session_loop
async def test_the_app_role_uses_the_trigram_index(client, resources, intake_settings):
    """Under RLS PostgreSQL never uses an index for ILIKE (not leakproof), so the list query
    goes through intake.search_complaint_ids; as the owner, with the caller's tenant set,
    that function's query plans on complaints_search_trgm."""
    import asyncpg
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    from intake.store.complaints import list_statement
    from propdesk.db.bootstrap import OWNER_ROLE
    from propdesk.db.session import tenant_transaction
    from propdesk.settings import asyncpg_dsn
    from propdesk.tenancy import TenantContext

    company = await onboard(resources, f"V{uuid4().hex[:6].upper()}", "大量物业")
    admin = await asyncpg.connect(asyncpg_dsn(intake_settings.database_url))
    try:
        # Enough rows that a sequential scan loses.
        await admin.execute(
            "INSERT INTO intake.complaints (id, tenant_id, project_id, reference, channel,"
            " received_at, recorded_at, content, created_by)"
            " SELECT gen_random_uuid(), $1, $2, 'BULK-' || g, 'phone',"
            " now() - g * interval '1 s', now(), '楼道灯不亮了 第' || g || '号 ' || md5(g::text),"
            " 'test' FROM generate_series(1, 20000) g",
            company.tenant_id,
            company.projects["SUNRISE"],
        )
        # Beside it, another company's many small projects: complaints per project then
        # look few on average, and reading the caller's project whole looks cheap.
        neighbour = await onboard(resources, f"W{uuid4().hex[:6].upper()}", "小区众多")
        await admin.execute(
            "INSERT INTO intake.projects (id, tenant_id, code, name)"
            " SELECT gen_random_uuid(), $1, 'P' || g, '小区' || g FROM generate_series(1, 3000) g",
            neighbour.tenant_id,
        )
        await admin.execute(
            "INSERT INTO intake.complaints (id, tenant_id, project_id, reference, channel,"
            " received_at, recorded_at, content, created_by)"
            " SELECT gen_random_uuid(), p.tenant_id, p.id, 'SMALL-' || p.code, 'phone',"
            " now(), now(), '楼道灯不亮了', 'test' FROM intake.projects p WHERE p.tenant_id = $1",
            neighbour.tenant_id,
        )
        await admin.execute("ANALYZE intake.complaints")
        await admin.execute("ANALYZE intake.projects")
        async with admin.transaction():
            await admin.execute(f'SET LOCAL ROLE "{OWNER_ROLE}"')
            await admin.execute(
                "SELECT set_config('app.tenant_id', $1, true),"
                " set_config('app.project_ids', '*', true)",
                str(company.tenant_id),
            )
            plan = await admin.fetchval(
                "EXPLAIN (FORMAT JSON) SELECT c.id FROM intake.complaints c"
                " WHERE c.search_text ILIKE $1"
                " AND intake.tenant_visible(c.tenant_id, c.project_id)",
                "%第12345号%",
            )
    finally:
        await admin.close()
    assert "complaints_search_trgm" in json.dumps(plan), plan

    stmt = list_statement(q="第12345号", limit=51)
    sql = str(stmt.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
    ctx = TenantContext.for_tenant(company.tenant_id)
    async with tenant_transaction(resources.sessions, ctx) as s:
        found = list(await s.execute(stmt))
        outer = "\n".join(r[0] for r in await s.execute(text("EXPLAIN VERBOSE " + sql)))
        # The order must not hang on the planner's estimates: as `id IN (SELECT ...)` the
        # caller's project was read whole here (and in CI), and with nested loops priced
        # out it was read whole every time.
        await s.execute(text("SET LOCAL enable_nestloop = off"))
        unlooped = "\n".join(r[0] for r in await s.execute(text("EXPLAIN VERBOSE " + sql)))
    assert [r.reference for r in found] == ["BULK-12345"]
    # The searched ids are fetched by primary key; the tenant's rows are never all read.
    for plan in (outer, unlooped):
        assert "intake.search_complaint_ids(" in plan, plan
        assert "Index Cond: (complaints.id = found.id)" in plan, plan
        indexes = set(re.findall(r"Index (?:Only )?Scan (?:using|on) (complaints\w*)", plan))
        assert indexes == {"complaints_pkey"}, plan
        assert "Seq Scan on intake.complaints" not in plan, plan
