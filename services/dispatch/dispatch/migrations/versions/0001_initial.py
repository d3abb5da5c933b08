"""dispatch: directory copy, routing rules, calendars, rosters, work orders and their history.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from alembic import op

from propdesk.bus.tables import bus_tables_sql
from propdesk.db.rls import enable_rls_sql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

S = "dispatch"

TABLES = [
    # The tenant directory as dispatch learned it from *.upserted events (never read from
    # intake's tables).
    """
    CREATE TABLE dispatch.tenants (
        id          uuid PRIMARY KEY,
        code        text NOT NULL,
        name        text NOT NULL,
        settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
        updated_at  timestamptz NOT NULL DEFAULT now()
    )""",
    """
    CREATE TABLE dispatch.projects (
        id            uuid PRIMARY KEY,
        tenant_id     uuid NOT NULL,
        code          text NOT NULL,
        name          text NOT NULL,
        time_zone     text NOT NULL DEFAULT 'Asia/Shanghai',
        calendar      text NOT NULL DEFAULT 'cn',
        working_hours jsonb,
        updated_at    timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX projects_tenant ON dispatch.projects (tenant_id, code)",
    """
    CREATE TABLE dispatch.departments (
        id          uuid PRIMARY KEY,
        tenant_id   uuid NOT NULL,
        project_id  uuid,
        code        text NOT NULL,
        name        text NOT NULL,
        kind        text NOT NULL,
        updated_at  timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX departments_tenant ON dispatch.departments (tenant_id, code)",
    """
    CREATE TABLE dispatch.staff (
        id                uuid PRIMARY KEY,
        tenant_id         uuid NOT NULL,
        project_ids       uuid[] NOT NULL DEFAULT '{}',
        department_id     uuid,
        name              text NOT NULL,
        roles             text[] NOT NULL DEFAULT '{}',
        skills            text[] NOT NULL DEFAULT '{}',
        active            boolean NOT NULL DEFAULT true,
        last_assigned_at  timestamptz,
        updated_at        timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX staff_department ON dispatch.staff (tenant_id, department_id)",
    "CREATE INDEX staff_projects ON dispatch.staff USING gin (project_ids)",
    """
    CREATE TABLE dispatch.roster_shifts (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id   uuid NOT NULL,
        project_id  uuid NOT NULL,
        staff_id    uuid NOT NULL,
        starts_at   timestamptz NOT NULL,
        ends_at     timestamptz NOT NULL,
        note        text,
        created_by  text,
        CHECK (starts_at < ends_at)
    )""",
    "CREATE INDEX roster_shifts_when ON dispatch.roster_shifts (tenant_id, project_id, ends_at)",
    """
    CREATE TABLE dispatch.routing_rules (
        id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id         uuid NOT NULL,
        project_id        uuid,
        category          text,
        grade             text,
        building          text,
        place             text,
        department        text NOT NULL,
        handler_role      text,
        handler_staff_id  uuid,
        inform            text[] NOT NULL DEFAULT '{}',
        priority          integer NOT NULL DEFAULT 0,
        note              text NOT NULL DEFAULT '',
        source            text NOT NULL DEFAULT 'api' CHECK (source IN ('api', 'onboarding')),
        created_by        text,
        created_at        timestamptz NOT NULL DEFAULT now(),
        updated_at        timestamptz NOT NULL DEFAULT now()
    )""",
    "CREATE INDEX routing_rules_tenant ON dispatch.routing_rules (tenant_id)",
    # Tenant- and project-local days (project_id NULL: every project of the tenant).
    """
    CREATE TABLE dispatch.calendar_days (
        id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id   uuid NOT NULL,
        project_id  uuid,
        day         date NOT NULL,
        kind        text NOT NULL CHECK (kind IN ('holiday', 'workday')),
        name        text NOT NULL DEFAULT ''
    )""",
    """CREATE UNIQUE INDEX calendar_days_unique ON dispatch.calendar_days
       (tenant_id, coalesce(project_id, '00000000-0000-0000-0000-000000000000'::uuid), day)""",
    # Platform-wide years the operator loaded: not tenant data, so no RLS; written only
    # through the operator endpoint.
    """
    CREATE TABLE dispatch.platform_calendar_years (
        year        integer PRIMARY KEY CHECK (year BETWEEN 2000 AND 2100),
        holidays    jsonb NOT NULL,
        workdays    jsonb NOT NULL,
        source      text NOT NULL DEFAULT '',
        loaded_by   text NOT NULL,
        loaded_at   timestamptz NOT NULL DEFAULT now()
    )""",
    """
    CREATE TABLE dispatch.work_orders (
        id                              uuid PRIMARY KEY,
        tenant_id                       uuid NOT NULL,
        project_id                      uuid NOT NULL,
        complaint_id                    uuid NOT NULL,
        reference                       text,
        category                        text NOT NULL,
        grade                           text NOT NULL,
        building                        text,
        state                           text NOT NULL,
        department_id                   uuid,
        department_code                 text,
        handler_id                      uuid,
        owner_id                        uuid,
        pending_handover_to             uuid,
        pending_handover_department_id  uuid,
        rule_id                         text NOT NULL,
        routing_reason                  text NOT NULL,
        assignment_reason               text NOT NULL,
        inform                          text[] NOT NULL DEFAULT '{}',
        after_hours                     boolean NOT NULL DEFAULT false,
        overnight_handover_at           timestamptz,
        received_at                     timestamptz NOT NULL,
        recorded_at                     timestamptz NOT NULL,
        dispatched_at                   timestamptz NOT NULL,
        accepted_at                     timestamptz,
        resolved_at                     timestamptz,
        signed_off_at                   timestamptz,
        first_feedback_at               timestamptz,
        last_follow_up_at               timestamptz,
        closed_at                       timestamptz,
        resolution                      text,
        compensation                    jsonb,
        seq                             integer NOT NULL DEFAULT 1,
        updated_at                      timestamptz NOT NULL DEFAULT now(),
        -- One work order per complaint: a replayed complaint.classified creates nothing.
        UNIQUE (tenant_id, complaint_id)
    )""",
    "CREATE INDEX work_orders_handler ON dispatch.work_orders (tenant_id, handler_id, state)",
    "CREATE INDEX work_orders_department ON dispatch.work_orders (tenant_id, department_id, state)",
    """CREATE INDEX work_orders_overnight ON dispatch.work_orders (overnight_handover_at)
       WHERE overnight_handover_at IS NOT NULL""",
    # Append-only history: every step with who, when, and what was said or attached.
    """
    CREATE TABLE dispatch.work_order_steps (
        id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id      uuid NOT NULL,
        project_id     uuid NOT NULL,
        work_order_id  uuid NOT NULL REFERENCES dispatch.work_orders (id),
        seq            integer NOT NULL,
        action         text NOT NULL,
        from_state     text,
        to_state       text NOT NULL,
        actor          text NOT NULL,
        at             timestamptz NOT NULL,
        details        jsonb NOT NULL DEFAULT '{}'::jsonb,
        UNIQUE (work_order_id, seq)
    )""",
    # The chain of owners (首问责任制).
    """
    CREATE TABLE dispatch.work_order_owners (
        id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        tenant_id         uuid NOT NULL,
        project_id        uuid NOT NULL,
        work_order_id     uuid NOT NULL REFERENCES dispatch.work_orders (id),
        from_staff_id     uuid,
        to_staff_id       uuid,
        to_department_id  uuid,
        kind              text NOT NULL,
        reason            text NOT NULL,
        at                timestamptz NOT NULL
    )""",
    "CREATE INDEX work_order_owners_order ON dispatch.work_order_owners (work_order_id, id)",
    # A repeat call (complaint.duplicate_joined) that came before its complaint's work
    # order: kept here, and written as a step of the order when it is created.
    """
    CREATE TABLE dispatch.pending_duplicate_calls (
        event_id      uuid PRIMARY KEY,
        tenant_id     uuid NOT NULL,
        project_id    uuid NOT NULL,
        complaint_id  uuid NOT NULL,
        at            timestamptz NOT NULL,
        details       jsonb NOT NULL,
        created_at    timestamptz NOT NULL DEFAULT now()
    )""",
    """CREATE INDEX pending_duplicate_calls_complaint
       ON dispatch.pending_duplicate_calls (complaint_id, at)""",
    """
    CREATE FUNCTION dispatch.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
    END $$""",
    """CREATE TRIGGER work_order_steps_append_only BEFORE UPDATE OR DELETE
       ON dispatch.work_order_steps FOR EACH ROW EXECUTE FUNCTION dispatch.refuse_change()""",
    """CREATE TRIGGER work_order_owners_append_only BEFORE UPDATE OR DELETE
       ON dispatch.work_order_owners FOR EACH ROW EXECUTE FUNCTION dispatch.refuse_change()""",
]

RLS: list[tuple[str, str | None]] = [
    ("departments", "project_id"),
    ("staff", None),
    ("roster_shifts", "project_id"),
    ("routing_rules", "project_id"),
    ("calendar_days", "project_id"),
    ("work_order_steps", "project_id"),
    ("work_order_owners", "project_id"),
    ("pending_duplicate_calls", "project_id"),
]


def upgrade() -> None:
    for stmt in bus_tables_sql(S):
        op.execute(stmt)
    for stmt in TABLES:
        op.execute(stmt)
    for stmt in enable_rls_sql(S, "tenants", tenant_column="id", project_column=None):
        op.execute(stmt)
    for stmt in enable_rls_sql(S, "projects", project_column="id"):
        op.execute(stmt)
    for table, project_column in RLS:
        for stmt in enable_rls_sql(S, table, project_column=project_column):
            op.execute(stmt)
    # The overnight hand-over job claims due orders across tenants (system context), then
    # acts on each under its own tenant.
    for stmt in enable_rls_sql(S, "work_orders", allow_system=True):
        op.execute(stmt)


def downgrade() -> None:
    for table in (
        "pending_duplicate_calls",
        "work_order_owners",
        "work_order_steps",
        "work_orders",
        "platform_calendar_years",
        "calendar_days",
        "routing_rules",
        "roster_shifts",
        "staff",
        "departments",
        "projects",
        "tenants",
        "dead_letters",
        "inbox",
        "outbox",
    ):
        op.execute(f"DROP TABLE IF EXISTS dispatch.{table} CASCADE")
    for fn in (
        "refuse_change()",
        "outbox_notify()",
        "tenant_visible(uuid, uuid)",
        "current_tenant()",
        "system_context()",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS dispatch.{fn} CASCADE")
