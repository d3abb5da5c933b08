"""sla schema: outbox, inbox and dead letters

Revision ID: sla_0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

from propdesk.bus.tables import bus_tables_sql

revision: str = "sla_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in bus_tables_sql("sla"):
        op.execute(statement)


def downgrade() -> None:
    op.execute('DROP TABLE IF EXISTS "sla".dead_letters, "sla".inbox, "sla".outbox')
