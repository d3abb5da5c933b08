"""Idempotency keys (replay, conflict, 50 concurrent requests) and tenant isolation."""

from __future__ import annotations

import asyncio
from uuid import uuid4

import pytest

pytestmark = pytest.mark.asyncio(loop_scope="session")


def body(**over: object) -> dict[str, object]:
    b: dict[str, object] = {
        "project": "SUNRISE",
        "channel": "call_center",
        "content": f"电梯故障 {uuid4().hex}",
        "external_reference": f"CC-{uuid4().hex[:10]}",
        "complainant": {"name": "赵女士", "phone": f"139{uuid4().int % 10**8:08d}"},
    }
    b.update(over)
    return b


async def test_same_key_same_body_replays_the_original(client, company_a, new_key):
    key = await new_key(company_a)
    payload = body()
    headers = {**key, "Idempotency-Key": f"k-{uuid4()}"}
    first = await client.post("/v1/complaints", json=payload, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await client.post("/v1/complaints", json=payload, headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


async def test_replay_without_redis_comes_from_postgres(client, company_a, new_key, resources):
    key = await new_key(company_a)
    payload = body()
    headers = {**key, "Idempotency-Key": f"k-{uuid4()}"}
    first = await client.post("/v1/complaints", json=payload, headers=headers)
    app = client._transport.app  # type: ignore[attr-defined]
    saved = app.state.redis
    app.state.redis = None  # as if Redis were gone
    try:
        again = await client.post("/v1/complaints", json=payload, headers=headers)
        other = await client.post("/v1/complaints", json=body(), headers=headers)
    finally:
        app.state.redis = saved
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    # The retry ran the recording up to its key and rolled back: it counted no call on the
    # case it would otherwise have joined as a duplicate.
    case = await client.get(f"/v1/complaints/{first.json()['id']}", headers=key)
    assert case.json()["calls"] == 1 and case.json()["version"] == first.json()["version"]


async def test_same_key_other_body_is_422(client, company_a, new_key):
    key = await new_key(company_a)
    headers = {**key, "Idempotency-Key": f"k-{uuid4()}"}
    assert (await client.post("/v1/complaints", json=body(), headers=headers)).status_code == 201
    r = await client.post("/v1/complaints", json=body(), headers=headers)
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "idempotency-key-reused"
    assert r.json()["errors"][0]["field"] == "header.Idempotency-Key"


async def test_fifty_concurrent_identical_requests_make_one_complaint(
    client, company_a, new_key, db_rows, monkeypatch
):
    from intake.flows import record_complaint

    key = await new_key(company_a)
    payload = body()
    headers = {**key, "Idempotency-Key": f"burst-{uuid4()}"}
    recordings = running = most_at_once = 0
    record_once = record_complaint._record_once

    async def counted(*args, **kwargs):
        nonlocal recordings, running, most_at_once
        recordings += 1
        running += 1
        most_at_once = max(most_at_once, running)
        try:
            return await record_once(*args, **kwargs)
        finally:
            running -= 1

    monkeypatch.setattr(record_complaint, "_record_once", counted)
    answers = await asyncio.gather(
        *(client.post("/v1/complaints", json=payload, headers=headers) for _ in range(50))
    )
    # In one process, a request whose key is being recorded waits for that recording and
    # replays its stored answer, instead of running a recording of its own that would
    # roll back: never two recordings of the key at once. (One that read the replay cache
    # before the first stored its answer, and arrives after it finished, records and
    # rolls back on the key's row: rare, and still one complaint.)
    assert most_at_once == 1, f"{most_at_once} recordings of one key ran at once"
    assert recordings <= 3, recordings
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 49
    rows = await db_rows(
        "SELECT count(*) AS n FROM intake.complaints WHERE external_reference = $1",
        payload["external_reference"],
    )
    assert rows[0]["n"] == 1


async def test_keys_of_two_tenants_do_not_collide(client, company_a, company_b, new_key):
    shared = f"k-{uuid4()}"
    a = await client.post(
        "/v1/complaints",
        json=body(),
        headers={**await new_key(company_a), "Idempotency-Key": shared},
    )
    b = await client.post(
        "/v1/complaints",
        json=body(),
        headers={**await new_key(company_b), "Idempotency-Key": shared},
    )
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"]


async def test_other_tenant_sees_nothing(client, company_a, company_b, new_key):
    a_clerk = company_a.token("intake_clerk")
    created = await client.post("/v1/complaints", json=body(), headers=a_clerk)
    cid = created.json()["id"]
    marker = created.json()["content"].split()[-1]
    for creds in (company_b.token("tenant_admin"), await new_key(company_b)):
        listed = await client.get("/v1/complaints", params={"q": marker}, headers=creds)
        assert listed.status_code == 200 and listed.json()["items"] == []
        everything = await client.get("/v1/complaints", params={"limit": 200}, headers=creds)
        assert cid not in {c["id"] for c in everything.json()["items"]}
        got = await client.get(f"/v1/complaints/{cid}", headers=creds)
        assert got.status_code == 404 and got.json()["code"] == "complaint-not-found"
        missing = await client.get(f"/v1/complaints/{uuid4()}", headers=creds)
        assert missing.json()["detail"].split()[:2] == got.json()["detail"].split()[:2]
        tl = await client.get(f"/v1/complaints/{cid}/timeline", headers=creds)
        assert tl.status_code == 404
    b_sup = company_b.token("cs_supervisor")
    upd = await client.post(
        f"/v1/complaints/{cid}/classification",
        json={"grade": "major", "reason": "x"},
        headers=b_sup,
    )
    assert upd.status_code == 404
    inv = await client.post(
        f"/v1/complaints/{cid}/invalidation", json={"reason": "x"}, headers=b_sup
    )
    assert inv.status_code == 404
    flag = await client.post(
        f"/v1/complaints/{cid}/flags", json={"flag": "malicious", "reason": "x"}, headers=b_sup
    )
    assert flag.status_code == 404
    # B cannot file into A's project either: A's project code means nothing to B.
    b_key = await new_key(company_b)
    same_code = await client.post(
        "/v1/complaints", json=body(project=str(company_a.projects["SUNRISE"])), headers=b_key
    )
    assert same_code.status_code == 422
    assert same_code.json()["errors"][0]["field"] == "body.project"
    still = await client.get(f"/v1/complaints/{cid}", headers=a_clerk)
    assert still.json()["grade"] == created.json()["grade"]


async def test_project_scoped_key_stays_in_its_project(client, company_a, new_key):
    moon_key = await new_key(company_a, projects=["MOON"])
    a_clerk = company_a.token("intake_clerk")
    sunrise = await client.post("/v1/complaints", json=body(), headers=a_clerk)
    cid = sunrise.json()["id"]
    assert (await client.get(f"/v1/complaints/{cid}", headers=moon_key)).status_code == 404
    into_sunrise = await client.post("/v1/complaints", json=body(), headers=moon_key)
    assert into_sunrise.status_code == 422
    into_moon = await client.post("/v1/complaints", json=body(project="MOON"), headers=moon_key)
    assert into_moon.status_code == 201
    scoped_token = company_a.token("intake_clerk", projects=["MOON"])
    assert (await client.get(f"/v1/complaints/{cid}", headers=scoped_token)).status_code == 404


async def test_rate_limit_per_key(client, company_a, new_key):
    key = await new_key(company_a, rate_limit=2)
    codes = []
    for _ in range(3):
        r = await client.get("/v1/complaints", params={"limit": 1}, headers=key)
        codes.append(r.status_code)
    assert codes == [200, 200, 429]
    assert r.json()["code"] == "rate-limited"
    assert 1 <= int(r.headers["retry-after"]) <= 61
    # The window's counter expires on its own (set when the window's first request came).
    redis = client._transport.app.state.redis  # type: ignore[attr-defined]
    key_id = key["X-API-Key"].split("_")[1]
    (counter,) = [k async for k in redis.scan_iter(match=f"pd:intake:rl:*:{key_id}:*")]
    assert await redis.get(counter) == b"3"
    assert 60 < await redis.ttl(counter) <= 120


async def test_bad_or_revoked_key_is_401(client, company_a):
    r = await client.get("/v1/complaints", headers={"X-API-Key": "pdk_0123456789abcdef_nope"})
    assert r.status_code == 401
    admin = company_a.token("tenant_admin")
    created = await client.post("/v1/api-keys", json={"name": "cc"}, headers=admin)
    assert created.status_code == 201, created.text
    secret = created.json()["key"]
    assert (await client.get("/v1/complaints", headers={"X-API-Key": secret})).status_code == 200
    listed = await client.get("/v1/api-keys", headers=admin)
    assert secret not in listed.text and created.json()["key_id"] in listed.text
    assert (
        await client.delete(f"/v1/api-keys/{created.json()['id']}", headers=admin)
    ).status_code == 204
    # At once, though the key was just used (and so is in this process's cache).
    refused = await client.get("/v1/complaints", headers={"X-API-Key": secret})
    assert refused.status_code == 401, refused.text
