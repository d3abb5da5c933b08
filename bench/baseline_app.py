"""The bare baseline: FastAPI + asyncpg inserting one complaint-sized row per request.

It accepts the very body the intake benchmark posts (same pydantic shapes, minus intake's
rules) and inserts one row with the same columns intake's complaint row has. No tenancy,
no classification, no duplicate or group detection, no idempotency, no outbox, no access
log and no telemetry: what the intake endpoint would cost if it did nothing but store the
row. `make bench` runs it beside propdesk's intake service, on the same machine, in the
same run, against the same PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import uuid4

import asyncpg
import orjson
from fastapi import FastAPI, Header
from fastapi.responses import Response
from pydantic import BaseModel

DSN = os.environ.get("BENCH_BASELINE_DSN", "")
TABLE = "bench_baseline.complaints"

pool: asyncpg.Pool | None = None


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    global pool
    # The same pool size as the intake service's engine (Settings.db_pool_size).
    pool = await asyncpg.create_pool(DSN, min_size=4, max_size=10)
    yield
    await pool.close()


# FastAPI's native OpenTelemetry support switches itself on whenever a tracer or meter
# provider is installed; the baseline installs none, and says so explicitly.
app = FastAPI(lifespan=lifespan, telemetry={"tracing": False, "metrics": False, "logs": False})


class Complainant(BaseModel):
    name: str | None = None
    phone: str | None = None


class Unit(BaseModel):
    building: str | None = None
    room: str | None = None


class Complaint(BaseModel):
    project: str
    channel: str
    content: str
    category: str | None = None
    demand: str | None = None
    place: str | None = None
    receiver: str | None = None
    complainant: Complainant | None = None
    unit: Unit | None = None
    received_at: datetime | None = None


INSERT = (
    f"INSERT INTO {TABLE} (id, tenant_key, project, reference, channel, category, content,"
    " demand, place, receiver, complainant_name, complainant_phone, building, room,"
    " received_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,"
    " coalesce($15, now())) RETURNING recorded_at"
)


@app.post("/v1/complaints", status_code=201)
async def create(c: Complaint, x_api_key: str = Header(default="")) -> Response:
    assert pool is not None
    cid = uuid4()
    person = c.complainant or Complainant()
    unit = c.unit or Unit()
    reference = f"{c.project}-{cid.hex[:8]}"
    recorded_at = await pool.fetchval(
        INSERT,
        cid,
        x_api_key[:24],
        c.project,
        reference,
        c.channel,
        c.category,
        c.content,
        c.demand,
        c.place,
        c.receiver,
        person.name,
        person.phone,
        unit.building,
        unit.room,
        c.received_at,
    )
    body: dict[str, Any] = {
        "id": str(cid),
        "reference": reference,
        "recorded_at": recorded_at.isoformat(),
        **c.model_dump(mode="json"),
    }
    return Response(orjson.dumps(body), status_code=201, media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok", "telemetry": app._native_telemetry.enabled()}


SCHEMA_SQL = f"""
CREATE SCHEMA IF NOT EXISTS bench_baseline;
DROP TABLE IF EXISTS {TABLE};
CREATE TABLE {TABLE} (
    id uuid PRIMARY KEY,
    tenant_key text NOT NULL,
    project text NOT NULL,
    reference text NOT NULL,
    channel text NOT NULL,
    category text,
    content text NOT NULL,
    demand text,
    place text,
    receiver text,
    complainant_name text,
    complainant_phone text,
    building text,
    room text,
    received_at timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON {TABLE} (project, category, received_at);
"""
