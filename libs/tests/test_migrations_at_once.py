"""Two migrators of one schema at once (replicas starting together, a job run twice): one
waits for the other, then finds nothing left to do; neither fails. Dispatch's history
builds an index CONCURRENTLY (0011), which waits for every older snapshot: a migrator
waiting for the lock inside a transaction made that a deadlock."""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg
import pytest

from propdesk.db.bootstrap import bootstrap
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.testing.databases import fresh_database

# Each migrator is a process of its own, as replicas are (Alembic's context is global to a
# process, so threads would share one).
MIGRATOR = "from propdesk.db.migrations import upgrade; upgrade('dispatch')"


async def _migrate(settings: Settings) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        MIGRATOR,
        env={**os.environ, "PROPDESK_DATABASE_URL": settings.database_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


@pytest.mark.parametrize("migrators", [2, 3])
async def test_migrators_of_one_schema_at_once_all_succeed(
    settings: Settings, migrators: int
) -> None:
    ours = await fresh_database(settings, f"migrate_at_once_{migrators}", ())
    await bootstrap(ours, schemas=("dispatch",))
    results = await asyncio.wait_for(
        asyncio.gather(*(_migrate(ours) for _ in range(migrators))), timeout=120
    )
    assert [out for code, out in results if code != 0] == []
    conn = await asyncpg.connect(asyncpg_dsn(ours.database_url))
    try:
        head = await conn.fetchval("SELECT version_num FROM dispatch.alembic_version")
        valid = await conn.fetchval(
            "SELECT indisvalid FROM pg_index"
            " WHERE indexrelid = to_regclass('dispatch.work_orders_department_code')"
        )
    finally:
        await conn.close()
    assert head == "0011"
    assert valid is True
