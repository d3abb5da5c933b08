"""dispatch: one open dead letter per consumer and event

A process killed, or a terminate lost, between a dead letter's commit and the terminate
brought the message back, and it was dead-lettered a second time. A unique index on the
open dead letters (consumer, event id) now makes the second insert do nothing (the
consumer inserts `ON CONFLICT DO NOTHING`). Copies already stored are removed first: the
first of each event's open dead letters stays.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from propdesk.bus.tables import dead_letters_once_sql, dead_letters_once_undo_sql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in dead_letters_once_sql("dispatch"):
        op.execute(statement)


def downgrade() -> None:
    for statement in dead_letters_once_undo_sql("dispatch"):
        op.execute(statement)
