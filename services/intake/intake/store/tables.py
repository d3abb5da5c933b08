"""Intake's tables as SQLAlchemy Core objects. The DDL lives in migrations/; these mirror it
for typed queries (a test compares the two)."""

from __future__ import annotations

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    Computed,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = MetaData(schema="intake")

TZ = DateTime(timezone=True)
U = UUID(as_uuid=True)

tenants = Table(
    "tenants",
    metadata,
    Column("id", U, primary_key=True),
    Column("code", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("settings", JSONB, nullable=False),
    Column("rules", JSONB, nullable=False),
    Column("routing", JSONB, nullable=False),
    Column("created_at", TZ),
    Column("updated_at", TZ),
)

projects = Table(
    "projects",
    metadata,
    Column("id", U, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("code", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("city", Text),
    Column("time_zone", Text, nullable=False),
    Column("calendar", Text, nullable=False),
    Column("created_at", TZ),
    Column("updated_at", TZ),
)

buildings = Table(
    "buildings",
    metadata,
    Column("id", U, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("project_id", U, nullable=False),
    Column("code", Text, nullable=False),
    Column("name", Text, nullable=False),
)

units = Table(
    "units",
    metadata,
    Column("id", U, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("project_id", U, nullable=False),
    Column("building_id", U, nullable=False),
    Column("code", Text, nullable=False),
)

departments = Table(
    "departments",
    metadata,
    Column("id", U, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("project_id", U),
    Column("code", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("kind", Text, nullable=False),
)

staff = Table(
    "staff",
    metadata,
    Column("id", U, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("code", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("roles", ARRAY(Text), nullable=False),
    Column("department_id", U),
    Column("project_ids", ARRAY(U), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("skills", ARRAY(Text), nullable=False, server_default="{}"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", U, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("key_hash", LargeBinary, nullable=False),
    Column("name", Text, nullable=False),
    Column("project_ids", ARRAY(U)),
    Column("roles", ARRAY(Text), nullable=False),
    Column("rate_limit_per_minute", Integer, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("created_at", TZ),
    Column("revoked_at", TZ),
)

group_cases = Table(
    "group_cases",
    metadata,
    Column("id", U, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("project_id", U, nullable=False),
    Column("reference", Text, nullable=False),
    Column("category", Text),
    Column("matter", Text, nullable=False),
    Column("household_count", Integer, nullable=False),
    Column("created_at", TZ),
    Column("updated_at", TZ),
)

complaints = Table(
    "complaints",
    metadata,
    Column("id", U, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("project_id", U, nullable=False),
    Column("reference", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("validity", Text, nullable=False),
    Column("category", Text),
    Column("category_source", Text),
    Column("category_reason", Text),
    Column("grade", Text),
    Column("grade_reasons", ARRAY(Text), nullable=False),
    Column("complainant_name", Text),
    Column("complainant_phone", Text),
    Column("complainant_email", Text),
    Column("household_id", U),
    Column("unit_id", U),
    Column("building", Text),
    Column("room", Text),
    Column("received_at", TZ, nullable=False),
    Column("recorded_at", TZ, nullable=False),
    Column("occurred_at", TZ),
    Column("place", Text),
    Column("lat", Float),
    Column("long", Float),
    Column("content", Text, nullable=False),
    Column("demand", Text),
    Column("receiver", Text),
    Column("attachments", JSONB, nullable=False),
    Column("external_reference", Text),
    Column("device_id", Text),
    Column("previous_case_id", U),
    Column("prior_cases", Integer, nullable=False),
    Column("forwarded_result", Text),
    Column("group_case_id", U),
    Column("flags", ARRAY(Text), nullable=False),
    Column("calls", Integer, nullable=False),
    Column("last_call_at", TZ),
    Column("work_order_id", U),
    Column("work_order_seq", Integer, nullable=False),
    Column("work_order_at", TZ),
    Column("version", Integer, nullable=False),
    Column("created_by", Text, nullable=False),
    Column("updated_at", TZ),
    # Generated by the database (see the migration); never written.
    Column("search_text", Text, Computed("search_text", persisted=True)),
)

complaint_events = Table(
    "complaint_events",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("project_id", U, nullable=False),
    Column("complaint_id", U, nullable=False),
    Column("type", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("reason", Text),
    Column("data", JSONB, nullable=False),
    Column("at", TZ),
)

invalidation_requests = Table(
    "invalidation_requests",
    metadata,
    Column("id", U, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("project_id", U, nullable=False),
    Column("complaint_id", U, nullable=False),
    Column("reason", Text, nullable=False),
    Column("requested_by", Text, nullable=False),
    Column("requested_at", TZ),
    Column("status", Text, nullable=False),
    Column("decided_by", Text),
    Column("decided_at", TZ),
    Column("comment", Text),
)

complaint_flags = Table(
    "complaint_flags",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("project_id", U, nullable=False),
    Column("complaint_id", U, nullable=False),
    Column("flag", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("at", TZ),
)

reference_counters = Table(
    "reference_counters",
    metadata,
    Column("tenant_id", U, nullable=False),
    Column("project_id", U, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("last", Integer, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("tenant_id", U, primary_key=True),
    # Whose key (the credential and its project scope): `idempotency_cache.namespace`.
    Column("namespace", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("request_hash", LargeBinary, nullable=False),
    Column("status_code", Integer),
    Column("response", JSONB),
    Column("resource_id", U),
    Column("created_at", TZ),
)

rules_changes = Table(
    "rules_changes",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("tenant_id", U, nullable=False),
    Column("actor", Text, nullable=False),
    Column("previous", JSONB, nullable=False),
    Column("rules", JSONB, nullable=False),
    Column("at", TZ),
)
