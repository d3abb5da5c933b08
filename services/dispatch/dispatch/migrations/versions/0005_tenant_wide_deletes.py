"""dispatch: rows for every project are deleted only in a context of every project

0003 made writing them need the tenant's whole scope, but PostgreSQL checks DELETE
against a policy's USING alone, which shows such rows to a credential of some projects:
a project-limited context could still delete a routing rule or a day off of every
project. A restrictive DELETE policy closes that.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from propdesk.db.rls import tenant_wide_deletes_sql, tenant_wide_deletes_undo_sql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ["departments", "routing_rules", "calendar_days"]


def upgrade() -> None:
    for statement in tenant_wide_deletes_sql("dispatch", TABLES):
        op.execute(statement)


def downgrade() -> None:
    for statement in tenant_wide_deletes_undo_sql("dispatch", TABLES):
        op.execute(statement)
