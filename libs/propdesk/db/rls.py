"""Row-level security for tenant tables, as SQL for Alembic migrations.

Every tenant table gets ENABLE + FORCE ROW LEVEL SECURITY (FORCE so even the table owner
is bound) and one policy that admits a row only when its tenant is the transaction's
tenant and its project is inside the transaction's project scope. The scope comes from
`app.*` settings that `propdesk.db.session.tenant_transaction` sets per transaction.
With no context set, `app.tenant_id` is empty and no row is visible or writable.
"""

from __future__ import annotations


def _q(ident: str) -> str:
    if not ident.replace("_", "").isalnum():
        raise ValueError(f"unsafe SQL identifier {ident!r}")
    return f'"{ident}"'


def rls_function_sql(schema: str) -> list[str]:
    """Create `<schema>.tenant_visible(tenant, project)` and `<schema>.system_context()`.

    Plain SQL, STABLE: the planner inlines them into policies, and
    `tenant_id = <stable expression>` can use an index on tenant_id.
    """
    s = _q(schema)
    return [
        f"""
        CREATE OR REPLACE FUNCTION {s}.current_tenant() RETURNS uuid
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT nullif(current_setting('app.tenant_id', true), '')::uuid
        $$""",
        f"""
        CREATE OR REPLACE FUNCTION {s}.tenant_visible(row_tenant uuid, row_project uuid)
        RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT row_tenant = nullif(current_setting('app.tenant_id', true), '')::uuid
             AND (row_project IS NULL
                  OR CASE coalesce(current_setting('app.project_ids', true), '')
                       WHEN '*' THEN true
                       WHEN '' THEN false
                       ELSE row_project = ANY (string_to_array(
                              current_setting('app.project_ids', true), ',')::uuid[])
                     END)
        $$""",
        f"""
        CREATE OR REPLACE FUNCTION {s}.system_context() RETURNS boolean
        LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT coalesce(current_setting('app.system', true), '') = 'on'
        $$""",
    ]


def enable_rls_sql(
    schema: str,
    table: str,
    *,
    tenant_column: str = "tenant_id",
    project_column: str | None = "project_id",
    allow_system: bool = False,
) -> list[str]:
    """ENABLE + FORCE RLS and the tenant policy on `schema.table`.

    `project_column=None` for tenant-wide tables. `allow_system=True` also admits the
    platform's own machinery (outbox relay, dead letters), which sets `app.system`.
    """
    s, t = _q(schema), _q(table)
    project = _q(project_column) if project_column else "NULL::uuid"
    predicate = f"{s}.tenant_visible({_q(tenant_column)}, {project})"
    if allow_system:
        predicate = f"({s}.system_context() OR {predicate})"
    return [
        f"ALTER TABLE {s}.{t} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {s}.{t} FORCE ROW LEVEL SECURITY",
        f"DROP POLICY IF EXISTS tenant_isolation ON {s}.{t}",
        f"CREATE POLICY tenant_isolation ON {s}.{t} USING ({predicate}) WITH CHECK ({predicate})",
    ]


def tenant_wide_writes_sql(schema: str, tables: list[str]) -> list[str]:
    """Rows without a project (a department, rule or day of every project) stay visible to
    a credential of some projects (they apply to its projects too) but are writable only in
    a context of every project of the tenant: `<schema>.tenant_writable` becomes the WITH
    CHECK of the tenant policy of each of `tables` (their project column is `project_id`).
    Without it a supervisor of one project could add a rule, or a day off, for all."""
    s = _q(schema)
    out = [
        f"""
        CREATE OR REPLACE FUNCTION {s}.tenant_writable(row_tenant uuid, row_project uuid)
        RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT row_tenant = nullif(current_setting('app.tenant_id', true), '')::uuid
             AND CASE coalesce(current_setting('app.project_ids', true), '')
                   WHEN '*' THEN true
                   WHEN '' THEN false
                   ELSE row_project IS NOT NULL AND row_project = ANY (string_to_array(
                          current_setting('app.project_ids', true), ',')::uuid[])
                 END
        $$"""
    ]
    for table in tables:
        out.append(
            f"ALTER POLICY tenant_isolation ON {s}.{_q(table)}"
            f" WITH CHECK ({s}.tenant_writable(tenant_id, project_id))"
        )
    return out


def tenant_wide_writes_undo_sql(schema: str, tables: list[str]) -> list[str]:
    """The downgrade of `tenant_wide_writes_sql`: WITH CHECK as USING again."""
    s = _q(schema)
    out = [
        f"ALTER POLICY tenant_isolation ON {s}.{_q(table)}"
        f" WITH CHECK ({s}.tenant_visible(tenant_id, project_id))"
        for table in tables
    ]
    return [*out, f"DROP FUNCTION IF EXISTS {s}.tenant_writable(uuid, uuid)"]


def tenant_wide_deletes_sql(schema: str, tables: list[str]) -> list[str]:
    """DELETE is checked against a policy's USING alone, which shows rows without a
    project to a credential of some projects: `tenant_wide_writes_sql`'s WITH CHECK does
    not stop it deleting them. A restrictive DELETE policy with `tenant_writable` (created
    by `tenant_wide_writes_sql`, which must have run) does."""
    s = _q(schema)
    return [
        f"CREATE POLICY tenant_wide_delete ON {s}.{_q(table)} AS RESTRICTIVE FOR DELETE"
        f" USING ({s}.tenant_writable(tenant_id, project_id))"
        for table in tables
    ]


def tenant_wide_deletes_undo_sql(schema: str, tables: list[str]) -> list[str]:
    s = _q(schema)
    return [f"DROP POLICY IF EXISTS tenant_wide_delete ON {s}.{_q(t)}" for t in tables]


def project_list_functions_sql(schema: str) -> list[str]:
    """Scope checks for rows that name their projects in a list (`uuid[]`) rather than one
    project column: staff serve several projects, an API key may be limited to several.

    - `<schema>.serves_scope(row_tenant, row_projects)`: a row serving the listed projects
      (empty: every project of the tenant) is visible in a context whose scope meets the
      list. A member of projects A and B is seen by a credential of A.
    - `<schema>.within_scope(row_tenant, row_projects)`: a row limited to the listed
      projects (NULL: the whole company) belongs to a context whose scope holds all of
      them. A key of A and B is not a credential of A's to see or revoke, nor is one of
      the whole company.

    A context of every project (`*`) sees all of its tenant's rows with either."""
    s = _q(schema)
    scope = "string_to_array(current_setting('app.project_ids', true), ',')::uuid[]"
    return [
        _project_list_function(
            s, "serves_scope", f"cardinality(row_projects) = 0 OR row_projects && {scope}"
        ),
        _project_list_function(
            s,
            "within_scope",
            "row_projects IS NOT NULL AND cardinality(row_projects) > 0"
            f" AND row_projects <@ {scope}",
        ),
    ]


def _project_list_function(s: str, name: str, limited: str) -> str:
    """`<s>.<name>(row_tenant, row_projects)`: the row is the context's tenant's, and the
    context is of every project (`*`), or of some for which `limited` holds."""
    return f"""
        CREATE OR REPLACE FUNCTION {s}.{name}(row_tenant uuid, row_projects uuid[])
        RETURNS boolean LANGUAGE sql STABLE PARALLEL SAFE AS $$
          SELECT row_tenant = nullif(current_setting('app.tenant_id', true), '')::uuid
             AND CASE coalesce(current_setting('app.project_ids', true), '')
                   WHEN '*' THEN true
                   WHEN '' THEN false
                   ELSE {limited}
                 END
        $$"""


def project_list_functions_undo_sql(schema: str) -> list[str]:
    s = _q(schema)
    return [
        f"DROP FUNCTION IF EXISTS {s}.serves_scope(uuid, uuid[])",
        f"DROP FUNCTION IF EXISTS {s}.within_scope(uuid, uuid[])",
    ]


def tenant_policy_sql(schema: str, table: str, *, using: str, check: str) -> list[str]:
    """Replace the USING and WITH CHECK of `schema.table`'s tenant policy (each an SQL
    expression over the row, e.g. `intake.serves_scope(tenant_id, project_ids)`)."""
    return [
        f"ALTER POLICY tenant_isolation ON {_q(schema)}.{_q(table)}"
        f" USING ({using}) WITH CHECK ({check})"
    ]


def tenant_wide_delete_sql(
    schema: str, table: str, *, tenant_column: str = "tenant_id"
) -> list[str]:
    """A restrictive DELETE policy: rows of `table`, which has no project column, are
    deleted only in a context of every project (`tenant_writable`, which must exist)."""
    s = _q(schema)
    return [
        f"CREATE POLICY tenant_wide_delete ON {s}.{_q(table)} AS RESTRICTIVE FOR DELETE"
        f" USING ({s}.tenant_writable({_q(tenant_column)}, NULL))"
    ]
