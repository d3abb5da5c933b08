"""sla: the system context may prune the inbox; open dead letters indexed

The inbox (one row per event a consumer applied) was visible to its tenant only, so
nothing could remove rows every consumer handled long ago, and it grew for ever. Two
policies let the platform's system context read and delete its rows (not insert or change
them); the hourly `inbox-prune` job and `python -m propdesk.bus.cli prune` remove rows
older than `PROPDESK_INBOX_RETENTION_DAYS`. And an index of the open dead letters, which
every relay now counts every few seconds (`propdesk_bus_dead_letters_open`).

Revision ID: sla_0004
Revises: sla_0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from propdesk.bus.tables import (
    inbox_pruning_sql,
    inbox_pruning_undo_sql,
    open_dead_letters_index_sql,
    open_dead_letters_index_undo_sql,
)

revision: str = "sla_0004"
down_revision: str | None = "sla_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in [*inbox_pruning_sql("sla"), *open_dead_letters_index_sql("sla")]:
        op.execute(statement)


def downgrade() -> None:
    for statement in [
        *open_dead_letters_index_undo_sql("sla"),
        *inbox_pruning_undo_sql("sla"),
    ]:
        op.execute(statement)
