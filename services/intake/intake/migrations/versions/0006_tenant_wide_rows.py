"""intake: departments for every project are written only in a context of every project

As dispatch 0003: the tenant policy's WITH CHECK let a credential limited to some projects
write a department without a project (one of every project). It stays visible to such a
credential; writing it needs the tenant's whole scope (onboarding already asks for it).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from propdesk.db.rls import tenant_wide_writes_sql, tenant_wide_writes_undo_sql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ["departments"]


def upgrade() -> None:
    for statement in tenant_wide_writes_sql("intake", TABLES):
        op.execute(statement)


def downgrade() -> None:
    for statement in tenant_wide_writes_undo_sql("intake", TABLES):
        op.execute(statement)
