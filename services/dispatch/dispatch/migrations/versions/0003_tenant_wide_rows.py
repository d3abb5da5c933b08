"""dispatch: rows for every project (departments, routing rules, calendar days) are
written only in a context of every project

The tenant policy's WITH CHECK let a credential limited to some projects write rows
without a project, which apply to all of the tenant's projects: a director of one project
could add, change or remove a routing rule, or a day off, for every project. Such rows
stay visible to it (they apply to its projects too); writing them now needs the tenant's
whole scope, which the directory consumer and a company-wide credential have.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from propdesk.db.rls import tenant_wide_writes_sql, tenant_wide_writes_undo_sql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ["departments", "routing_rules", "calendar_days"]


def upgrade() -> None:
    for statement in tenant_wide_writes_sql("dispatch", TABLES):
        op.execute(statement)


def downgrade() -> None:
    for statement in tenant_wide_writes_undo_sql("dispatch", TABLES):
        op.execute(statement)
