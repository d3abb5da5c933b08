"""FastAPI dependencies that turn a request's credential into a `TenantContext`.

Authentication is a list of `Authenticator`s on `app.state.authenticators`, tried in order;
the first that recognises a credential decides. The service factory installs the staff
bearer-token authenticator; a service adds its own (intake: API keys from its own table)
with `app.state.authenticators.append(...)` and no change here.

    @router.get("/complaints")
    async def list_complaints(ctx: TenantContext = require_staff(Role.INTAKE_CLERK)): ...
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Protocol, runtime_checkable

from fastapi import Depends
from opentelemetry import trace
from starlette.requests import Request

from propdesk.auth.roles import Role
from propdesk.auth.tokens import TokenError, verify_token
from propdesk.service.problems import FieldError, ProblemError, field_error
from propdesk.service.request_context import bind_tenant
from propdesk.settings import Settings
from propdesk.tenancy import TenantContext

BEARER_REALM = 'Bearer realm="propdesk"'


@runtime_checkable
class Authenticator(Protocol):
    # The WWW-Authenticate challenge announcing this scheme on a 401.
    challenge: str

    async def authenticate(self, request: Request) -> TenantContext | None:
        """None when the request carries no credential of this kind; a context when it
        carries a valid one; raise `unauthenticated(...)` when it carries a bad one."""
        ...


def unauthenticated(
    detail: str, challenge: str | None = None, errors: list[FieldError] | None = None
) -> ProblemError:
    return ProblemError(
        401,
        "Authentication required",
        code="unauthenticated",
        detail=detail,
        headers={"WWW-Authenticate": challenge or BEARER_REALM},
        errors=errors,
    )


def forbidden(detail: str, required_roles: list[str]) -> ProblemError:
    return ProblemError(
        403,
        "Forbidden",
        code="forbidden",
        detail=detail,
        extensions={"required_roles": required_roles},
    )


class BearerTokenAuthenticator:
    """Staff tokens from `propdesk.auth.tokens` in `Authorization: Bearer <token>`."""

    challenge = BEARER_REALM

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def authenticate(self, request: Request) -> TenantContext | None:
        header = request.headers.get("authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            claims = verify_token(self.settings, token.strip())
        except TokenError as exc:
            # RFC 6750 §3: say why, so clients know to refresh rather than retry.
            raise unauthenticated(
                f"The bearer token was rejected: {exc.reason}.",
                f'{BEARER_REALM}, error="invalid_token", error_description="{exc.reason}"',
            ) from exc
        return claims.to_context()


def authenticators_of(request: Request) -> list[Authenticator]:
    return list(getattr(request.app.state, "authenticators", ()))


# Headers that carry a credential, as they are written. One of them twice (two tokens, two
# keys) names two callers: which one is not guessed. A token and a key together are read
# in the authenticators' order (a token first), as documented.
CREDENTIAL_HEADERS = {"authorization": "Authorization", "x-api-key": "X-API-Key"}


def one_credential(request: Request) -> None:
    """401 when a credential header (Authorization, X-API-Key) comes more than once."""
    for key, name in CREDENTIAL_HEADERS.items():
        if (n := len(request.headers.getlist(key))) > 1:
            raise ProblemError(
                401,
                "Authentication required",
                code="unauthenticated",
                detail=f"Send one credential: this request has {n} {name} headers.",
                errors=[field_error(f"header.{name}", "single", f"one {name} header")],
            )


async def authenticate(request: Request) -> TenantContext:
    """The context of the first authenticator that recognises the request; 401 if none,
    or if a credential header comes twice."""
    one_credential(request)
    authenticators = authenticators_of(request)
    for authenticator in authenticators:
        ctx = await authenticator.authenticate(request)
        if ctx is not None:
            return ctx
    challenges = ", ".join(a.challenge for a in authenticators) or BEARER_REALM
    unread = _unread_credential(request, takes_keys="X-API-Key" in challenges)
    if unread is None:
        raise unauthenticated("This endpoint needs a credential.", challenges)
    header, why = unread
    raise unauthenticated(
        f"{why}: this endpoint takes {challenges}.",
        challenges,
        [field_error(f"header.{header}", "accepted_credential", why)],
    )


def _unread_credential(request: Request, *, takes_keys: bool) -> tuple[str, str] | None:
    """A credential header the request carries that no authenticator here read: an API key
    sent to a service of staff tokens (only intake takes keys), or an Authorization scheme
    other than Bearer. None when the request carries none."""
    if request.headers.get("x-api-key") is not None:
        return "X-API-Key", "API keys are not accepted by this service"
    if (authorization := request.headers.get("authorization")) is not None:
        # `<scheme> <credentials>` (RFC 9110 §11.4): the scheme is named back only when the
        # header has that shape, never a bare token or key sent without its scheme.
        scheme, space, _ = authorization.partition(" ")
        if space and scheme.lower() in ("apikey", "api-key", "key"):
            return "Authorization", (
                "an API key goes in the X-API-Key header, not Authorization"
                if takes_keys
                else "API keys are not accepted by this service"
            )
        if space and _AUTH_SCHEME.fullmatch(scheme):
            return "Authorization", f"the Authorization scheme {scheme!r} is not accepted here"
        return "Authorization", "the Authorization header is not `<scheme> <credentials>`"
    return None


# An auth-scheme is an RFC 9110 token; real ones are short (Bearer, Basic, Digest, ApiKey).
_AUTH_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,31}")


def authorize(ctx: TenantContext, roles: tuple[str, ...]) -> None:
    """403 unless `ctx` holds one of `roles` (any role when none are named).

    Operator credentials carry no tenant and count only where the operator role is asked
    for: everywhere else a context without a tenant would mean "no RLS scope".
    """
    wanted = sorted(str(r) for r in roles)
    if ctx.tenant_id is None and not ctx.system and Role.OPERATOR not in roles:
        raise forbidden("Operator credentials are valid only on operator endpoints.", wanted)
    if roles and not ctx.has_role(*roles):
        names = ", ".join(wanted)
        raise forbidden(
            f"This endpoint requires the role {names}."
            if len(wanted) == 1
            else f"This endpoint requires one of the roles {names}.",
            wanted,
        )


def require_tenant_wide(ctx: TenantContext, what: str) -> None:
    """403 `tenant-wide-scope-required` unless `ctx` covers every project of its company:
    what is the company's (its rules, its onboarding file, a routing rule or a day off for
    every project) must not be changed by a credential limited to some projects. `what`
    completes "... needs a credential for every project of the company"."""
    if ctx.project_ids is not None:
        raise ProblemError(
            403,
            "Forbidden",
            code="tenant-wide-scope-required",
            detail=f"{what} needs a credential for every project of the company.",
        )


def require_staff(*roles: str) -> Any:
    """A `Depends` resolving to the caller's TenantContext, requiring any one of `roles`."""

    async def dependency(request: Request) -> TenantContext:
        ctx = await authenticate(request)
        authorize(ctx, roles)
        bind_tenant(ctx)
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute("propdesk.tenant_id", str(ctx.tenant_id or ""))
            span.set_attribute("propdesk.actor", ctx.actor)
        return ctx

    return Depends(dependency)


def require_operator() -> Any:
    return require_staff(Role.OPERATOR)


# Any authenticated tenant staff member, whatever their role.
StaffContext = Annotated[TenantContext, require_staff()]
