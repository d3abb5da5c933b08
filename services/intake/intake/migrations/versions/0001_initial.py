"""intake: tenant directory, API keys, complaints and their history, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from propdesk.bus.tables import bus_tables_sql
from propdesk.db.bootstrap import OWNER_ROLE
from propdesk.db.rls import enable_rls_sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "intake"

TABLES = [
    """
    CREATE TABLE intake.tenants (
        id          uuid PRIMARY KEY,
        code        text NOT NULL UNIQUE,
        name        text NOT NULL,
        settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
        rules       jsonb NOT NULL DEFAULT '{}'::jsonb,
        routing     jsonb NOT NULL DEFAULT '[]'::jsonb,
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now()
    )""",
    """
    CREATE TABLE intake.projects (
        id          uuid PRIMARY KEY,
        tenant_id   uuid NOT NULL REFERENCES intake.tenants (id),
        code        text NOT NULL,
        name        text NOT NULL,
        city        text,
        time_zone   text NOT NULL DEFAULT 'Asia/Shanghai',
        calendar    text NOT NULL DEFAULT 'cn',
        created_at  timestamptz NOT NULL DEFAULT now(),
        updated_at  timestamptz NOT NULL DEFAULT now(),
        UNIQUE (tenant_id, code)
    )""",
    """
    CREATE TABLE intake.buildings (
        id          uuid PRIMARY KEY,
        tenant_id   uuid NOT NULL,
        project_id  uuid NOT NULL REFERENCES intake.projects (id),
        code        text NOT NULL,
        name        text NOT NULL,
        UNIQUE (project_id, code)
    )""",
    """
    CREATE TABLE intake.units (
        id          uuid PRIMARY KEY,
        tenant_id   uuid NOT NULL,
        project_id  uuid NOT NULL REFERENCES intake.projects (id),
        building_id uuid NOT NULL REFERENCES intake.buildings (id),
        code        text NOT NULL,
        UNIQUE (building_id, code)
    )""",
    """
    CREATE TABLE intake.departments (
        id          uuid PRIMARY KEY,
        tenant_id   uuid NOT NULL,
        project_id  uuid REFERENCES intake.projects (id),
        code        text NOT NULL,
        name        text NOT NULL,
        kind        text NOT NULL,
        UNIQUE (tenant_id, code)
    )""",
    """
    CREATE TABLE intake.staff (
        id            uuid PRIMARY KEY,
        tenant_id     uuid NOT NULL,
        code          text NOT NULL,
        name          text NOT NULL,
        roles         text[] NOT NULL DEFAULT '{}',
        department_id uuid REFERENCES intake.departments (id),
        project_ids   uuid[] NOT NULL DEFAULT '{}',
        active        boolean NOT NULL DEFAULT true,
        UNIQUE (tenant_id, code)
    )""",
    """
    CREATE TABLE intake.api_keys (
        id                    uuid PRIMARY KEY,
        tenant_id             uuid NOT NULL,
        key_id                text NOT NULL UNIQUE,
        key_hash              bytea NOT NULL,
        name                  text NOT NULL,
        project_ids           uuid[],
        roles                 text[] NOT NULL DEFAULT '{integration}',
        rate_limit_per_minute integer NOT NULL DEFAULT 6000,
        created_by            text NOT NULL,
        created_at            timestamptz NOT NULL DEFAULT now(),
        revoked_at            timestamptz
    )""",
    """
    CREATE TABLE intake.group_cases (
        id              uuid PRIMARY KEY,
        tenant_id       uuid NOT NULL,
        project_id      uuid NOT NULL,
        reference       text NOT NULL,
        category        text,
        matter          text NOT NULL,
        household_count integer NOT NULL,
        created_at      timestamptz NOT NULL DEFAULT now(),
        updated_at      timestamptz NOT NULL DEFAULT now()
    )""",
    """
    CREATE TABLE intake.complaints (
        id                 uuid PRIMARY KEY,
        tenant_id          uuid NOT NULL,
        project_id         uuid NOT NULL REFERENCES intake.projects (id),
        reference          text NOT NULL,
        channel            text NOT NULL,
        -- intake.domain.case_status.CaseStatus; moved by dispatch's work-order events.
        status             text NOT NULL DEFAULT 'received' CHECK (status IN ('received',
                               'dispatched', 'accepted', 'in_progress', 'resolved',
                               'signed_off', 'feedback_given', 'closed', 'reopened',
                               'invalid')),
        validity           text NOT NULL DEFAULT 'pending',
        category           text,
        category_source    text,
        category_reason    text,
        grade              text,
        grade_reasons      text[] NOT NULL DEFAULT '{}',
        complainant_name   text,
        complainant_phone  text,
        complainant_email  text,
        household_id       uuid,
        unit_id            uuid,
        building           text,
        room               text,
        received_at        timestamptz NOT NULL,
        recorded_at        timestamptz NOT NULL,
        occurred_at        timestamptz,
        place              text,
        lat                double precision CHECK (lat BETWEEN -90 AND 90),
        long               double precision CHECK (long BETWEEN -180 AND 180),
        content            text NOT NULL,
        demand             text,
        receiver           text,
        attachments        jsonb NOT NULL DEFAULT '[]'::jsonb,
        external_reference text,
        device_id          text,
        -- 二次投诉: the earlier case on the same matter, and how many handled cases on it
        -- came before this one (1 = second complaint, 2 = third: repeated dissatisfaction).
        previous_case_id   uuid REFERENCES intake.complaints (id),
        prior_cases        integer NOT NULL DEFAULT 0 CHECK (prior_cases >= 0),
        forwarded_result   text CHECK (forwarded_result IN ('dissatisfied')),
        group_case_id      uuid REFERENCES intake.group_cases (id),
        flags              text[] NOT NULL DEFAULT '{}',
        -- The household's calls about this case, the first included: a repeat while the
        -- case is open joins it (a timeline entry) instead of opening another complaint.
        calls              integer NOT NULL DEFAULT 1 CHECK (calls >= 1),
        last_call_at       timestamptz,
        -- The last work-order step applied to the status, so a late event never
        -- overwrites a newer one (case_status.is_late).
        work_order_id      uuid,
        work_order_seq     integer NOT NULL DEFAULT 0,
        work_order_at      timestamptz,
        version            integer NOT NULL DEFAULT 1,
        created_by         text NOT NULL,
        updated_at         timestamptz NOT NULL DEFAULT now(),
        -- What `q=` searches, in one column so one trigram index serves it.
        search_text        text GENERATED ALWAYS AS (
                               reference || E'\\n' || content || E'\\n' || coalesce(demand, '')
                               || E'\\n' || coalesce(place, '') || E'\\n'
                               || coalesce(complainant_name, '')) STORED,
        UNIQUE (tenant_id, reference),
        CHECK ((lat IS NULL) = (long IS NULL))
    )""",
    # ILIKE '%…%' in any script: pg_trgm (created by the bootstrap) over search_text.
    """CREATE INDEX complaints_search_trgm
       ON intake.complaints USING gin (search_text public.gin_trgm_ops)""",
    """CREATE INDEX complaints_household_phone
       ON intake.complaints (project_id, complainant_phone, received_at DESC)
       WHERE complainant_phone IS NOT NULL""",
    "CREATE INDEX complaints_list ON intake.complaints (tenant_id, received_at DESC, id DESC)",
    """CREATE INDEX complaints_project_list
       ON intake.complaints (project_id, received_at DESC, id DESC)""",
    """CREATE INDEX complaints_recent_household
       ON intake.complaints (project_id, household_id, received_at DESC)""",
    """
    CREATE TABLE intake.complaint_events (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id    uuid NOT NULL,
        project_id   uuid NOT NULL,
        complaint_id uuid NOT NULL REFERENCES intake.complaints (id),
        type         text NOT NULL,
        actor        text NOT NULL,
        reason       text,
        data         jsonb NOT NULL DEFAULT '{}'::jsonb,
        at           timestamptz NOT NULL DEFAULT clock_timestamp()
    )""",
    "CREATE INDEX complaint_events_by_complaint ON intake.complaint_events (complaint_id, id)",
    # Open311 tokens: the ticket id of a call that joined an open case lives only in its
    # timeline entry.
    """CREATE INDEX complaint_events_joined_ticket
       ON intake.complaint_events ((data->>'external_reference'))
       WHERE type = 'complaint.duplicate_joined'""",
    """
    CREATE TABLE intake.invalidation_requests (
        id           uuid PRIMARY KEY,
        tenant_id    uuid NOT NULL,
        project_id   uuid NOT NULL,
        complaint_id uuid NOT NULL REFERENCES intake.complaints (id),
        reason       text NOT NULL,
        requested_by text NOT NULL,
        requested_at timestamptz NOT NULL DEFAULT now(),
        status       text NOT NULL DEFAULT 'pending',
        decided_by   text,
        decided_at   timestamptz,
        comment      text
    )""",
    # One open request per complaint: a second would let two approvers race.
    """CREATE UNIQUE INDEX invalidation_one_pending
       ON intake.invalidation_requests (complaint_id) WHERE status = 'pending'""",
    """
    CREATE TABLE intake.complaint_flags (
        id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id    uuid NOT NULL,
        project_id   uuid NOT NULL,
        complaint_id uuid NOT NULL REFERENCES intake.complaints (id),
        flag         text NOT NULL,
        reason       text NOT NULL,
        actor        text NOT NULL,
        at           timestamptz NOT NULL DEFAULT now()
    )""",
    """
    CREATE TABLE intake.reference_counters (
        tenant_id  uuid NOT NULL,
        project_id uuid NOT NULL,
        day        date NOT NULL,
        last       integer NOT NULL,
        PRIMARY KEY (project_id, day)
    )""",
    """
    CREATE TABLE intake.idempotency_keys (
        tenant_id    uuid NOT NULL,
        key          text NOT NULL,
        request_hash bytea NOT NULL,
        status_code  integer,
        response     jsonb,
        resource_id  uuid,
        created_at   timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, key)
    )""",
    "CREATE INDEX idempotency_keys_created ON intake.idempotency_keys (created_at)",
    # Who changed a tenant's classification rules, when, from what to what.
    """
    CREATE TABLE intake.rules_changes (
        id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id  uuid NOT NULL REFERENCES intake.tenants (id),
        actor      text NOT NULL,
        previous   jsonb NOT NULL,
        rules      jsonb NOT NULL,
        at         timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX rules_changes_by_tenant ON intake.rules_changes (tenant_id, id)",
]

# (table, project column or None)
RLS = [
    ("projects", "id"),
    ("buildings", "project_id"),
    ("units", "project_id"),
    ("departments", "project_id"),
    ("staff", None),
    ("api_keys", None),
    ("group_cases", "project_id"),
    ("complaints", "project_id"),
    ("complaint_events", "project_id"),
    ("invalidation_requests", "project_id"),
    ("complaint_flags", "project_id"),
    ("reference_counters", "project_id"),
    ("rules_changes", None),
]

# History is appended, never rewritten (起因、经过、结果均可查询可追述): even a bug or a
# stray UPDATE through the app role cannot change or remove it.
APPEND_ONLY = [
    """
    CREATE FUNCTION intake.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
    END $$""",
    """CREATE TRIGGER complaint_events_append_only BEFORE UPDATE OR DELETE
       ON intake.complaint_events FOR EACH ROW EXECUTE FUNCTION intake.refuse_change()""",
    """CREATE TRIGGER complaint_flags_append_only BEFORE UPDATE OR DELETE
       ON intake.complaint_flags FOR EACH ROW EXECUTE FUNCTION intake.refuse_change()""",
    """CREATE TRIGGER rules_changes_append_only BEFORE UPDATE OR DELETE
       ON intake.rules_changes FOR EACH ROW EXECUTE FUNCTION intake.refuse_change()""",
    """CREATE TRIGGER complaints_no_delete BEFORE DELETE
       ON intake.complaints FOR EACH ROW EXECUTE FUNCTION intake.refuse_change()""",
]

# Lookups made before the tenant is known (API key → tenant; tenant code → id for the
# operator CLI). They run as the owner through SECURITY DEFINER and return only what the
# caller proves it may know; everything else in these tables stays behind RLS.
DEFINER_LOOKUPS = [
    f"""CREATE POLICY definer_lookup ON intake.api_keys FOR SELECT TO "{OWNER_ROLE}"
        USING (true)""",
    f"""CREATE POLICY definer_lookup ON intake.tenants FOR SELECT TO "{OWNER_ROLE}"
        USING (true)""",
    """
    CREATE FUNCTION intake.authenticate_api_key(p_key_id text, p_key_hash bytea)
    RETURNS TABLE (tenant_id uuid, project_ids uuid[], api_key_id uuid, name text,
                   roles text[], rate_limit_per_minute integer)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
      SELECT k.tenant_id, k.project_ids, k.id, k.name, k.roles, k.rate_limit_per_minute
        FROM intake.api_keys k
       WHERE k.key_id = p_key_id AND k.key_hash = p_key_hash AND k.revoked_at IS NULL
    $$""",
    """
    CREATE FUNCTION intake.tenant_id_by_code(p_code text) RETURNS uuid
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
      SELECT t.id FROM intake.tenants t WHERE t.code = p_code
    $$""",
    # Free-text search. Under row-level security PostgreSQL will not use an index for a
    # non-leakproof operator such as ILIKE (it must not run before the tenant check), so
    # the trigram index would never serve the app role. This function runs the ILIKE as the
    # owner, with the same tenant/project predicate as the policy written as a plain
    # condition, and returns only ids the caller may see; the caller's query re-applies RLS.
    # EXECUTE plans each call with the actual pattern, so the planner sees its trigrams.
    # ROWS 20: a search names few cases; the caller's plan then fetches them by primary key
    # instead of reading the whole project to join.
    f"""CREATE POLICY definer_search ON intake.complaints FOR SELECT TO "{OWNER_ROLE}"
        USING (true)""",
    """
    CREATE FUNCTION intake.search_complaint_ids(p_pattern text) RETURNS SETOF uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 20
    SET search_path = pg_catalog, pg_temp AS $$
    BEGIN
      RETURN QUERY EXECUTE
        'SELECT c.id FROM intake.complaints c
          WHERE c.search_text ILIKE $1
            AND intake.tenant_visible(c.tenant_id, c.project_id)'
        USING p_pattern;
    END $$""",
    "REVOKE ALL ON FUNCTION intake.search_complaint_ids(text) FROM PUBLIC",
    "REVOKE ALL ON FUNCTION intake.authenticate_api_key(text, bytea) FROM PUBLIC",
    "REVOKE ALL ON FUNCTION intake.tenant_id_by_code(text) FROM PUBLIC",
]


def upgrade() -> None:
    for stmt in bus_tables_sql(S):
        op.execute(stmt)
    for stmt in TABLES:
        op.execute(stmt)
    for stmt in enable_rls_sql(S, "tenants", tenant_column="id", project_column=None):
        op.execute(stmt)
    for table, project_column in RLS:
        for stmt in enable_rls_sql(S, table, project_column=project_column):
            op.execute(stmt)
    # Expired keys are swept across all tenants by the service's periodic job.
    for stmt in enable_rls_sql(S, "idempotency_keys", project_column=None, allow_system=True):
        op.execute(stmt)
    for stmt in APPEND_ONLY + DEFINER_LOOKUPS:
        op.execute(stmt)


def downgrade() -> None:
    for table in (
        "rules_changes",
        "idempotency_keys",
        "reference_counters",
        "complaint_flags",
        "invalidation_requests",
        "complaint_events",
        "complaints",
        "group_cases",
        "api_keys",
        "staff",
        "departments",
        "units",
        "buildings",
        "projects",
        "tenants",
        "dead_letters",
        "inbox",
        "outbox",
    ):
        op.execute(f"DROP TABLE IF EXISTS intake.{table} CASCADE")
    for fn in (
        "authenticate_api_key(text, bytea)",
        "tenant_id_by_code(text)",
        "search_complaint_ids(text)",
        "refuse_change()",
        "outbox_notify()",
        "tenant_visible(uuid, uuid)",
        "current_tenant()",
        "system_context()",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS intake.{fn} CASCADE")
