"""Who may act on a work order, to whom it may go, and how it may close (real PostgreSQL).

- Closing needs the callback's result; a dissatisfied owner's case is reopened, not closed.
- A department head acts on his own department's orders (accept, resolve and approve,
  hand over, reassign, the board), as sign-off already required; acting for a handler
  leaves the handler the first-asked owner and records who acted for whom.
- A reassignment or hand-over goes to staff of the order's project, and of the named
  department when one is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID, uuid4

import httpx

from dispatch.testing import Tenant, apply_directory, engineering_order
from propdesk.auth.tokens import issue_token
from propdesk.events.contracts.tenant import DepartmentUpserted, ProjectUpserted, StaffUpserted
from propdesk.service.resources import ServiceResources


@dataclass
class Others:
    """Staff beyond the seeded tenant: the service center's head and one of its people,
    a director, and an engineer of a second project of the same tenant."""

    cs_head: UUID
    cs_clerk: UUID
    director: UUID
    other_project: UUID
    other_project_engineer: UUID


async def seed_others(res: ServiceResources, t: Tenant) -> Others:
    o = Others(uuid4(), uuid4(), uuid4(), uuid4(), uuid4())
    other_eng = uuid4()
    payloads = [
        StaffUpserted(
            staff_id=o.cs_head,
            project_ids=[t.project_id],
            department_id=t.service_center,
            name="周主管",
            roles=["department_head"],
        ),
        StaffUpserted(
            staff_id=o.cs_clerk,
            project_ids=[t.project_id],
            department_id=t.service_center,
            name="吴客服",
            roles=["handler"],
        ),
        StaffUpserted(
            staff_id=o.director,
            project_ids=[t.project_id],
            department_id=None,
            name="郑主任",
            roles=["director"],
        ),
        ProjectUpserted(
            project_id=o.other_project, code="P2", name="滨江苑", time_zone="Asia/Shanghai"
        ),
        DepartmentUpserted(
            department_id=other_eng,
            project_id=o.other_project,
            code="eng",
            name="工程部",
            kind="engineering",
        ),
        StaffUpserted(
            staff_id=o.other_project_engineer,
            project_ids=[o.other_project],
            department_id=other_eng,
            name="孙工",
            roles=["handler"],
            skills=["facility_repair"],
        ),
    ]
    await apply_directory(res, t, payloads)
    return o


def head_of(t: Tenant, staff_id: UUID) -> dict[str, str]:
    return t.token(staff_id, "department_head")


async def awaiting_callback(
    res: ServiceResources, t: Tenant, client: httpx.AsyncClient
) -> tuple[str, dict[str, str]]:
    """An order resolved, signed off and fed back: waiting for the callback."""
    url, engineer = await engineering_order(res, t)
    h = t.handler(engineer)
    assistant = t.token(t.assistant, "affairs_assistant")
    for path, headers, body in (
        ("accept", h, None),
        ("resolve", h, {"resolution": "更换水管"}),
        ("sign-off", head_of(t, t.head), {}),
        ("feedback", assistant, {"channel": "phone", "content": "已修复"}),
    ):
        r = await client.post(f"{url}/{path}", headers=headers, json=body)
        assert r.status_code == 200, r.text
    assert r.json()["state"] == "feedback_given"
    return url, assistant


# ── closing needs the callback, and a dissatisfied callback reopens ────────────────────


async def test_close_needs_the_callback_result(res, tenant: Tenant, client) -> None:
    url, assistant = await awaiting_callback(res, tenant, client)
    r = await client.post(f"{url}/close", headers=assistant, json={})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == ["body.callback_result"]
    r = await client.post(f"{url}/close", headers=assistant, json={"callback_result": None})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body.callback_result"
    assert (await client.get(url, headers=assistant)).json()["state"] == "feedback_given"
    r = await client.post(
        f"{url}/close", headers=assistant, json={"callback_result": "basically_satisfied"}
    )
    assert r.status_code == 200 and r.json()["state"] == "closed"


async def test_dissatisfied_callback_does_not_close_it_points_to_reopen(
    res, tenant: Tenant, client
) -> None:
    url, assistant = await awaiting_callback(res, tenant, client)
    dissatisfied = {"callback_result": "dissatisfied", "note": "业主不满意"}
    r = await client.post(f"{url}/close", headers=assistant, json=dissatisfied)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == "callback-dissatisfied"
    assert problem["current_state"] == "feedback_given"
    assert problem["allowed_action"] == "reopen" and problem["reopen"] == f"{url}/reopen"
    assert "reopen" in problem["detail"]
    view = (await client.get(url, headers=assistant)).json()
    assert view["state"] == "feedback_given" and view["closed_at"] is None
    assert "close" not in [s["action"] for s in view["steps"]]
    r = await client.post(f"{url}/reopen", headers=assistant, json={"reason": "业主回访不满意"})
    assert r.status_code == 200 and r.json()["state"] == "reopened"


# ── a department head acts on his own department's orders ──────────────────────────────


async def test_other_departments_head_may_not_accept(res, tenant: Tenant, client) -> None:
    others = await seed_others(res, tenant)
    url, engineer = await engineering_order(res, tenant)
    r = await client.post(f"{url}/accept", headers=head_of(tenant, others.cs_head))
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden" and "department" in r.json()["detail"]
    view = (await client.get(url, headers=tenant.handler(engineer))).json()
    assert view["state"] == "dispatched" and view["owner_id"] is None

    # The engineering head accepts for his engineer: the engineer stays first-asked owner.
    r = await client.post(f"{url}/accept", headers=head_of(tenant, tenant.head))
    assert r.status_code == 200, r.text
    assert r.json()["owner_id"] == str(engineer) and r.json()["handler_id"] == str(engineer)
    full = (await client.get(url, headers=tenant.handler(engineer))).json()
    assert full["steps"][-1]["actor"] == str(tenant.head)
    assert full["steps"][-1]["details"]["acting_for"] == str(engineer)
    [owner] = full["owners"]
    assert (owner["kind"], owner["to_staff_id"]) == ("first_receiver", str(engineer))
    assert str(tenant.head) in owner["reason"]


async def test_other_departments_head_may_not_resolve_or_approve(
    res, tenant: Tenant, client
) -> None:
    others = await seed_others(res, tenant)
    url, engineer = await engineering_order(res, tenant)
    assert (await client.post(f"{url}/accept", headers=tenant.handler(engineer))).status_code == 200
    paid = {"resolution": "赔偿", "compensation": {"amount": "5000", "description": "漏水损失"}}
    r = await client.post(f"{url}/resolve", headers=head_of(tenant, others.cs_head), json=paid)
    assert r.status_code == 403, r.text
    # The handler may not approve his own compensation either; his department head may.
    r = await client.post(f"{url}/resolve", headers=tenant.handler(engineer), json=paid)
    assert r.status_code == 403 and "approver" in r.json()["detail"]
    r = await client.post(f"{url}/resolve", headers=head_of(tenant, tenant.head), json=paid)
    assert r.status_code == 200, r.text
    resolve = (await client.get(url, headers=tenant.handler(engineer))).json()["steps"][-1]
    assert resolve["details"]["approved_by"] == str(tenant.head)


async def test_other_departments_head_may_not_hand_over_or_reassign(
    res, tenant: Tenant, client
) -> None:
    others = await seed_others(res, tenant)
    url, engineer = await engineering_order(res, tenant)
    cs_head = head_of(tenant, others.cs_head)
    r = await client.post(
        f"{url}/reassign", headers=cs_head, json={"handler_id": str(others.cs_clerk), "reason": "x"}
    )
    assert r.status_code == 403, r.text
    assert (await client.post(f"{url}/accept", headers=tenant.handler(engineer))).status_code == 200
    r = await client.post(
        f"{url}/hand-over",
        headers=cs_head,
        json={"to_staff_id": str(others.cs_clerk), "reason": "x"},
    )
    assert r.status_code == 403, r.text
    # The engineering head may hand his department's case over.
    r = await client.post(
        f"{url}/hand-over",
        headers=head_of(tenant, tenant.head),
        json={"to_staff_id": str(others.cs_clerk), "reason": "费用问题, 交客服"},
    )
    assert r.status_code == 200 and r.json()["state"] == "handover_pending"


async def test_department_board_is_the_heads_own(res, tenant: Tenant, client) -> None:
    others = await seed_others(res, tenant)
    await engineering_order(res, tenant)
    r = await client.get("/v1/departments/eng/board", headers=head_of(tenant, others.cs_head))
    assert r.status_code == 403, r.text
    assert r.json()["code"] == "forbidden"
    r = await client.get("/v1/departments/cs/board", headers=head_of(tenant, others.cs_head))
    assert r.status_code == 200 and r.json()["open"] == 0
    # A head not in the directory (no department) sees no board either.
    r = await client.get("/v1/departments/eng/board", headers=head_of(tenant, uuid4()))
    assert r.status_code == 403
    r = await client.get("/v1/departments/eng/board", headers=head_of(tenant, tenant.head))
    assert r.status_code == 200 and r.json()["open"] == 1
    # Those who see every department keep doing so.
    for who in (
        tenant.token(others.director, "director"),
        tenant.token(uuid4(), "cs_supervisor"),
        tenant.token(tenant.assistant, "affairs_assistant"),
        tenant.token(uuid4(), "quality"),
    ):
        r = await client.get("/v1/departments/eng/board", headers=who)
        assert r.status_code == 200 and r.json()["open"] == 1, r.text


async def test_the_board_of_a_department_that_does_not_exist_is_a_404(
    res, tenant: Tenant, client
) -> None:
    others = await seed_others(res, tenant)
    for who in (tenant.token(uuid4(), "cs_supervisor"), head_of(tenant, others.cs_head)):
        r = await client.get("/v1/departments/nope/board", headers=who)
        assert r.status_code == 404 and r.json()["code"] == "department-not-found", r.text
    # Another tenant's department is not the caller's either (a company without any).
    stranger = issue_token(
        res.settings, tenant_id=uuid4(), subject=str(uuid4()), roles=["cs_supervisor"]
    )
    r = await client.get(
        "/v1/departments/eng/board", headers={"authorization": f"Bearer {stranger}"}
    )
    assert r.status_code == 404 and r.json()["code"] == "department-not-found", r.text
    supervisor = tenant.token(uuid4(), "cs_supervisor")
    for code, rule in (("x" * 3000, "string_too_long"), ("eng%00", "no_nul")):
        r = await client.get(f"/v1/departments/{code}/board", headers=supervisor)
        assert r.status_code == 422, r.text
        assert [(e["field"], e["rule"]) for e in r.json()["errors"]] == [("path.code", rule)]
    r = await client.get("/v1/departments/cs/board", headers=supervisor)
    assert r.status_code == 200 and r.json()["open"] == 0, r.text


async def test_director_still_acts_on_every_department(res, tenant: Tenant, client) -> None:
    others = await seed_others(res, tenant)
    url, engineer = await engineering_order(res, tenant)
    r = await client.post(f"{url}/accept", headers=tenant.token(others.director, "director"))
    assert r.status_code == 200 and r.json()["owner_id"] == str(engineer)


# ── reassignment and hand-over targets ──────────────────────────────────────────────────


async def test_reassign_target_must_be_of_the_named_department(res, tenant: Tenant, client) -> None:
    others = await seed_others(res, tenant)
    url, engineer = await engineering_order(res, tenant)
    assistant = tenant.token(tenant.assistant, "affairs_assistant")
    r = await client.post(
        f"{url}/reassign",
        headers=assistant,
        json={"department_code": "cs", "handler_id": str(tenant.handler_b), "reason": "客服处理"},
    )
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["field"] == "body.handler_id" and error["rule"] == "in_department"
    assert "cs" in error["message"]
    view = (await client.get(url, headers=assistant)).json()
    assert view["department_code"] == "eng" and view["handler_id"] == str(engineer)
    # Without a department named, the handler must belong to the order's department.
    r = await client.post(
        f"{url}/reassign",
        headers=assistant,
        json={"handler_id": str(others.cs_clerk), "reason": "客服处理"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "in_department"
    r = await client.post(
        f"{url}/reassign",
        headers=assistant,
        json={"department_code": "cs", "handler_id": str(others.cs_clerk), "reason": "客服处理"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["department_code"] == "cs" and r.json()["handler_id"] == str(others.cs_clerk)


async def test_reassign_target_must_cover_the_project(res, tenant: Tenant, client) -> None:
    others = await seed_others(res, tenant)
    url, engineer = await engineering_order(res, tenant)
    assistant = tenant.token(tenant.assistant, "affairs_assistant")
    stranger = str(others.other_project_engineer)
    r = await client.post(
        f"{url}/reassign", headers=assistant, json={"handler_id": stranger, "reason": "换人"}
    )
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["field"] == "body.handler_id" and error["rule"] == "covers_project"
    # With a token limited to the order's project, the other project's engineer does not
    # exist at all (the database shows a limited credential only the staff of its projects).
    limited = issue_token(
        tenant.settings,
        tenant_id=tenant.tenant_id,
        subject=str(tenant.assistant),
        roles=["affairs_assistant"],
        project_ids=[tenant.project_id],
    )
    r = await client.post(
        f"{url}/reassign",
        headers={"authorization": f"Bearer {limited}"},
        json={"handler_id": stranger, "reason": "换人"},
    )
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["field"] == "body.handler_id" and error["rule"] == "exists"
    r = await client.post(f"{url}/accept", headers=tenant.handler(others.other_project_engineer))
    assert r.status_code == 403
    view = (await client.get(url, headers=assistant)).json()
    assert view["handler_id"] == str(engineer) and view["state"] == "dispatched"
    r = await client.post(
        f"{url}/reassign",
        headers=assistant,
        json={"handler_id": str(uuid4()), "reason": "换人"},
    )
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "exists"


async def test_hand_over_target_must_cover_the_project(res, tenant: Tenant, client) -> None:
    others = await seed_others(res, tenant)
    url, engineer = await engineering_order(res, tenant)
    h = tenant.handler(engineer)
    assert (await client.post(f"{url}/accept", headers=h)).status_code == 200
    r = await client.post(
        f"{url}/hand-over",
        headers=h,
        json={"to_staff_id": str(others.other_project_engineer), "reason": "请孙工处理"},
    )
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["field"] == "body.to_staff_id" and error["rule"] == "covers_project"
    view = (await client.get(url, headers=h)).json()
    assert view["state"] == "accepted" and view["pending_handover_to"] is None


async def test_a_roster_shift_is_for_staff_of_the_project(res, tenant: Tenant, client) -> None:
    """On duty means receiving the project's complaints after hours: a shift on another
    project's roster is refused."""
    others = await seed_others(res, tenant)
    admin = tenant.token(uuid4(), "tenant_admin")
    shift = {
        "staff_id": str(others.other_project_engineer),
        "project_id": str(tenant.project_id),
        "starts_at": "2026-11-24T18:00:00+08:00",
        "ends_at": "2026-11-25T08:30:00+08:00",
    }
    r = await client.post("/v1/rosters/shifts", headers=admin, json=shift)
    assert r.status_code == 422, r.text
    [error] = r.json()["errors"]
    assert error["field"] == "body.staff_id" and error["rule"] == "covers_project"
    r = await client.post(
        "/v1/rosters/shifts", headers=admin, json={**shift, "project_id": str(others.other_project)}
    )
    assert r.status_code == 201, r.text


def limited_to_project(t: Tenant, staff_id: UUID, *roles: str) -> dict[str, str]:
    """A staff token of `staff_id` limited to the seeded tenant's project."""
    token = issue_token(
        t.settings,
        tenant_id=t.tenant_id,
        subject=str(staff_id),
        roles=roles,
        project_ids=[t.project_id],
    )
    return {"authorization": f"Bearer {token}"}


async def test_a_project_limited_hand_over_finds_no_member_of_another_project(
    res, tenant: Tenant, client
) -> None:
    """With a token limited to the order's project, a member serving only another project
    does not exist (the database shows a limited credential only the staff of its
    projects): 422 `exists`, where a token of every project is told `covers_project`."""
    others = await seed_others(res, tenant)
    url, engineer = await engineering_order(res, tenant)
    assert (await client.post(f"{url}/accept", headers=tenant.handler(engineer))).status_code == 200
    body = {"to_staff_id": str(others.other_project_engineer), "reason": "请孙工处理"}
    for headers, rule in (
        (limited_to_project(tenant, engineer, "handler"), "exists"),
        (tenant.handler(engineer), "covers_project"),
    ):
        r = await client.post(f"{url}/hand-over", headers=headers, json=body)
        assert r.status_code == 422, r.text
        [error] = r.json()["errors"]
        assert (error["field"], error["rule"]) == ("body.to_staff_id", rule), r.text
    # A member of the project is there for the limited token: the hand-over is made.
    r = await client.post(
        f"{url}/hand-over",
        headers=limited_to_project(tenant, engineer, "handler"),
        json={"to_staff_id": str(others.cs_clerk), "reason": "业主要求客服跟进"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["pending_handover_to"] == str(others.cs_clerk)


async def test_a_project_limited_roster_finds_no_member_of_another_project(
    res, tenant: Tenant, client
) -> None:
    """The same on the roster: an administrator limited to the project is told the other
    project's engineer does not exist (`exists`); one of every project, that he does not
    work for this project (`covers_project`)."""
    others = await seed_others(res, tenant)
    shift = {
        "staff_id": str(others.other_project_engineer),
        "project_id": str(tenant.project_id),
        "starts_at": "2026-11-24T18:00:00+08:00",
        "ends_at": "2026-11-25T08:30:00+08:00",
    }
    for headers, rule in (
        (limited_to_project(tenant, uuid4(), "tenant_admin"), "exists"),
        (tenant.token(uuid4(), "tenant_admin"), "covers_project"),
    ):
        r = await client.post("/v1/rosters/shifts", headers=headers, json=shift)
        assert r.status_code == 422, r.text
        [error] = r.json()["errors"]
        assert (error["field"], error["rule"]) == ("body.staff_id", rule), r.text
    r = await client.post(
        "/v1/rosters/shifts",
        headers=limited_to_project(tenant, uuid4(), "tenant_admin"),
        json={**shift, "staff_id": str(tenant.duty_leader)},
    )
    assert r.status_code == 201, r.text


async def test_an_order_handed_over_to_another_department_is_on_its_heads_board(
    res, tenant: Tenant, client
) -> None:
    """Accepting a hand-over moves the order to the receiver's department, code and all:
    it leaves the engineering head's board and appears on the service center head's."""
    others = await seed_others(res, tenant)
    url, engineer = await engineering_order(res, tenant)
    h = tenant.handler(engineer)
    assert (await client.post(f"{url}/accept", headers=h)).status_code == 200
    r = await client.post(
        f"{url}/hand-over",
        headers=h,
        json={"to_staff_id": str(others.cs_clerk), "reason": "业主要求客服跟进"},
    )
    assert r.status_code == 200, r.text
    r = await client.post(f"{url}/accept", headers=tenant.handler(others.cs_clerk))
    assert r.status_code == 200, r.text
    assert r.json()["department_code"] == "cs"
    cs = await client.get("/v1/departments/cs/board", headers=head_of(tenant, others.cs_head))
    eng = await client.get("/v1/departments/eng/board", headers=head_of(tenant, tenant.head))
    assert cs.json()["open"] == 1 and eng.json()["open"] == 0, (cs.text, eng.text)
