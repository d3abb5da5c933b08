"""Tenant directory events: property companies, projects, departments, staff."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator

from propdesk.events.envelope import EventPayload


def _known_time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


# An IANA time zone name the platform can compute in (`Asia/Shanghai`, `Asia/Urumqi`).
TimeZoneName = Annotated[str, AfterValidator(_known_time_zone)]

# Files of a host's zone directory that load as zones but name none: `localtime` follows
# the host's clock setting, `right/` counts leap seconds (UTC 27 s off), `posix/` copies
# the others, `Factory` is "-00". What a person names a project's zone by is never one.
_HOST_FILES = frozenset({"localtime", "posixrules", "Factory"})
_HOST_PREFIXES = ("posix/", "right/")


def _named_time_zone(value: str) -> str:
    if value in _HOST_FILES or value.startswith(_HOST_PREFIXES):
        raise ValueError(
            f"{value!r} is a file of the host's zone directory, not a zone's name:"
            " give the IANA name, e.g. Asia/Shanghai"
        )
    return _known_time_zone(value)


# What input may name (an onboarding document's project): a zone's IANA name, not a file
# of the host's zone directory. Events keep `TimeZoneName`, so what an earlier release
# stored still applies.
IanaTimeZoneName = Annotated[str, AfterValidator(_named_time_zone)]


class TenantUpserted(EventPayload):
    event_type = "tenant.upserted"
    aggregate = "tenant"

    tenant_id: UUID
    code: str
    name: str
    settings: dict[str, object] = {}


class ProjectUpserted(EventPayload):
    event_type = "project.upserted"
    aggregate = "project"

    project_id: UUID
    code: str
    name: str
    city: str | None = None
    # Every clock of the project runs in it: an unknown zone is refused at the producer
    # (and a consumer treats such an event as malformed) rather than stored.
    time_zone: TimeZoneName = "Asia/Shanghai"
    calendar: str = "cn"


class DepartmentUpserted(EventPayload):
    event_type = "department.upserted"
    aggregate = "department"

    department_id: UUID
    project_id: UUID | None
    code: str
    name: str
    kind: str


class StaffUpserted(EventPayload):
    event_type = "staff.upserted"
    aggregate = "staff"

    staff_id: UUID
    project_ids: list[UUID]
    department_id: UUID | None
    name: str
    roles: list[str]
    skills: list[str] = []
    active: bool = True


class RoutingHintsUpserted(EventPayload):
    """The tenant's routing rules from its onboarding file. Intake checks each entry against
    the file (category, grade and role values; department, project and staff codes it
    lists) and sends it after the directory events it names; dispatch turns them into rules.
    Entry keys: department, category, grade, building, place, project (code),
    handler_role, handler_staff_id, inform (department codes), priority, note."""

    event_type = "tenant.routing_upserted"
    aggregate = "tenant"

    tenant_id: UUID
    hints: list[dict[str, object]]
