"""intake: departments for every project are deleted only in a context of every project

As dispatch 0005: 0006's WITH CHECK does not govern DELETE, which PostgreSQL checks
against USING alone; a restrictive DELETE policy does.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from propdesk.db.rls import tenant_wide_deletes_sql, tenant_wide_deletes_undo_sql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ["departments"]


def upgrade() -> None:
    for statement in tenant_wide_deletes_sql("intake", TABLES):
        op.execute(statement)


def downgrade() -> None:
    for statement in tenant_wide_deletes_undo_sql("intake", TABLES):
        op.execute(statement)
