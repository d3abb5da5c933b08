"""How long the bus tables keep what is done with: published outbox rows and the inbox.

- **Outbox**: published rows older than `outbox_retention_days` (14) go. Until then they
  can be re-published for a time range (`python -m propdesk.bus.cli republish`).
- **Inbox**: a consumer's record of the events it applied is what makes a second delivery
  harmless, so it must outlive every way an event can come again: JetStream redelivers
  within the stream's `max_age` (a durable re-created from the start of the stream reads
  all of it), the outbox re-publishes within its retention, and a dead letter replay
  (`propdesk.bus.dead_letters`) refuses dead letters older than the inbox's retention.
  `Settings` therefore requires `inbox_retention_days` to exceed both. Rows older than it
  go, a batch per transaction, so the deletes never hold many locks nor run long.

Both run hourly in every service process (`propdesk.service.runner`) and on demand
(`python -m propdesk.bus.cli prune SCHEMA`), in the system context, which the policies of
both tables admit for this (for the inbox: reading and deleting, not `FOR UPDATE`, so a
batch's rows are not locked ahead). Every replica may run them at once: a row another
replica deleted first is waited for, briefly, and counted by that one.
"""

from __future__ import annotations

import asyncpg

from propdesk.settings import Settings, asyncpg_dsn

# Inbox rows deleted per transaction.
INBOX_PRUNE_BATCH = 5_000


async def _system_connection(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(
        asyncpg_dsn(settings.app_db_url), server_settings={"app.system": "on"}
    )


async def prune_published(settings: Settings, schema: str) -> int:
    """Delete published outbox rows older than the retention period. Returns rows deleted."""
    conn = await _system_connection(settings)
    try:
        status = await conn.execute(
            f'DELETE FROM "{schema}".outbox WHERE published_at IS NOT NULL'
            " AND published_at < now() - make_interval(secs => $1)",
            settings.outbox_retention_days * 86400,
        )
        return int(status.split()[-1])
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
    conn = await _system_connection(settings)
    deleted = 0
    try:
        while True:
            status = await conn.execute(statement, settings.inbox_retention_days * 86400, batch)
            n = int(status.split()[-1])
            deleted += n
            if n < batch:
                return deleted
    finally:
        await conn.close()
