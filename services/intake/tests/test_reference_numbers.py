"""Reference numbers: `<project>-<day in the project's zone>-<number>`, counted per project
and day, four digits and more when a day has more than 9,999 complaints."""

from __future__ import annotations

from datetime import datetime
from uuid import uuid4
from zoneinfo import ZoneInfo

import pytest

from .conftest import onboard

pytestmark = pytest.mark.asyncio(loop_scope="session")


async def test_numbers_count_per_project_and_day(client, resources, db_rows):
    company = await onboard(resources, f"N{uuid4().hex[:6].upper()}", "编号物业")
    clerk = company.token("intake_clerk")

    async def record(project: str, content: str) -> dict:
        body = {"project": project, "channel": "phone", "content": content}
        r = await client.post("/v1/complaints", json=body, headers=clerk)
        assert r.status_code == 201, r.text
        return r.json()

    first = await record("SUNRISE", "门禁卡失灵")
    day = datetime.fromisoformat(first["recorded_at"]).astimezone(ZoneInfo("Asia/Shanghai"))
    stamp = f"{day:%Y%m%d}"
    assert first["reference"] == f"SUNRISE-{stamp}-0001"
    assert (await record("SUNRISE", "车库照明坏了"))["reference"] == f"SUNRISE-{stamp}-0002"
    assert (await record("MOON", "信箱被撬"))["reference"] == f"MOON-{stamp}-0001"

    await db_rows(
        "UPDATE intake.reference_counters SET last = 9999 WHERE project_id = $1",
        company.projects["SUNRISE"],
    )
    assert (await record("SUNRISE", "绿化带积水"))["reference"] == f"SUNRISE-{stamp}-10000"
    rows = await db_rows(
        "SELECT reference FROM intake.complaints WHERE tenant_id = $1 ORDER BY reference",
        company.tenant_id,
    )
    assert len(rows) == 4
