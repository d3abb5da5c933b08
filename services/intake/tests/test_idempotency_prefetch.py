"""An API-key request reads its Idempotency-Key's replay-cache entry in the rate limit's
Redis round trip, and the handler answers from that read."""

from __future__ import annotations

from uuid import uuid4

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


def _body() -> dict:
    return {"project": "SUNRISE", "channel": "call_center", "content": f"水管漏水 {uuid4().hex}"}


async def test_the_replay_comes_from_the_authenticators_read(client, company_a, new_key, db_rows):
    headers = {**await new_key(company_a), "Idempotency-Key": f"pf-{uuid4()}"}
    payload = _body()
    first = await client.post("/v1/complaints", json=payload, headers=headers)
    assert first.status_code == 201, first.text
    # Only the authenticator's pipelined read can answer now: the handler has no Redis,
    # and PostgreSQL no longer knows the key (it would record a second complaint).
    await db_rows("DELETE FROM intake.idempotency_keys WHERE key = $1", headers["Idempotency-Key"])
    app = client._transport.app  # type: ignore[attr-defined]
    saved = app.state.redis
    app.state.redis = None
    try:
        again = await client.post("/v1/complaints", json=payload, headers=headers)
        other = await client.post("/v1/complaints", json=_body(), headers=headers)
    finally:
        app.state.redis = saved
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency-key-reused"


async def test_a_new_key_is_recorded_and_counted(client, company_a, new_key):
    headers = {**await new_key(company_a, rate_limit=2), "Idempotency-Key": f"pf-{uuid4()}"}
    assert (await client.post("/v1/complaints", json=_body(), headers=headers)).status_code == 201
    headers["Idempotency-Key"] = f"pf-{uuid4()}"
    assert (await client.post("/v1/complaints", json=_body(), headers=headers)).status_code == 201
    headers["Idempotency-Key"] = f"pf-{uuid4()}"
    limited = await client.post("/v1/complaints", json=_body(), headers=headers)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
