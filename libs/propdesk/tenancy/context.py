"""Who is acting, for which tenant and which projects.

The context is built from an authenticated credential (staff token, API key) or from an
event envelope, and handed to `propdesk.db.session.tenant_transaction`, which makes
PostgreSQL enforce it for the length of one transaction.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from uuid import UUID

ALL_PROJECTS: None = None  # project_ids=None means every project of the tenant


@dataclass(frozen=True, slots=True)
class TenantContext:
    tenant_id: UUID | None
    project_ids: frozenset[UUID] | None = ALL_PROJECTS
    actor: str = "anonymous"
    roles: frozenset[str] = field(default_factory=frozenset)
    # System work (outbox relay, dead letters) that is not done on behalf of a tenant.
    system: bool = False

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def can_see_project(self, project_id: UUID | None) -> bool:
        if project_id is None or self.project_ids is None:
            return True
        return project_id in self.project_ids

    def settings(self) -> dict[str, str]:
        """The transaction-local PostgreSQL settings the RLS policies read."""
        return {
            "app.tenant_id": str(self.tenant_id) if self.tenant_id else "",
            "app.project_ids": "*"
            if self.project_ids is None
            else ",".join(sorted(str(p) for p in self.project_ids)),
            "app.actor": self.actor,
            "app.roles": ",".join(sorted(self.roles)),
            "app.system": "on" if self.system else "",
        }

    @classmethod
    def for_tenant(
        cls,
        tenant_id: UUID,
        project_ids: set[UUID] | frozenset[UUID] | None = None,
        *,
        actor: str = "system",
        roles: set[str] | frozenset[str] = frozenset(),
    ) -> TenantContext:
        return cls(
            tenant_id=tenant_id,
            project_ids=frozenset(project_ids) if project_ids is not None else None,
            actor=actor,
            roles=frozenset(roles),
        )


def system_context(actor: str) -> TenantContext:
    return TenantContext(tenant_id=None, actor=actor, system=True)


_current: contextvars.ContextVar[TenantContext | None] = contextvars.ContextVar(
    "propdesk_tenant_context", default=None
)


def current_context() -> TenantContext | None:
    """The context of the request or event being handled (for logs and traces)."""
    return _current.get()


@contextmanager
def use_context(ctx: TenantContext) -> Iterator[TenantContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
