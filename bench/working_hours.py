"""Which of dispatch's two paths the dispatch scenario measures.

Within a project's working hours the routed department's handler receives a work order
(one event, `work_order.dispatched`); outside them the duty shift leader does, as its
first receiver, which is one event more (`work_order.handed_over`), with what it costs
every consumer downstream. Left to the projects' calendar (08:30-12:00 and 13:30-17:30 on
Shanghai's working days), the path measured would depend on the hour the bench ran: UTC
00:30-04:00 and 05:30-09:30 on a Chinese working day are within hours, the rest is not.
So the scenario sets every project's hours through dispatch's API before it measures:
`working` makes the whole day a working day every day, `after_hours` leaves one minute of
it, and each run reports how many of its orders were dispatched after hours.
"""

from __future__ import annotations

import asyncio

import httpx

from bench.tenants import Company

# The whole day, every day, holidays too (one minute short of midnight: a period ends
# before 24:00).
WORKING = {
    "periods": ["00:00-23:59"],
    "weekdays": [0, 1, 2, 3, 4, 5, 6],
    "observe_public_holidays": False,
}
# One minute a day: a bench running at midnight in Shanghai would see it, and say so.
AFTER_HOURS = {**WORKING, "periods": ["00:00-00:01"]}
PATHS = {"working": WORKING, "after_hours": AFTER_HOURS}


async def set_hours(
    intake_url: str,
    dispatch_url: str,
    companies: list[Company],
    path: str,
    *,
    wait_s: float = 120.0,
) -> int:
    """Every project of every company gets `PATHS[path]`; the number of projects set.

    Dispatch learns projects from intake's events, and its directory consumer may still be
    working through the onboarding when the bench starts it: a project it does not know yet
    (404) is asked again, for up to `wait_s` seconds."""
    hours = PATHS[path]
    deadline = asyncio.get_running_loop().time() + wait_s
    count = 0
    async with (
        httpx.AsyncClient(base_url=intake_url, timeout=30.0) as intake,
        httpx.AsyncClient(base_url=dispatch_url, timeout=30.0) as dispatch,
    ):

        async def put(project_id: str, auth: dict[str, str]) -> None:
            while True:
                r = await dispatch.put(
                    f"/v1/calendars/{project_id}/hours", json=hours, headers=auth
                )
                if r.status_code != 404 or asyncio.get_running_loop().time() > deadline:
                    r.raise_for_status()
                    return
                await asyncio.sleep(0.5)

        for company in companies:
            auth = {"Authorization": f"Bearer {company.admin_token}"}
            r = await intake.get("/v1/projects", headers=auth)
            r.raise_for_status()
            page = r.json()
            if page.get("next_cursor"):
                raise RuntimeError("more projects than one page of /v1/projects")
            ids = [p["id"] for p in page["items"]]
            await asyncio.gather(*(put(pid, auth) for pid in ids))
            count += len(ids)
    return count
