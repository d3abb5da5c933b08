"""`propdesk_intake_record_delay_seconds`: receipt → recording by channel, the procedure's
3-minute clock, on /metrics. Every recorded call counts (a new case or a call joining an
open one); a replayed answer records nothing and counts nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
from prometheus_client import REGISTRY

from .test_complaints_api import complaint

pytestmark = pytest.mark.asyncio(loop_scope="session")

METRIC = "propdesk_intake_record_delay_seconds"


def observed(channel: str) -> tuple[float, float]:
    """(count, how many within 3 minutes) for `channel`."""
    count = REGISTRY.get_sample_value(f"{METRIC}_count", {"channel": channel}) or 0.0
    within = (
        REGISTRY.get_sample_value(f"{METRIC}_bucket", {"channel": channel, "le": "180.0"}) or 0.0
    )
    return count, within


async def test_a_late_recording_is_counted_beyond_three_minutes(client, company_a) -> None:
    clerk = company_a.token("intake_clerk") | {"Idempotency-Key": f"late-{uuid4().hex}"}
    received = datetime.now(UTC) - timedelta(minutes=4)
    before = observed("letter")
    # A household and a place of this test's own: a new case, whatever ran before.
    mine = uuid4().hex[:8]
    caller = {
        "complainant": {"name": "赵女士", "phone": f"137{int(mine, 16) % 10**8:08d}"},
        "unit": None,
        "place": f"信报箱 {mine}",
    }
    body = complaint(channel="letter", received_at=received.isoformat(), **caller)
    r = await client.post("/v1/complaints", json=body, headers=clerk)
    assert r.status_code == 201 and r.json()["case"]["kind"] == "new", r.text
    assert observed("letter") == (before[0] + 1, before[1])

    again = await client.post("/v1/complaints", json=body, headers=clerk)
    assert again.status_code == 201 and again.json()["id"] == r.json()["id"]
    assert observed("letter") == (before[0] + 1, before[1])

    # The same household calls again, received now: a call recorded on the open case (a
    # duplicate), recorded at once.
    at_once = await client.post(
        "/v1/complaints",
        json=complaint(channel="letter", **caller),
        headers={k: v for k, v in clerk.items() if k != "Idempotency-Key"},
    )
    assert at_once.status_code == 200 and at_once.json()["case"]["kind"] == "duplicate"
    assert observed("letter") == (before[0] + 2, before[1] + 1)

    metrics = await client.get("/metrics")
    assert f'{METRIC}_bucket{{channel="letter",le="180.0"}}' in metrics.text
