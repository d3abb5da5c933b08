"""reporting schema: bus tables, projects directory, daily activity read model

Revision ID: reporting_0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

from propdesk.bus.tables import bus_tables_sql
from propdesk.db.rls import enable_rls_sql

revision: str = "reporting_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in bus_tables_sql("reporting"):
        op.execute(statement)
    op.execute(
        """
        CREATE TABLE reporting.projects (
            tenant_id  uuid NOT NULL,
            project_id uuid PRIMARY KEY,
            code       text NOT NULL,
            name       text NOT NULL,
            time_zone  text NOT NULL
        )"""
    )
    for statement in enable_rls_sql("reporting", "projects"):
        op.execute(statement)
    op.execute(
        """
        CREATE TABLE reporting.daily_activity (
            tenant_id  uuid NOT NULL,
            project_id uuid NOT NULL,
            day        date NOT NULL,
            event_type text NOT NULL,
            count      integer NOT NULL,
            PRIMARY KEY (tenant_id, project_id, day, event_type)
        )"""
    )
    for statement in enable_rls_sql("reporting", "daily_activity"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE reporting.daily_activity, reporting.projects")
    op.execute("DROP TABLE reporting.dead_letters, reporting.inbox, reporting.outbox")
