"""Idempotency-Keys are the caller's own (per tenant and per credential with its project
scope): a replay never answers with a complaint outside the caller's projects, never says
that another caller used the key, and two call centres' ticket numbers never collide."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from intake import idempotency_cache

pytestmark = pytest.mark.asyncio(loop_scope="session")

OPEN311 = "/open311/v2"


def body(**over: object) -> dict[str, object]:
    b: dict[str, object] = {
        "project": "SUNRISE",
        "channel": "call_center",
        "content": f"楼道灯坏了 {uuid4().hex}",
        "complainant": {"name": "钱先生", "phone": f"136{uuid4().int % 10**8:08d}"},
    }
    b.update(over)
    return b


@pytest.fixture(params=["redis", "postgres"])
def replay_store(request, client):
    """Each probe once with the Redis fast path, once with PostgreSQL alone."""
    if request.param == "redis":
        yield request.param
        return
    app = client._transport.app  # type: ignore[attr-defined]
    saved = app.state.redis
    app.state.redis = None
    try:
        yield request.param
    finally:
        app.state.redis = saved


@pytest.mark.parametrize("moon_caller", ["key", "token"])
async def test_a_moon_caller_never_replays_a_sunrise_answer(
    client, company_a, new_key, replay_store, moon_caller
):
    sunrise_key = await new_key(company_a, projects=["SUNRISE"])
    moon = (
        await new_key(company_a, projects=["MOON"])
        if moon_caller == "key"
        else company_a.token("intake_clerk", projects=["MOON"])
    )
    payload = body()
    idem = {"Idempotency-Key": f"cc-{uuid4()}"}
    first = await client.post("/v1/complaints", json=payload, headers={**sunrise_key, **idem})
    assert first.status_code == 201, first.text
    # The same key and body: what a MOON caller sending a SUNRISE body always gets.
    same = await client.post("/v1/complaints", json=payload, headers={**moon, **idem})
    assert same.status_code == 422, same.text
    assert "idempotent-replayed" not in same.headers
    assert same.json()["errors"][0]["field"] == "body.project"
    assert first.json()["id"] not in same.text
    # Another body: not "this key was used", but a request of its own.
    other = await client.post("/v1/complaints", json=body(project="MOON"), headers={**moon, **idem})
    assert other.status_code == 201, other.text
    assert "idempotent-replayed" not in other.headers
    assert other.json()["id"] != first.json()["id"]
    # Each caller still replays its own answer, and a new body with its key is a 422.
    for creds, answer in ((sunrise_key, first), (moon, other)):
        again = await client.post(
            "/v1/complaints",
            json=payload if creds is sunrise_key else body(project="MOON"),
            headers={**creds, **idem},
        )
        if creds is moon:  # the body differs (new content): the key was used with another
            assert again.status_code == 422
            assert again.json()["code"] == "idempotency-key-reused"
            continue
        assert again.status_code == 201 and again.json() == answer.json()
        assert again.headers["idempotent-replayed"] == "true"


async def test_a_company_wide_callers_key_is_not_a_moon_callers(client, company_a, new_key):
    """Nor the other way round: a tenant-wide credential's key of a MOON complaint is not
    replayed to another credential, even one that may see the complaint."""
    wide = await new_key(company_a)
    moon = await new_key(company_a, projects=["MOON"])
    idem = {"Idempotency-Key": f"cc-{uuid4()}"}
    payload = body(project="MOON")
    first = await client.post("/v1/complaints", json=payload, headers={**wide, **idem})
    assert first.status_code == 201, first.text
    mine = await client.post("/v1/complaints", json=body(project="MOON"), headers={**moon, **idem})
    assert mine.status_code == 201, mine.text
    assert mine.json()["id"] != first.json()["id"]
    # The same credential: the same key with a body for another project is still a 422.
    elsewhere = await client.post(
        "/v1/complaints", json=body(project="SUNRISE"), headers={**wide, **idem}
    )
    assert elsewhere.status_code == 422
    assert elsewhere.json()["code"] == "idempotency-key-reused"


async def test_two_projects_call_centres_may_share_ticket_numbers(client, company_a, new_key):
    sunrise = (await new_key(company_a, projects=["SUNRISE"]))["X-API-Key"]
    moon = (await new_key(company_a, projects=["MOON"]))["X-API-Key"]
    ticket = f"T-{uuid4().hex[:8]}"
    answers = {}
    for project, key in (("SUNRISE", sunrise), ("MOON", moon)):
        r = await client.post(
            f"{OPEN311}/requests.json",
            data={
                "api_key": key,
                "jurisdiction_id": project,
                "service_code": "facility_repair",
                "description": f"{project} 水管漏水 {uuid4().hex}",
                "attribute[ticket_id]": ticket,
            },
        )
        assert r.status_code == 201, r.text
        answers[project] = r.json()[0]["service_request_id"]
    assert answers["SUNRISE"] != answers["MOON"]
    for project, key in (("SUNRISE", sunrise), ("MOON", moon)):
        token = await client.get(f"{OPEN311}/tokens/{ticket}.json", params={"api_key": key})
        assert token.status_code == 200, token.text
        assert token.json()[0]["service_request_id"] == answers[project]


async def test_two_call_centres_of_one_project_each_find_their_own_ticket(
    client, company_a, new_key
):
    """The group's hotline and the government's 12345 line both forward to SUNRISE and
    number their tickets alike: each token answers with its own caller's complaint, and
    another key of the project learns nothing of either."""
    hotline, gov, third = [
        (await new_key(company_a, projects=["SUNRISE"]))["X-API-Key"] for _ in range(3)
    ]
    ticket = f"T-{uuid4().hex[:8]}"
    answers = {}
    for key in (hotline, gov):
        r = await client.post(
            f"{OPEN311}/requests.json",
            data={
                "api_key": key,
                "jurisdiction_id": "SUNRISE",
                "service_code": "facility_repair",
                "description": f"水管漏水 {uuid4().hex}",
                "attribute[ticket_id]": ticket,
            },
        )
        assert r.status_code == 201, r.text
        answers[key] = r.json()[0]["service_request_id"]
    assert answers[hotline] != answers[gov]
    for key in (hotline, gov):
        token = await client.get(f"{OPEN311}/tokens/{ticket}.json", params={"api_key": key})
        assert token.status_code == 200, token.text
        assert token.json()[0]["service_request_id"] == answers[key]
    token = await client.get(f"{OPEN311}/tokens/{ticket}.json", params={"api_key": third})
    assert token.status_code == 404, token.text


async def test_tokens_of_an_idempotency_key_shared_by_two_projects(client, company_a, new_key):
    """A token that is an Idempotency-Key (no ticket id): each caller finds its own."""
    keys = {p: await new_key(company_a, projects=[p]) for p in ("SUNRISE", "MOON")}
    idem = f"hdr-{uuid4().hex[:8]}"
    answers = {}
    for project, key in keys.items():
        r = await client.post(
            f"{OPEN311}/requests.json",
            headers={**key, "Idempotency-Key": idem},
            data={
                "jurisdiction_id": project,
                "service_code": "facility_repair",
                "description": f"{project} 电梯异响 {uuid4().hex}",
            },
        )
        assert r.status_code == 201, r.text
        answers[project] = r.json()[0]["service_request_id"]
    assert answers["SUNRISE"] != answers["MOON"]
    for project, key in keys.items():
        token = await client.get(f"{OPEN311}/tokens/{idem}.json", headers=key)
        assert token.status_code == 200, token.text
        assert token.json()[0]["service_request_id"] == answers[project]


async def test_the_namespace_is_the_credential_and_its_scope():
    from propdesk.tenancy import TenantContext

    a, b = uuid4(), uuid4()
    t = uuid4()
    whole = TenantContext(tenant_id=t, actor="apikey:0123456789abcdef")
    assert idempotency_cache.namespace(whole) == "apikey:0123456789abcdef@*"
    one = TenantContext(tenant_id=t, project_ids=frozenset({a, b}), actor="S005")
    same = TenantContext(tenant_id=t, project_ids=frozenset({b, a}), actor="S005")
    fewer = TenantContext(tenant_id=t, project_ids=frozenset({a}), actor="S005")
    assert idempotency_cache.namespace(one) == idempotency_cache.namespace(same)
    assert idempotency_cache.namespace(one) != idempotency_cache.namespace(fewer)
    assert len({idempotency_cache.redis_key(t, n, "k") for n in ("a:b@*", "a@*:b")}) == 2


async def test_the_migrations_backfill_digest_is_the_services(db_rows):
    path = (
        Path(idempotency_cache.__file__).parent
        / "migrations"
        / "versions"
        / "0005_idempotency_namespace.py"
    )
    spec = importlib.util.spec_from_file_location("intake_migration_0005", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    for ids in (None, [uuid4()], [uuid4() for _ in range(5)]):
        [row] = await db_rows(f"SELECT {migration.scope_digest_sql('$1::uuid[]')} AS d", ids)
        expected = idempotency_cache.scope_digest(
            frozenset(UUID(str(i)) for i in ids) if ids is not None else None
        )
        assert row["d"] == expected
