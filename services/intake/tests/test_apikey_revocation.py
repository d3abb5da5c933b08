"""A revoked API key stops working in every running intake process at once: the cache of
verified keys is dropped where the revocation committed and, over real NATS, in every
other process (`intake.apikey_cache`); `propdesk apikey revoke` tells them too. (The API's
revocation refusing the key at once in its own process: test_idempotency_and_isolation.)"""

from __future__ import annotations

import asyncio
import json
from uuid import uuid4

import pytest

from intake.apikey_cache import ApiKeyCache
from intake.store.apikeys import KeyIdentity, hash_key


def _identity() -> KeyIdentity:
    return KeyIdentity(
        tenant_id=uuid4(),
        project_ids=None,
        api_key_id=uuid4(),
        key_id="0123456789abcdef",
        name="cc",
        roles=frozenset({"integration"}),
        rate_limit_per_minute=60,
    )


def test_a_lookup_begun_before_a_revocation_is_not_kept() -> None:
    now = [0.0]
    cache = ApiKeyCache(ttl=30.0, clock=lambda: now[0])
    digest, identity = hash_key("pdk_x_y"), _identity()
    epoch = cache.epoch  # the lookup starts ...
    cache.revoked()  # ... a revocation commits meanwhile ...
    cache.put(digest, identity, epoch)  # ... and the lookup's answer may be the old one
    assert cache.get(digest) is None
    cache.put(digest, identity, cache.epoch)
    assert cache.get(digest) == identity
    now[0] = 30.0
    assert cache.get(digest) is None, "expired after the TTL"


@pytest.mark.asyncio(loop_scope="session")
async def test_a_revocation_empties_the_caches_of_other_processes(settings) -> None:
    from propdesk.bus.streams import connect
    from propdesk.testing.waiting import eventually

    here, there = ApiKeyCache(), ApiKeyCache()
    connections = [await connect(settings, f"apikeys-{n}") for n in range(2)]
    try:
        for cache, nc in zip((here, there), connections, strict=True):
            await cache.connect(nc)
        digest = hash_key("pdk_0123456789abcdef_secret")
        for cache in (here, there):
            cache.put(digest, _identity(), cache.epoch)
        here.revoked()
        assert here.get(digest) is None

        async def dropped() -> bool:
            return there.get(digest) is None

        await eventually(dropped, "the other process's cache dropping its keys", within=5)
        await asyncio.sleep(0.2)
        assert here.epoch == 1, "its own announcement is not applied twice"
    finally:
        for nc in connections:
            await nc.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_cli_revoke_refuses_the_key_and_tells_running_processes(
    intake_settings, monkeypatch, capsys, company_a
) -> None:
    from intake.cli import main
    from propdesk.bus.streams import connect
    from propdesk.settings import get_settings
    from propdesk.testing.waiting import eventually

    monkeypatch.setenv("PROPDESK_DATABASE_URL", intake_settings.database_url)
    monkeypatch.setenv("PROPDESK_NATS_URL", intake_settings.nats_url)
    get_settings.cache_clear()
    running = ApiKeyCache()  # a running intake process's cache
    nc = await connect(intake_settings, "intake-under-test")
    try:
        await running.connect(nc)
        create = ["apikey", "create", "--tenant", company_a.code, "--json"]
        assert await asyncio.to_thread(main, create) == 0
        key = json.loads(capsys.readouterr().out)
        digest = hash_key(key["key"])
        running.put(digest, _identity(), running.epoch)

        # The whole key works as well as its id; the answer names the key revoked.
        revoke = ["apikey", "revoke", "--tenant", company_a.code, key["key"], "--json"]
        assert await asyncio.to_thread(main, revoke) == 0
        out = json.loads(capsys.readouterr().out)
        assert (out["id"], out["key_id"], out["revoked"]) == (key["id"], key["key_id"], True)

        async def dropped() -> bool:
            return running.get(digest) is None

        await eventually(dropped, "the running process's cache dropping the key", within=5)

        # Already revoked, or another tenant's: nothing to revoke, exit status 2.
        assert await asyncio.to_thread(main, revoke) == 2
        assert "no active API key" in capsys.readouterr().err
    finally:
        await nc.close()
        get_settings.cache_clear()
