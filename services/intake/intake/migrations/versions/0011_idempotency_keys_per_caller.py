"""intake: a caller's Idempotency-Keys are visible to that caller alone, in the database

0005 gave each key its caller's namespace (`intake.idempotency_cache.namespace`: the actor
and the digest of its project scope), and every query names it; the table's policy was
still the tenant's, so a query that forgot the namespace would have shown a credential
limited to one project the stored answers (complaints of other projects) of every caller
of the company. The policy now compares the row's namespace with the one the transaction's
context computes (`intake.caller_namespace()`, the same digest in SQL). The hourly sweep
keeps the system context; rows of the empty namespace (0005's unknown callers) are seen
by nobody else.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

from propdesk.db.rls import tenant_policy_sql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = "intake"

# `idempotency_cache.namespace` in SQL: `app.actor` as it is (an empty actor too: a token
# may have an empty subject), and `app.project_ids` is already the sorted, comma-joined
# project ids that `scope_digest` hashes (`TenantContext.settings`). No project scope (no
# context, or an empty one that sees no project), no namespace: NULL equals nothing.
CALLER_NAMESPACE = f"""
    CREATE OR REPLACE FUNCTION {S}.caller_namespace() RETURNS text
    LANGUAGE sql STABLE PARALLEL SAFE AS $$
      SELECT coalesce(current_setting('app.actor', true), '') || '@' ||
        CASE coalesce(current_setting('app.project_ids', true), '')
          WHEN '*' THEN '*'
          WHEN '' THEN NULL
          ELSE substr(encode(sha256(convert_to(
                 current_setting('app.project_ids', true), 'UTF8')), 'hex'), 1, 16)
        END
    $$"""

OWN = (
    f"({S}.system_context() OR ({S}.tenant_visible(tenant_id, NULL)"
    f" AND namespace = {S}.caller_namespace()))"
)
TENANTS = f"({S}.system_context() OR {S}.tenant_visible(tenant_id, NULL))"


def upgrade() -> None:
    for statement in [
        CALLER_NAMESPACE,
        *tenant_policy_sql(S, "idempotency_keys", using=OWN, check=OWN),
    ]:
        op.execute(statement)


def downgrade() -> None:
    for statement in tenant_policy_sql(S, "idempotency_keys", using=TENANTS, check=TENANTS):
        op.execute(statement)
    op.execute(f"DROP FUNCTION IF EXISTS {S}.caller_namespace()")
