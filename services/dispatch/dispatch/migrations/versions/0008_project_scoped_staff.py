"""dispatch: staff are scoped by the database to the projects they serve

`dispatch.staff` had the tenant's policy alone (a member lists projects, it has no project
column), and a credential limited to some projects was kept to its own staff by the
application. Now a member is visible, and writable (the round-robin mark of an
assignment), in a context whose scope meets the projects they serve, or when they serve
every project (an empty list).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from propdesk.db.rls import (
    project_list_functions_sql,
    project_list_functions_undo_sql,
    tenant_policy_sql,
)

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "dispatch"


def upgrade() -> None:
    serves = f"{S}.serves_scope(tenant_id, project_ids)"
    for statement in [
        *project_list_functions_sql(S),
        *tenant_policy_sql(S, "staff", using=serves, check=serves),
    ]:
        op.execute(statement)


def downgrade() -> None:
    visible = f"{S}.tenant_visible(tenant_id, NULL)"
    for statement in [
        *tenant_policy_sql(S, "staff", using=visible, check=visible),
        *project_list_functions_undo_sql(S),
    ]:
        op.execute(statement)
