"""The hourly sweep of expired Idempotency-Keys says how many it removed (and nothing when
there was none to remove)."""

from __future__ import annotations

import logging
from uuid import uuid4

import pytest

from intake.service import IDEMPOTENCY_RETENTION_HOURS, sweep_idempotency_keys

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_the_sweep_logs_how_many_keys_it_removed(
    client, company_a, resources, db_rows, caplog
) -> None:
    key = f"sweep-{uuid4()}"
    resp = await client.post(
        "/v1/complaints",
        json={"project": "SUNRISE", "channel": "phone", "content": f"电梯异响 {uuid4().hex}"},
        headers={**company_a.token("intake_clerk"), "Idempotency-Key": key},
    )
    assert resp.status_code == 201, resp.text
    aged = await db_rows(
        "UPDATE intake.idempotency_keys SET created_at = now() - make_interval(hours => $1)"
        " WHERE key = $2 RETURNING key",
        int(IDEMPOTENCY_RETENTION_HOURS) + 1,
        key,
    )
    assert len(aged) == 1

    with caplog.at_level(logging.INFO, logger="intake.idempotency"):
        await sweep_idempotency_keys(resources)
        (swept,) = [r for r in caplog.records if r.getMessage().startswith("swept ")]
        assert swept.removed >= 1
        assert swept.getMessage() == f"swept {swept.removed} idempotency key(s) older than 48 h"
        assert await db_rows("SELECT 1 FROM intake.idempotency_keys WHERE key = $1", key) == []

        caplog.clear()
        await sweep_idempotency_keys(resources)  # nothing left to remove: nothing said
        assert not [r for r in caplog.records if r.getMessage().startswith("swept ")]
