"""What the current HTTP request is, for logs and problem bodies.

The request middleware opens one `RequestInfo` per request; authentication later records the
tenant on it. It is a mutable object in a context variable (rather than a variable per
field) so that what a dependency learns is still visible to the middleware's access log
after the endpoint returns, and never leaks into the next request.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass

from propdesk.tenancy import TenantContext


@dataclass(slots=True)
class RequestInfo:
    request_id: str
    tenant: TenantContext | None = None


request_info_var: contextvars.ContextVar[RequestInfo | None] = contextvars.ContextVar(
    "propdesk_request_info", default=None
)


def current_request() -> RequestInfo | None:
    return request_info_var.get()


def current_request_id() -> str | None:
    info = request_info_var.get()
    return info.request_id if info is not None else None


def bind_tenant(ctx: TenantContext) -> None:
    """Remember who the request acts for, so the access log and later lines name them."""
    info = request_info_var.get()
    if info is not None:
        info.tenant = ctx
