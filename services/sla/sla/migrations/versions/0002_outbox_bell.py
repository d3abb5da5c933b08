"""sla: the outbox trigger leaves out NOTIFY for processes that ring their own relay

Revision ID: sla_0002
Revises: sla_0001
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from propdesk.bus.tables import outbox_bell_sql, outbox_notify_v1_sql

revision: str = "sla_0002"
down_revision: str | None = "sla_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in outbox_bell_sql("sla"):
        op.execute(statement)


def downgrade() -> None:
    for statement in outbox_notify_v1_sql("sla"):
        op.execute(statement)
