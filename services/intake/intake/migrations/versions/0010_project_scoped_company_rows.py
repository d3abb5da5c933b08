"""intake: staff, API keys and the tenant's own rows are scoped by the database too

Until now their policy was the tenant's alone (they have no project column), and a
credential limited to some projects was kept to its own by the application: a query that
forgot the filter would have shown it every member of staff and every API key of the
company. Now:

- `staff`: visible when the member serves one of the context's projects, or every project;
  written (onboarding) and deleted only in a context of every project.
- `api_keys`: visible, writable and revocable when limited to projects all inside the
  context's scope; a key of the whole company only in a context of every project.
- `tenants` (the classification rules live there) and `rules_changes`: still visible to
  every credential of the tenant (the rules apply to its projects too), written and
  deleted only in a context of every project.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from propdesk.db.rls import (
    project_list_functions_sql,
    project_list_functions_undo_sql,
    tenant_policy_sql,
    tenant_wide_delete_sql,
)

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "intake"
TENANT_WIDE = [("staff", "tenant_id"), ("tenants", "id"), ("rules_changes", "tenant_id")]


def _statements() -> list[str]:
    out = project_list_functions_sql(S)
    out += tenant_policy_sql(
        S,
        "staff",
        using=f"{S}.serves_scope(tenant_id, project_ids)",
        check=f"{S}.tenant_writable(tenant_id, NULL)",
    )
    out += tenant_policy_sql(
        S,
        "api_keys",
        using=f"{S}.within_scope(tenant_id, project_ids)",
        check=f"{S}.within_scope(tenant_id, project_ids)",
    )
    out += tenant_policy_sql(
        S, "tenants", using=f"{S}.tenant_visible(id, NULL)", check=f"{S}.tenant_writable(id, NULL)"
    )
    out += tenant_policy_sql(
        S,
        "rules_changes",
        using=f"{S}.tenant_visible(tenant_id, NULL)",
        check=f"{S}.tenant_writable(tenant_id, NULL)",
    )
    for table, column in TENANT_WIDE:
        out += tenant_wide_delete_sql(S, table, tenant_column=column)
    return out


def upgrade() -> None:
    for statement in _statements():
        op.execute(statement)


def downgrade() -> None:
    for table, _ in TENANT_WIDE:
        op.execute(f"DROP POLICY IF EXISTS tenant_wide_delete ON {S}.{table}")
    for table, column in [("staff", "tenant_id"), ("api_keys", "tenant_id"), *TENANT_WIDE[1:]]:
        visible = f"{S}.tenant_visible({column}, NULL)"
        for statement in tenant_policy_sql(S, table, using=visible, check=visible):
            op.execute(statement)
    for statement in project_list_functions_undo_sql(S):
        op.execute(statement)
