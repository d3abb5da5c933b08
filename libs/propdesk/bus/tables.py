"""The bus tables every service schema carries: outbox, inbox, dead letters.

Frozen as `bus_tables_sql` version 1: a released migration calls it, so it must never
change. A later change to the bus tables gets a new function and a new migration.
"""

from __future__ import annotations

from propdesk.db.rls import enable_rls_sql, rls_function_sql


def bus_tables_sql(schema: str) -> list[str]:
    s = f'"{schema}"'
    return [
        *rls_function_sql(schema),
        f"""
        CREATE TABLE {s}.outbox (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            event_id      uuid NOT NULL UNIQUE,
            tenant_id     uuid NOT NULL,
            project_id    uuid,
            event_type    text NOT NULL,
            subject       text NOT NULL,
            envelope      jsonb NOT NULL,
            trace_context jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
            published_at  timestamptz,
            attempts      integer NOT NULL DEFAULT 0,
            last_error    text
        )""",
        f"CREATE INDEX outbox_unpublished ON {s}.outbox (id) WHERE published_at IS NULL",
        f"CREATE INDEX outbox_created_at ON {s}.outbox (created_at)",
        *enable_rls_sql(schema, "outbox", allow_system=True),
        # Tell the relay there is work, once per transaction (NOTIFY collapses duplicates).
        f"""
        CREATE OR REPLACE FUNCTION {s}.outbox_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          PERFORM pg_notify('{schema}_outbox', '');
          RETURN NULL;
        END $$""",
        f"""
        CREATE TRIGGER outbox_notify AFTER INSERT ON {s}.outbox
        FOR EACH STATEMENT EXECUTE FUNCTION {s}.outbox_notify()""",
        f"""
        CREATE TABLE {s}.inbox (
            consumer    text NOT NULL,
            event_id    uuid NOT NULL,
            tenant_id   uuid NOT NULL,
            project_id  uuid,
            event_type  text NOT NULL,
            handled_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (consumer, event_id)
        )""",
        f"CREATE INDEX inbox_handled_at ON {s}.inbox (handled_at)",
        *enable_rls_sql(schema, "inbox"),
        f"""
        CREATE TABLE {s}.dead_letters (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            consumer     text NOT NULL,
            event_id     uuid,
            tenant_id    uuid,
            project_id   uuid,
            subject      text NOT NULL,
            deliveries   integer NOT NULL,
            error        text NOT NULL,
            data         bytea NOT NULL,
            headers      jsonb NOT NULL DEFAULT '{{}}'::jsonb,
            created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
            replayed_at  timestamptz
        )""",
        *enable_rls_sql(schema, "dead_letters", allow_system=True),
    ]


def _outbox_notify_sql(schema: str, body: str) -> list[str]:
    return [
        f"""
        CREATE OR REPLACE FUNCTION "{schema}".outbox_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
          {body}
          RETURN NULL;
        END $$"""
    ]


def outbox_bell_sql(schema: str) -> list[str]:
    """Version 2 of the outbox trigger (frozen like version 1): a transaction on a
    connection of a process that rings its own relay (`app.outbox_bell = 'local'`, see
    `propdesk.bus.bell`) does not notify, so it does not take PostgreSQL's notification
    lock, which a notifying commit holds through its WAL flush. Every other writer still
    notifies."""
    return _outbox_notify_sql(
        schema,
        "IF current_setting('app.outbox_bell', true) IS DISTINCT FROM 'local' THEN"
        f" PERFORM pg_notify('{schema}_outbox', ''); END IF;",
    )


def outbox_notify_v1_sql(schema: str) -> list[str]:
    """The version 1 trigger function again (a downgrade of `outbox_bell_sql`)."""
    return _outbox_notify_sql(schema, f"PERFORM pg_notify('{schema}_outbox', '');")


# Set for the statements of a bus-table migration that read or change rows: the bus
# tables have FORCE ROW LEVEL SECURITY, and their policies admit the system context.
_SYSTEM_ON = "SELECT set_config('app.system', 'on', true)"
_SYSTEM_OFF = "SELECT set_config('app.system', '', true)"


def dead_letters_once_sql(schema: str) -> list[str]:
    """Version 1 of the open-dead-letter index (frozen like the functions above): at most one
    dead letter not yet replayed per consumer and event. A process killed, or a terminate
    lost, between a dead letter's commit and the terminate brings the message back; it fails
    again and its dead letter, inserted `ON CONFLICT DO NOTHING`
    (`propdesk.bus.consumer`), finds this index and adds no second row. A replayed one
    (`replayed_at` set) leaves the index, so the event can be dead-lettered again if it fails
    again. Messages that could not be parsed have no event id and are not covered.

    Copies that exist already (made before this index) would stop it being built: of each
    event's open dead letters the first (lowest id) stays, the later copies go."""
    s = f'"{schema}"'
    return [
        _SYSTEM_ON,
        f"""
        DELETE FROM {s}.dead_letters later USING {s}.dead_letters first
        WHERE later.consumer = first.consumer AND later.event_id = first.event_id
          AND later.replayed_at IS NULL AND first.replayed_at IS NULL
          AND first.id < later.id""",
        f"""
        CREATE UNIQUE INDEX dead_letters_once ON {s}.dead_letters (consumer, event_id)
        WHERE event_id IS NOT NULL AND replayed_at IS NULL""",
        _SYSTEM_OFF,
    ]


def dead_letters_once_undo_sql(schema: str) -> list[str]:
    """The downgrade of `dead_letters_once_sql` (the copies it removed stay removed)."""
    return [f'DROP INDEX IF EXISTS "{schema}".dead_letters_once']


def inbox_pruning_sql(schema: str) -> list[str]:
    """Version 1 of the inbox's pruning policies (frozen like the functions above). The
    inbox was visible to its tenant only, so nothing could remove what every consumer had
    handled long ago, and it grew for ever. The system context (`app.system`, the
    platform's own machinery) may now read and delete its rows, not insert or change
    them: `propdesk.bus.retention.prune_inbox` removes rows past the retention period."""
    s = f'"{schema}"'
    return [
        f"DROP POLICY IF EXISTS system_read ON {s}.inbox",
        f"CREATE POLICY system_read ON {s}.inbox FOR SELECT USING ({s}.system_context())",
        f"DROP POLICY IF EXISTS system_prune ON {s}.inbox",
        f"CREATE POLICY system_prune ON {s}.inbox FOR DELETE USING ({s}.system_context())",
    ]


def open_dead_letters_index_sql(schema: str) -> list[str]:
    """Version 1 of the open-dead-letters index (frozen like the functions above): every
    relay counts its schema's open dead letters every few seconds (the gauge
    `propdesk_bus_dead_letters_open`), and dead letters are kept; the count reads this
    small index, not the table with its stored messages."""
    s = f'"{schema}"'
    return [
        f"CREATE INDEX IF NOT EXISTS dead_letters_open ON {s}.dead_letters (id)"
        " WHERE replayed_at IS NULL"
    ]


def open_dead_letters_index_undo_sql(schema: str) -> list[str]:
    return [f'DROP INDEX IF EXISTS "{schema}".dead_letters_open']


def inbox_pruning_undo_sql(schema: str) -> list[str]:
    """The downgrade of `inbox_pruning_sql`."""
    s = f'"{schema}"'
    return [
        f"DROP POLICY IF EXISTS system_read ON {s}.inbox",
        f"DROP POLICY IF EXISTS system_prune ON {s}.inbox",
    ]
