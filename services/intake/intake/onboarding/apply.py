"""Apply an onboarding document: create what is missing, update what differs, leave the rest,
and tell other services through the outbox about every company, project, department and
staff member created or changed. Re-running the same document changes nothing and emits
nothing."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from intake import directory_cache
from intake.onboarding.document import CompanyDocument, RoutingDoc
from intake.store import tenants as directory
from intake.store.tables import buildings, departments, projects, staff, tenants, units
from propdesk.bus import Outbox
from propdesk.db.session import apply_context, tenant_transaction
from propdesk.events import EventPayload, new_event
from propdesk.events.contracts.tenant import (
    DepartmentUpserted,
    ProjectUpserted,
    RoutingHintsUpserted,
    StaffUpserted,
    TenantUpserted,
)
from propdesk.tenancy import TenantContext
from propdesk.uuid7 import uuid7

PRODUCER = "intake"
outbox = Outbox("intake")


class TenantMismatch(PermissionError):
    """The document names a company other than the caller's."""


@dataclass
class OnboardingReport:
    tenant_id: UUID
    tenant_code: str
    created: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant_id": str(self.tenant_id),
            "tenant": self.tenant_code,
            "created": self.created,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "counts": {
                "created": len(self.created),
                "changed": len(self.changed),
                "unchanged": len(self.unchanged),
            },
        }


def _differs(row: Any, values: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, value in values.items():
        current = getattr(row, name)
        if isinstance(current, list) and isinstance(value, list):
            # Entries that are mappings come back from jsonb with their keys reordered, so
            # they compare by a canonical form. Ids and roles are sets; routing entries
            # are not: their order is their rule ids', which break ties between rules.
            left, right = list(map(_canonical, current)), list(map(_canonical, value))
            same = left == right if name in _ORDERED else sorted(left) == sorted(right)
        else:
            same = current == value
        if not same:
            out[name] = value
    return out


_ORDERED = frozenset({"routing"})


def _canonical(item: Any) -> str:
    if isinstance(item, dict):
        return json.dumps(item, sort_keys=True, ensure_ascii=False, default=str)
    return str(item)


async def apply_document(
    sessions: async_sessionmaker[AsyncSession],
    doc: CompanyDocument,
    *,
    actor: str,
    only_tenant_id: UUID | None = None,
) -> OnboardingReport:
    """One transaction. `only_tenant_id` (a tenant admin's own company) refuses any other."""
    code = doc.tenant.code
    async with tenant_transaction(sessions, TenantContext(tenant_id=None, actor=actor)) as s:
        # Two onboardings of one company at once would race on every natural key.
        await s.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"onb:{code}"})
        tenant_id = await directory.tenant_id_by_code(s, code)
        if only_tenant_id is not None and tenant_id != only_tenant_id:
            raise TenantMismatch(code)
        is_new = tenant_id is None
        tenant_id = tenant_id or uuid7()
        await apply_context(s, TenantContext.for_tenant(tenant_id, actor=actor))
        report = OnboardingReport(tenant_id, code)
        events: list[tuple[EventPayload, UUID, UUID | None]] = []
        await _apply(s, doc, tenant_id, is_new, report, events, actor)
        await outbox.add(
            s,
            *(
                new_event(
                    payload,
                    tenant_id=tenant_id,
                    project_id=project_id,
                    aggregate_id=aggregate_id,
                    producer=PRODUCER,
                    actor=actor,
                )
                for payload, aggregate_id, project_id in events
            ),
        )
    # After commit: a recording that read the old directory cannot refill it afterwards.
    directory_cache.invalidate_tenant(tenant_id)
    return report


async def _apply(
    s: AsyncSession,
    doc: CompanyDocument,
    tenant_id: UUID,
    is_new: bool,
    report: OnboardingReport,
    events: list[tuple[EventPayload, UUID, UUID | None]],
    actor: str,
) -> None:
    t = doc.tenant
    tenant_values = {
        "name": t.name,
        "settings": t.settings,
        "rules": t.rules,
        "routing": [r.as_stored() for r in doc.routing],
    }
    if not is_new and "rules" not in t.model_fields_set:
        # Rules are also edited through /v1/rules; a document that does not mention them
        # leaves them as they are.
        del tenant_values["rules"]
    label = f"tenant:{t.code}"
    routing_changed = False
    if is_new:
        await directory.insert_row(s, tenants, {"id": tenant_id, "code": t.code, **tenant_values})
        report.created.append(label)
        changed_tenant = True
        routing_changed = bool(doc.routing)
        if t.rules:
            await directory.record_rules_change(s, tenant_id, {}, t.rules, actor)
    else:
        # Locked before it is compared: rules put through /v1/rules meanwhile would be
        # written again after their commit and reported (and sent) as this run's change.
        row = await directory.locked_tenant(s, tenant_id)
        diff = _differs(row, tenant_values)
        routing_changed = "routing" in diff
        # Rules travel in no event (only intake classifies); routing has its own.
        changed_tenant = bool(diff.keys() - {"routing", "rules"})
        if diff:
            await directory.update_row(s, tenants, tenant_id, diff)
        if "rules" in diff:
            # Audited as a change through /v1/rules is.
            await directory.record_rules_change(
                s, tenant_id, dict(row.rules or {}), diff["rules"], actor
            )
        (report.changed if diff else report.unchanged).append(label)
    if changed_tenant:
        events.append(
            (
                TenantUpserted(tenant_id=tenant_id, code=t.code, name=t.name, settings=t.settings),
                tenant_id,
                None,
            )
        )

    existing_projects = {r.code: r for r in await s.execute(select(projects))}
    project_ids: dict[str, UUID] = {}
    for p in doc.projects:
        values = {"name": p.name, "city": p.city, "time_zone": p.time_zone, "calendar": p.calendar}
        pid = await _upsert(
            s,
            projects,
            existing_projects.get(p.code),
            values,
            {"tenant_id": tenant_id, "code": p.code},
            f"project:{p.code}",
            report,
        )
        project_ids[p.code] = pid.id
        if pid.touched:
            events.append(
                (
                    ProjectUpserted(
                        project_id=pid.id,
                        code=p.code,
                        name=p.name,
                        city=p.city,
                        time_zone=p.time_zone,
                        calendar=p.calendar,
                    ),
                    pid.id,
                    pid.id,
                )
            )
        existing_buildings = {
            r.code: r
            for r in await s.execute(select(buildings).where(buildings.c.project_id == pid.id))
        }
        for b in p.buildings:
            bid = await _upsert(
                s,
                buildings,
                existing_buildings.get(b.code),
                {"name": b.name or b.code},
                {"tenant_id": tenant_id, "project_id": pid.id, "code": b.code},
                f"building:{p.code}/{b.code}",
                report,
            )
            existing_units = {
                r.code: r
                for r in await s.execute(select(units).where(units.c.building_id == bid.id))
            }
            for u in b.units:
                await _upsert(
                    s,
                    units,
                    existing_units.get(u),
                    {},
                    {
                        "tenant_id": tenant_id,
                        "project_id": pid.id,
                        "building_id": bid.id,
                        "code": u,
                    },
                    f"unit:{p.code}/{b.code}/{u}",
                    report,
                )

    existing_departments = {r.code: r for r in await s.execute(select(departments))}
    department_ids: dict[str, UUID] = {}
    for d in doc.departments:
        project_id = project_ids.get(d.project) if d.project else None
        values = {"name": d.name, "kind": d.kind, "project_id": project_id}
        did = await _upsert(
            s,
            departments,
            existing_departments.get(d.code),
            values,
            {"tenant_id": tenant_id, "code": d.code},
            f"department:{d.code}",
            report,
        )
        department_ids[d.code] = did.id
        if did.touched:
            events.append(
                (
                    DepartmentUpserted(
                        department_id=did.id,
                        project_id=project_id,
                        code=d.code,
                        name=d.name,
                        kind=d.kind,
                    ),
                    did.id,
                    project_id,
                )
            )

    existing_staff = {r.code: r for r in await s.execute(select(staff))}
    staff_ids: dict[str, UUID] = {}
    for m in doc.staff:
        member_projects = [project_ids[c] for c in m.projects]
        department_id = department_ids.get(m.department) if m.department else None
        values = {
            "name": m.name,
            "roles": [str(r) for r in m.roles],
            "department_id": department_id,
            "project_ids": member_projects,
            "active": m.active,
            # Stored, so a change of skills alone is a change dispatch hears of.
            "skills": list(m.skills),
        }
        sid = await _upsert(
            s,
            staff,
            existing_staff.get(m.code),
            values,
            {"tenant_id": tenant_id, "code": m.code},
            f"staff:{m.code}",
            report,
        )
        staff_ids[m.code] = sid.id
        if sid.touched:
            events.append(
                (
                    StaffUpserted(
                        staff_id=sid.id,
                        project_ids=member_projects,
                        department_id=department_id,
                        name=m.name,
                        roles=[str(r) for r in m.roles],
                        skills=m.skills,
                        active=m.active,
                    ),
                    sid.id,
                    None,
                )
            )

    if routing_changed:
        # After the projects, departments and staff it names: dispatch applies the
        # directory's events in order and resolves the codes against what it has by then.
        events.append(
            (
                RoutingHintsUpserted(
                    tenant_id=tenant_id,
                    hints=[_hint(r, staff_ids) for r in doc.routing],
                ),
                tenant_id,
                None,
            )
        )


def _hint(entry: RoutingDoc, staff_ids: dict[str, UUID]) -> dict[str, Any]:
    """A routing entry as dispatch reads it: the staff member by id, the rest by code."""
    hint = entry.as_stored()
    code = hint.pop("handler_staff", None)
    if code is not None:
        hint["handler_staff_id"] = str(staff_ids[code])
    return hint


@dataclass(frozen=True, slots=True)
class _Upserted:
    id: UUID
    touched: bool


async def _upsert(
    s: AsyncSession,
    table: Any,
    row: Any,
    values: dict[str, Any],
    key: dict[str, Any],
    label: str,
    report: OnboardingReport,
) -> _Upserted:
    if row is None:
        new_id = uuid7()
        await directory.insert_row(s, table, {"id": new_id, **key, **values})
        report.created.append(label)
        return _Upserted(new_id, True)
    diff = _differs(row, values)
    if diff:
        await directory.update_row(s, table, row.id, diff)
        report.changed.append(label)
        return _Upserted(row.id, True)
    report.unchanged.append(label)
    return _Upserted(row.id, False)
