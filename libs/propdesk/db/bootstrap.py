"""Database roles and schemas, created idempotently before migrations.

- `propdesk_owner` (NOLOGIN) owns every schema, table and function. Migrations run as
  the admin login with `SET ROLE propdesk_owner`.
- `propdesk_app` (LOGIN) is what services connect as: NOSUPERUSER, NOBYPASSRLS, owns
  nothing, and gets only DML on the service schemas through default privileges. With
  FORCE ROW LEVEL SECURITY on every tenant table, it sees only the context's rows.
"""

from __future__ import annotations

import asyncpg

from propdesk.settings import SERVICE_NAMES, Settings, asyncpg_dsn

OWNER_ROLE = "propdesk_owner"


async def bootstrap(settings: Settings, schemas: tuple[str, ...] = SERVICE_NAMES) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url))
    try:
        await _bootstrap(conn, settings, schemas)
    finally:
        await conn.close()


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe role or schema name {name!r}")
    return f'"{name}"'


async def _bootstrap(
    conn: asyncpg.Connection, settings: Settings, schemas: tuple[str, ...]
) -> None:
    app = _ident(settings.app_db_user)
    owner = _ident(OWNER_ROLE)
    # Serialise concurrent bootstraps (several test workers, several replicas' init jobs).
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('propdesk.bootstrap'))")
        roles = {r["rolname"] for r in await conn.fetch("SELECT rolname FROM pg_roles")}
        if OWNER_ROLE not in roles:
            await conn.execute(f"CREATE ROLE {owner} NOLOGIN")
        if settings.app_db_user not in roles:
            await conn.execute(
                f"CREATE ROLE {app} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
            )
        # Password as a literal: utility statements take no bind parameters.
        pw = settings.app_db_password.replace("'", "''")
        await conn.execute(f"ALTER ROLE {app} WITH LOGIN NOBYPASSRLS PASSWORD '{pw}'")
        await conn.execute(f"GRANT {owner} TO CURRENT_USER")
        db = await conn.fetchval("SELECT current_database()")
        await conn.execute(f"GRANT CONNECT ON DATABASE {_ident(db)} TO {app}")
        await conn.execute(f"REVOKE CREATE ON SCHEMA public FROM {app}")
        # Trigram indexes for free-text search in Chinese and English (ILIKE '%…%').
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
        for name in schemas:
            s = _ident(name)
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {owner}")
            await conn.execute(f"GRANT USAGE ON SCHEMA {s} TO {app}")
            await conn.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {s}"
                f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app}"
            )
            await conn.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {s}"
                f" GRANT USAGE, SELECT ON SEQUENCES TO {app}"
            )
            await conn.execute(
                f"ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {s}"
                f" GRANT EXECUTE ON FUNCTIONS TO {app}"
            )
