"""Rows that list their projects (staff, API keys) and the tenant's own rows (its
classification rules and their history, dispatch's copy of the company) are scoped by
PostgreSQL, not only by the application: these statements run as the services' role with
no filter of their own, the way a query that forgot one would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import asyncpg
import pytest
from alembic import command

from intake import idempotency_cache
from propdesk.db.bootstrap import bootstrap
from propdesk.db.migrations import alembic_config, upgrade
from propdesk.db.session import connection_transaction
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.tenancy.context import TenantContext
from propdesk.testing.admin_reads import admin_fetch
from propdesk.testing.databases import fresh_database

A, B, C = uuid4(), uuid4(), uuid4()  # three projects of one company
TENANT = uuid4()
OTHER_TENANT = uuid4()

# code -> projects served (empty: every project)
STAFF = {"of-a": [A], "of-a-b": [A, B], "of-c": [C], "everywhere": []}
# key id -> projects (None: the whole company)
KEYS = {"key-a": [A], "key-a-b": [A, B], "key-c": [C], "key-company": None}


@pytest.fixture(scope="module")
async def seeded(settings: Settings) -> AsyncIterator[None]:
    """Seeded as the administrator (who is not bound by RLS), for two tenants."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        for tenant in (TENANT, OTHER_TENANT):
            code = f"scope-{tenant.hex[:12]}"
            await conn.execute(
                "INSERT INTO intake.tenants (id, code, name) VALUES ($1, $2, $2)", tenant, code
            )
            await conn.execute(
                "INSERT INTO dispatch.tenants (id, code, name) VALUES ($1, $2, $2)", tenant, code
            )
            await conn.execute(
                "INSERT INTO intake.rules_changes (tenant_id, actor, previous, rules)"
                " VALUES ($1, 'seed', '{}', '{}')",
                tenant,
            )
            for staff_code, projects in STAFF.items():
                await conn.execute(
                    "INSERT INTO intake.staff (id, tenant_id, code, name, project_ids)"
                    " VALUES ($1, $2, $3, $3, $4)",
                    uuid4(),
                    tenant,
                    staff_code,
                    projects,
                )
                await conn.execute(
                    "INSERT INTO dispatch.staff (id, tenant_id, name, project_ids)"
                    " VALUES ($1, $2, $3, $4)",
                    uuid4(),
                    tenant,
                    staff_code,
                    projects,
                )
            for key_id, projects in KEYS.items():
                await conn.execute(
                    "INSERT INTO intake.api_keys (id, tenant_id, key_id, key_hash, name,"
                    " project_ids, created_by) VALUES ($1, $2, $3, '\\x00', $4, $5, 'seed')",
                    uuid4(),
                    tenant,
                    f"{key_id}-{tenant.hex[:12]}",
                    key_id,
                    projects,
                )
        yield
    finally:
        for tenant in (TENANT, OTHER_TENANT):
            await conn.execute("DELETE FROM intake.api_keys WHERE tenant_id = $1", tenant)
            await conn.execute("DELETE FROM intake.staff WHERE tenant_id = $1", tenant)
            await conn.execute("DELETE FROM dispatch.staff WHERE tenant_id = $1", tenant)
            await conn.execute("DELETE FROM dispatch.tenants WHERE id = $1", tenant)
            # rules_changes is append-only even for the administrator; the rows stay,
            # under tenants that no credential will ever name.
        await conn.close()


@pytest.fixture
async def app_conn(settings: Settings, seeded: None) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(asyncpg_dsn(settings.app_db_url))
    try:
        yield conn
    finally:
        await conn.close()


def scoped(*projects: UUID) -> TenantContext:
    return TenantContext.for_tenant(TENANT, set(projects), actor="scope-test")


EVERY = TenantContext.for_tenant(TENANT, actor="scope-test")


async def names(conn: asyncpg.Connection, ctx: TenantContext, sql: str) -> set[str]:
    async with connection_transaction(conn, ctx):
        return {r[0] for r in await conn.fetch(sql)}


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (scoped(A), {"of-a", "of-a-b", "everywhere"}),
        (scoped(B), {"of-a-b", "everywhere"}),
        (scoped(C), {"of-c", "everywhere"}),
        (EVERY, set(STAFF)),
    ],
    ids=["A", "B", "C", "every project"],
)
@pytest.mark.parametrize("table", ["intake.staff", "dispatch.staff"])
async def test_staff_are_seen_by_the_projects_they_serve(
    app_conn: asyncpg.Connection, table: str, ctx: TenantContext, expected: set[str]
) -> None:
    column = "code" if table == "intake.staff" else "name"
    assert await names(app_conn, ctx, f"SELECT {column} FROM {table}") == expected


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (scoped(A), {"key-a"}),
        (scoped(A, B), {"key-a", "key-a-b"}),
        (scoped(C), {"key-c"}),
        (EVERY, set(KEYS)),
    ],
    ids=["A", "A+B", "C", "every project"],
)
async def test_api_keys_are_seen_only_within_the_scope_they_are_limited_to(
    app_conn: asyncpg.Connection, ctx: TenantContext, expected: set[str]
) -> None:
    assert await names(app_conn, ctx, "SELECT name FROM intake.api_keys") == expected


async def test_a_second_tenant_sees_none_of_them(app_conn: asyncpg.Connection) -> None:
    """The other company has the same staff and keys under the same names: what it sees,
    with every project of its own in scope, is its own rows and nothing of the first's."""
    other = TenantContext.for_tenant(OTHER_TENANT, actor="scope-test")
    for table, tenant_column in (
        ("intake.staff", "tenant_id"),
        ("dispatch.staff", "tenant_id"),
        ("intake.api_keys", "tenant_id"),
        ("intake.rules_changes", "tenant_id"),
        ("intake.tenants", "id"),
        ("dispatch.tenants", "id"),
    ):
        seen = await names(app_conn, other, f"SELECT {tenant_column}::text FROM {table}")
        assert seen == {str(OTHER_TENANT)}, table


class _RolledBack(Exception):
    def __init__(self, status: str) -> None:
        self.status = status


async def attempt(conn: asyncpg.Connection, ctx: TenantContext, sql: str, *args: object) -> str:
    """Run one write under `ctx` and roll it back: the command status PostgreSQL gave."""
    try:
        async with connection_transaction(conn, ctx):
            raise _RolledBack(await conn.execute(sql, *args))
    except _RolledBack as done:
        return done.status


async def refused(conn: asyncpg.Connection, ctx: TenantContext, sql: str, *args: object) -> bool:
    """True when PostgreSQL refuses the write as a row-level security violation."""
    try:
        await attempt(conn, ctx, sql, *args)
    except asyncpg.InsufficientPrivilegeError:
        return True
    return False


async def test_a_project_scope_cannot_issue_a_key_beyond_itself(
    app_conn: asyncpg.Connection,
) -> None:
    insert = (
        "INSERT INTO intake.api_keys (id, tenant_id, key_id, key_hash, name, project_ids,"
        " created_by) VALUES ($1, $2, $3, '\\x00', 'new', $4, 'scope-test')"
    )

    def args(projects: list[UUID] | None) -> tuple[object, ...]:
        return (uuid4(), TENANT, f"new-{uuid4().hex[:16]}", projects)

    assert not await refused(app_conn, scoped(A), insert, *args([A]))
    assert await refused(app_conn, scoped(A), insert, *args([A, B]))
    assert await refused(app_conn, scoped(A), insert, *args(None))
    assert await refused(app_conn, scoped(A), insert, *args([]))
    assert not await refused(app_conn, EVERY, insert, *args(None))
    # Nor widen one it may see.
    widen = "UPDATE intake.api_keys SET project_ids = $1 WHERE name = 'key-a'"
    assert await refused(app_conn, scoped(A), widen, [A, C])


async def test_staff_and_rules_are_written_only_for_every_project(
    app_conn: asyncpg.Connection,
) -> None:
    add_staff = (
        "INSERT INTO intake.staff (id, tenant_id, code, name, project_ids)"
        " VALUES ($1, $2, $3, $3, $4)"
    )
    assert await refused(app_conn, scoped(A), add_staff, uuid4(), TENANT, "new-a", [A])
    assert not await refused(app_conn, EVERY, add_staff, uuid4(), TENANT, "new-a", [A])
    for sql in (
        "UPDATE intake.staff SET name = 'renamed' WHERE code = 'of-a'",
        "UPDATE intake.tenants SET rules = '{}' WHERE id = $1",
        "INSERT INTO intake.rules_changes (tenant_id, actor, previous, rules)"
        " VALUES ($1, 'scope-test', '{}', '{}')",
    ):
        params = (TENANT,) if "$1" in sql else ()
        assert await refused(app_conn, scoped(A), sql, *params), sql
    assert not await refused(
        app_conn, EVERY, "UPDATE intake.tenants SET rules = '{}' WHERE id = $1", TENANT
    )
    # A DELETE the policies do not allow finds no row (PostgreSQL filters, it does not
    # raise); in a context of every project the same statement finds the member.
    delete = "DELETE FROM intake.staff WHERE code = 'of-a' AND tenant_id = $1"
    assert await attempt(app_conn, scoped(A), delete, TENANT) == "DELETE 0"
    assert await attempt(app_conn, EVERY, delete, TENANT) == "DELETE 1"


# The directory consumer's statement (`dispatch.store.directory.upsert_tenant`), which runs
# under the event's tenant with every project in scope.
UPSERT_DISPATCH_TENANT = (
    "INSERT INTO dispatch.tenants (id, code, name, settings) VALUES ($1, $2, $3, '{}')"
    " ON CONFLICT (id) DO UPDATE SET code = excluded.code, name = excluded.name,"
    " settings = excluded.settings, updated_at = now()"
)


async def test_dispatch_writes_the_tenant_row_only_for_every_project(
    app_conn: asyncpg.Connection,
) -> None:
    """`dispatch.tenants` is seen by every credential of its company; inserting, changing
    or deleting it needs a context of every project, as the directory consumer has."""
    code = f"scope-{TENANT.hex[:12]}"
    for ctx in (scoped(A), scoped(C), scoped(A, B), EVERY):
        assert await names(app_conn, ctx, "SELECT code FROM dispatch.tenants") == {code}
    rename = "UPDATE dispatch.tenants SET name = 'renamed' WHERE id = $1"
    delete = "DELETE FROM dispatch.tenants WHERE id = $1"
    for ctx in (scoped(A), scoped(A, B, C)):
        assert await refused(app_conn, ctx, rename, TENANT)
        assert await refused(app_conn, ctx, UPSERT_DISPATCH_TENANT, TENANT, code, "renamed")
        # DELETE is checked against what the policies let it delete: nothing, no error.
        assert await attempt(app_conn, ctx, delete, TENANT) == "DELETE 0"
    assert await attempt(app_conn, EVERY, rename, TENANT) == "UPDATE 1"
    upserted = await attempt(app_conn, EVERY, UPSERT_DISPATCH_TENANT, TENANT, code, "renamed")
    assert upserted == "INSERT 0 1"
    assert await attempt(app_conn, EVERY, delete, TENANT) == "DELETE 1"

    # A company dispatch has not heard of yet: its first tenant.upserted inserts the row.
    new = uuid4()
    insert = "INSERT INTO dispatch.tenants (id, code, name) VALUES ($1, 'new', 'new')"
    limited = TenantContext.for_tenant(new, {A}, actor="scope-test")
    whole = TenantContext.for_tenant(new, actor="scope-test")
    assert await refused(app_conn, limited, insert, new)
    assert await refused(app_conn, limited, UPSERT_DISPATCH_TENANT, new, "new", "new")
    assert await attempt(app_conn, whole, insert, new) == "INSERT 0 1"
    assert await attempt(app_conn, whole, UPSERT_DISPATCH_TENANT, new, "new", "new") == (
        "INSERT 0 1"
    )

    # Another company, with every project of its own, neither sees nor touches the row.
    other = TenantContext.for_tenant(OTHER_TENANT, actor="scope-test")
    assert await attempt(app_conn, other, rename, TENANT) == "UPDATE 0"
    assert await attempt(app_conn, other, delete, TENANT) == "DELETE 0"
    assert await refused(app_conn, other, UPSERT_DISPATCH_TENANT, TENANT, code, "taken")
    assert await names(app_conn, EVERY, "SELECT name FROM dispatch.tenants") == {code}


async def test_an_assignment_marks_the_staff_its_scope_sees(
    app_conn: asyncpg.Connection,
) -> None:
    """Dispatch's round-robin mark runs in the scope of whoever assigns: a member it sees
    (of its project, or of every project) can be marked; one of another project is not
    even there to mark."""
    mark = "UPDATE dispatch.staff SET last_assigned_at = now() WHERE name = $1"
    assert await attempt(app_conn, scoped(A), mark, "of-a") == "UPDATE 1"
    assert await attempt(app_conn, scoped(A), mark, "everywhere") == "UPDATE 1"
    assert await attempt(app_conn, scoped(A), mark, "of-c") == "UPDATE 0"
    move = "UPDATE dispatch.staff SET project_ids = $2 WHERE name = $1"
    assert await refused(app_conn, scoped(A), move, "of-a", [C])


def caller(actor: str, *projects: UUID) -> TenantContext:
    return TenantContext.for_tenant(TENANT, set(projects) or None, actor=actor)


async def test_idempotency_keys_are_seen_by_their_caller_alone(
    settings: Settings, app_conn: asyncpg.Connection
) -> None:
    """Each stored answer is its caller's (the credential and its project scope): the
    database computes the caller's namespace as intake does, and shows nothing else."""
    callers = {
        "call-center@A": caller("apikey:cc", A),
        "call-center@A+B": caller("apikey:cc", A, B),
        "call-center@every": caller("apikey:cc"),
        "other@A": caller("apikey:other", A),
        # A token's subject may be empty (the actor is then ""), or hold any character.
        "nobody@every": caller(""),
        "odd@A+B": caller("staff:王, 'x'\\y@z", B, A),
    }
    key = f"scope-{uuid4().hex}"
    admin = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        for label, ctx in callers.items():
            await admin.execute(
                "INSERT INTO intake.idempotency_keys (tenant_id, namespace, key, request_hash,"
                " status_code, response) VALUES ($1, $2, $3, '\\x00', 201, $4)",
                TENANT,
                idempotency_cache.namespace(ctx),
                key,
                f'{{"label": "{label}"}}',
            )
        for label, ctx in callers.items():
            seen = await names(
                app_conn,
                ctx,
                f"SELECT response->>'label' FROM intake.idempotency_keys WHERE key = '{key}'",
            )
            assert seen == {label}
        write = (
            "INSERT INTO intake.idempotency_keys (tenant_id, namespace, key, request_hash)"
            " VALUES ($1, $2, $3, '\\x00')"
        )
        own, others = callers["call-center@A"], callers["other@A"]
        assert not await refused(
            app_conn, own, write, TENANT, idempotency_cache.namespace(own), f"{key}-2"
        )
        assert await refused(
            app_conn, own, write, TENANT, idempotency_cache.namespace(others), f"{key}-2"
        )
    finally:
        await admin.execute("DELETE FROM intake.idempotency_keys WHERE key = $1", key)
        await admin.close()


async def _schema_security(ours: Settings) -> dict[str, object]:
    """Every policy of the intake and dispatch schemas (all its columns) and the source of
    every function they define."""
    policies = await admin_fetch(
        ours,
        "SELECT schemaname, tablename, policyname, permissive, roles::text[] AS roles, cmd,"
        " qual, with_check FROM pg_policies WHERE schemaname IN ('intake', 'dispatch')",
    )
    functions = await admin_fetch(
        ours,
        "SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid)"
        " || ')' AS name, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname IN ('intake', 'dispatch')",
    )
    return {
        **{
            f"{r['schemaname']}.{r['tablename']}:{r['policyname']}": tuple(r.values())
            for r in policies
        },
        **{r["name"]: r["prosrc"] for r in functions},
    }


async def test_the_scope_migrations_go_down_and_up_again(settings: Settings) -> None:
    """Downgraded from head to intake 0009 and dispatch 0007 (through intake 0011 and 0010,
    dispatch 0009 and 0008), the two schemas' policies and functions are exactly those of a
    database only ever migrated to 0009 and 0007; upgraded again, exactly those of head."""
    ours = await fresh_database(settings, "project_scope_round_trip", ("intake", "dispatch"))
    at_head = await _schema_security(ours)
    assert "serves_scope" in str(at_head["intake.staff:tenant_isolation"])
    assert "caller_namespace" in str(at_head["intake.idempotency_keys:tenant_isolation"])
    assert "serves_scope" in str(at_head["dispatch.staff:tenant_isolation"])
    assert "tenant_writable" in str(at_head["dispatch.tenants:tenant_isolation"])
    assert "dispatch.tenants:tenant_wide_delete" in at_head

    before = await fresh_database(settings, "project_scope_before", ())
    await bootstrap(before, schemas=("intake", "dispatch"))
    await asyncio.to_thread(upgrade, "intake", before, "0009")
    await asyncio.to_thread(upgrade, "dispatch", before, "0007")
    released = await _schema_security(before)
    assert released != at_head

    await asyncio.to_thread(command.downgrade, alembic_config("intake", ours), "0009")
    await asyncio.to_thread(command.downgrade, alembic_config("dispatch", ours), "0007")
    assert await _schema_security(ours) == released

    for service in ("intake", "dispatch"):
        await asyncio.to_thread(upgrade, service, ours)
    assert await _schema_security(ours) == at_head
