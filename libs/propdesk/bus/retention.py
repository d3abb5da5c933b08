"""How long the bus tables keep what is done with: published outbox rows and the inbox.

- **Outbox**: published rows older than `outbox_retention_days` (14) go. Until then they
  can be re-published for a time range (`python -m propdesk.bus.cli republish`).
- **Inbox**: a consumer's record of the events it applied is what makes a second delivery
  harmless, so it must outlive every way an event can come again: JetStream redelivers
  within the stream's `max_age` (a durable re-created from the start of the stream reads
  all of it); the outbox re-publishes within its retention, and the copy then stays in
  the stream for its max age; a dead letter replay (`propdesk.bus.dead_letters`) takes
  only events young enough for the same reason. `Settings` therefore requires
  `inbox_retention_days` to exceed `outbox_retention_days + stream_max_age_days`. Rows
  older than it go, a batch per transaction, so the deletes never hold many locks nor
  run long. An operator pruning by hand must run with the services' settings (their
  environment): the check is of the settings of the process that prunes.

Both run hourly in every service process (`propdesk.service.runner`) and on demand
(`python -m propdesk.bus.cli prune SCHEMA`), in the system context, which the policies of
both tables admit for this (for the inbox: reading and deleting, not `FOR UPDATE`, so a
batch's rows are not locked ahead). Every replica may run them at once: a row another
replica deleted first is waited for, briefly, and counted by that one.
"""

from __future__ import annotations

import asyncpg

from propdesk.db.session import connection_transaction
from propdesk.settings import Settings, asyncpg_dsn
from propdesk.tenancy import system_context

# Inbox rows deleted per transaction.
INBOX_PRUNE_BATCH = 5_000


async def _system_execute(conn: asyncpg.Connection, statement: str, *args: object) -> int:
    """One statement in a transaction of its own in the system context; rows it changed."""
    async with connection_transaction(conn, system_context("bus:prune")):
        status = await conn.execute(statement, *args)
    return int(status.split()[-1])


async def prune_published(settings: Settings, schema: str) -> int:
    """Delete published outbox rows older than the retention period. Returns rows deleted."""
    conn = await asyncpg.connect(asyncpg_dsn(settings.app_db_url))
    try:
        return await _system_execute(
            conn,
            f'DELETE FROM "{schema}".outbox WHERE published_at IS NOT NULL'
            " AND published_at < now() - make_interval(secs => $1)",
            settings.outbox_retention_days * 86400,
        )
    finally:
        await conn.close()


async def prune_inbox(settings: Settings, schema: str, *, batch: int = INBOX_PRUNE_BATCH) -> int:
    """Delete inbox rows handled longer ago than `inbox_retention_days`, `batch` rows per
    transaction (by the `inbox_handled_at` index). Returns rows deleted."""
    s = f'"{schema}"'
    statement = (
        f"DELETE FROM {s}.inbox WHERE (consumer, event_id) IN"
        f" (SELECT consumer, event_id FROM {s}.inbox"
        " WHERE handled_at < now() - make_interval(secs => $1)"
        " ORDER BY handled_at LIMIT $2)"
    )
    conn = await asyncpg.connect(asyncpg_dsn(settings.app_db_url))
    deleted = 0
    try:
        while True:
            n = await _system_execute(conn, statement, settings.inbox_retention_days * 86400, batch)
            deleted += n
            if n < batch:
                return deleted
    finally:
        await conn.close()
