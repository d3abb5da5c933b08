"""dispatch: the tenant's own row is written and deleted only in a context of every project

`dispatch.tenants` (the directory's copy of the company, keyed by `id`, no project column)
had the tenant's policy alone: any credential of the tenant, one limited to some projects
too, could change or delete the company's row. It stays visible to every context of its
tenant; inserting, updating and deleting it now needs the tenant's whole scope, which the
directory consumer (the only writer, from `tenant.upserted`) has. As intake 0010 did for
`intake.tenants`.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from propdesk.db.rls import tenant_policy_sql, tenant_wide_delete_sql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "dispatch"


def upgrade() -> None:
    # `dispatch.tenant_writable` was created by 0003 and is kept by every later revision.
    for statement in [
        *tenant_policy_sql(
            S,
            "tenants",
            using=f"{S}.tenant_visible(id, NULL)",
            check=f"{S}.tenant_writable(id, NULL)",
        ),
        *tenant_wide_delete_sql(S, "tenants", tenant_column="id"),
    ]:
        op.execute(statement)


def downgrade() -> None:
    # The policy as 0001 made it (`enable_rls_sql` with no project column).
    visible = f"{S}.tenant_visible(id, NULL::uuid)"
    op.execute(f"DROP POLICY IF EXISTS tenant_wide_delete ON {S}.tenants")
    for statement in tenant_policy_sql(S, "tenants", using=visible, check=visible):
        op.execute(statement)
