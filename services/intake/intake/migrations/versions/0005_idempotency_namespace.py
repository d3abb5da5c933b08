"""intake: Idempotency-Keys per credential (namespace), not per tenant

A key was unique per tenant, so a replay compared tenant, key and body only: a caller
limited to one project replaying another caller's key got that caller's complaint (even
of a project outside its scope), a different body told it the key existed, and two call
centres with overlapping ticket numbers refused each other. A key now lives in its
caller's namespace (`intake.idempotency_cache.namespace`: the actor, i.e. the API key or
the staff member, and its project scope); the primary key becomes (tenant_id, namespace,
key).

Rows written before this revision are backfilled where their caller is known: a new
complaint (201) recorded with an API key (`created_by` is `apikey:<key_id>`, and the key's
scope is on its row). The others (staff callers, answers that joined an open case) keep
the empty namespace, which no caller has: a retry of one of those within the retention
period records again (and a repeat of an open case joins it as a duplicate).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def scope_digest_sql(project_ids: str) -> str:
    """SQL for `idempotency_cache.scope_digest` of the uuid[] expression `project_ids`."""
    return (
        f"CASE WHEN {project_ids} IS NULL THEN '*' ELSE substr(encode(sha256(convert_to("
        'array_to_string(ARRAY(SELECT DISTINCT p::text COLLATE "C" FROM'
        f" unnest({project_ids}) AS p ORDER BY 1), ','), 'UTF8')), 'hex'), 1, 16) END"
    )


# The table has FORCE ROW LEVEL SECURITY; its policy admits the platform's system context.
_SYSTEM_ON = "SELECT set_config('app.system', 'on', true)"
_SYSTEM_OFF = "SELECT set_config('app.system', '', true)"


def upgrade() -> None:
    op.execute(_SYSTEM_ON)
    op.execute("ALTER TABLE intake.idempotency_keys ADD COLUMN namespace text NOT NULL DEFAULT ''")
    op.execute(
        "UPDATE intake.idempotency_keys i"
        f" SET namespace = c.created_by || '@' || {scope_digest_sql('k.project_ids')}"
        " FROM intake.complaints c JOIN intake.api_keys k"
        " ON k.tenant_id = c.tenant_id AND c.created_by = 'apikey:' || k.key_id"
        " WHERE i.status_code = 201 AND c.id = i.resource_id AND c.tenant_id = i.tenant_id"
    )
    op.execute("ALTER TABLE intake.idempotency_keys ALTER COLUMN namespace DROP DEFAULT")
    op.execute("ALTER TABLE intake.idempotency_keys DROP CONSTRAINT idempotency_keys_pkey")
    op.execute(
        "ALTER TABLE intake.idempotency_keys"
        " ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (tenant_id, namespace, key)"
    )
    op.execute(_SYSTEM_OFF)


def downgrade() -> None:
    op.execute(_SYSTEM_ON)
    # Per tenant again: of the callers that used one key, the first keeps it.
    op.execute(
        "DELETE FROM intake.idempotency_keys i USING intake.idempotency_keys j"
        " WHERE i.tenant_id = j.tenant_id AND i.key = j.key"
        " AND (i.created_at, i.namespace) > (j.created_at, j.namespace)"
    )
    op.execute("ALTER TABLE intake.idempotency_keys DROP CONSTRAINT idempotency_keys_pkey")
    op.execute("ALTER TABLE intake.idempotency_keys DROP COLUMN namespace")
    op.execute(
        "ALTER TABLE intake.idempotency_keys"
        " ADD CONSTRAINT idempotency_keys_pkey PRIMARY KEY (tenant_id, key)"
    )
    op.execute(_SYSTEM_OFF)
