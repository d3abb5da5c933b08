"""Staff bearer tokens: compact JWS (RFC 7515) signed with HMAC-SHA256.

Written against the standard library rather than a JWT package because propdesk needs one
algorithm and one issuer, and a verifier that accepts exactly that: the header must say
HS256 (never "none", never a public-key algorithm), the issuer must be propdesk, and the
signature is compared in constant time before any claim is trusted.

Claims: sub, tenant_id (null only for the platform operator), project_ids (a list, or null
for every project of the tenant), roles, iat, exp, iss.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from propdesk.auth.roles import Role
from propdesk.settings import (
    DEV_TOKEN_SECRET,
    DEVELOPMENT_ENVIRONMENTS,
    MIN_TOKEN_SECRET_BYTES,
    Settings,
)
from propdesk.tenancy import TenantContext

ISSUER = "propdesk"
ALGORITHM = "HS256"
DEFAULT_LEEWAY_SECONDS = 30  # clock skew tolerated between the issuing and verifying hosts
_HEADER = {"alg": ALGORITHM, "typ": "JWT"}


class TokenError(ValueError):
    """A token that must not be trusted; `reason` is safe to show to the client."""

    reason = "invalid token"

    def __init__(self, reason: str | None = None) -> None:
        if reason:
            self.reason = reason
        super().__init__(self.reason)


class MalformedToken(TokenError):
    reason = "malformed token"


class BadSignature(TokenError):
    reason = "bad signature"


class TokenExpired(TokenError):
    reason = "token expired"


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    tenant_id: UUID | None
    project_ids: frozenset[UUID] | None
    roles: frozenset[str]
    iat: int
    exp: int
    iss: str = ISSUER

    @property
    def is_operator(self) -> bool:
        return Role.OPERATOR in self.roles

    def to_context(self) -> TenantContext:
        return TenantContext(
            tenant_id=self.tenant_id,
            project_ids=self.project_ids,
            actor=self.sub,
            roles=self.roles,
        )


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedToken("malformed token: bad base64url") from exc


def check_token_secret(settings: Settings) -> None:
    """Outside development, refuse a guessable token secret: the default, a placeholder
    (`change-me...`, as the deploy/ examples ship) or one under 32 bytes would let anyone
    mint staff and operator tokens. Every service checks it at start
    (`create_service_app`), and every signature here before using the key."""
    if settings.environment in DEVELOPMENT_ENVIRONMENTS:
        return
    secret = settings.token_secret
    if (
        secret == DEV_TOKEN_SECRET
        or "change-me" in secret.lower()
        or len(secret.encode()) < MIN_TOKEN_SECRET_BYTES
    ):
        raise RuntimeError(
            f"PROPDESK_TOKEN_SECRET must be a random secret of at least "
            f"{MIN_TOKEN_SECRET_BYTES} bytes outside development (environment "
            f"{settings.environment!r}); e.g. python -c 'import secrets; "
            f"print(secrets.token_urlsafe(48))'"
        )


def _key(settings: Settings) -> bytes:
    check_token_secret(settings)
    return settings.token_secret.encode()


def _sign(key: bytes, signing_input: bytes) -> bytes:
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def _check_role_scope(tenant_id: UUID | None, roles: frozenset[str]) -> None:
    # The operator works across tenants and only there; a tenant's staff always belong
    # to exactly one tenant. Mixing the two would let one token do both.
    if Role.OPERATOR in roles:
        if tenant_id is not None or len(roles) != 1:
            raise MalformedToken("an operator token has no tenant and no other role")
    elif tenant_id is None:
        raise MalformedToken("a staff token needs a tenant_id")


def issue_token(
    settings: Settings,
    *,
    tenant_id: UUID | None,
    subject: str,
    roles: Iterable[str],
    project_ids: Iterable[UUID] | None = None,
    ttl: timedelta | float | None = None,
    now: float | None = None,
) -> str:
    role_set = frozenset(str(r) for r in roles)
    _check_role_scope(tenant_id, role_set)
    if not subject:
        raise ValueError("a token names who it is for (an empty subject)")
    if project_ids is not None:
        project_ids = list(project_ids)
        if not project_ids:
            raise ValueError(
                "a token limited to projects names at least one (every project: no list)"
            )
    issued = int(now if now is not None else time.time())
    lifetime = ttl.total_seconds() if isinstance(ttl, timedelta) else ttl
    lifetime = int(lifetime if lifetime is not None else settings.token_ttl_seconds)
    if not 0 < lifetime <= settings.token_max_ttl_seconds:
        raise ValueError(
            f"a token lives between 1 s and {settings.token_max_ttl_seconds} s "
            "(PROPDESK_TOKEN_MAX_TTL_SECONDS)"
        )
    expires = issued + lifetime
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": subject,
        "tenant_id": str(tenant_id) if tenant_id else None,
        "project_ids": sorted(str(p) for p in project_ids) if project_ids is not None else None,
        "roles": sorted(role_set),
        "iat": issued,
        "exp": expires,
    }
    header = _b64encode(json.dumps(_HEADER, separators=(",", ":")).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    return f"{header}.{payload}.{_b64encode(_sign(_key(settings), signing_input))}"


def verify_token(
    settings: Settings,
    token: str,
    *,
    now: float | None = None,
    leeway_seconds: int = DEFAULT_LEEWAY_SECONDS,
) -> Claims:
    """The claims of a genuine, unexpired propdesk token; TokenError (a subclass naming the
    reason) otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise MalformedToken("malformed token: expected three base64url parts")
    header_part, payload_part, signature_part = parts
    try:
        signing_input = f"{header_part}.{payload_part}".encode("ascii")
    except UnicodeEncodeError as exc:
        raise MalformedToken() from exc
    header = _json_object(_b64decode(header_part))
    if header.get("alg") != ALGORITHM:
        raise MalformedToken(f"unsupported algorithm, expected {ALGORITHM}")
    expected = _sign(_key(settings), signing_input)
    if not hmac.compare_digest(expected, _b64decode(signature_part)):
        raise BadSignature()
    claims = _json_object(_b64decode(payload_part))
    try:
        if claims.get("iss") != ISSUER:
            raise MalformedToken("wrong issuer")
        sub = claims["sub"]
        iat = claims["iat"]
        exp = claims["exp"]
        roles = claims["roles"]
        if (
            not isinstance(sub, str)
            or not isinstance(iat, int)
            or not isinstance(exp, int)
            or not isinstance(roles, list)
            or not all(isinstance(r, str) for r in roles)
        ):
            raise MalformedToken("malformed claims")
        tenant_id = UUID(claims["tenant_id"]) if claims.get("tenant_id") is not None else None
        raw_projects = claims.get("project_ids")
        if raw_projects is not None and not isinstance(raw_projects, list):
            raise MalformedToken("malformed claims: project_ids")
        project_ids = frozenset(UUID(p) for p in raw_projects) if raw_projects is not None else None
        # Nobody is acting, or acting for no project: a credential that can do nothing, and
        # whose Idempotency-Keys would have no namespace (intake.caller_namespace).
        if not sub:
            raise MalformedToken("malformed claims: sub is empty")
        if project_ids is not None and not project_ids:
            raise MalformedToken("malformed claims: project_ids is an empty list")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, TokenError):
            raise
        raise MalformedToken("malformed claims") from exc
    current = now if now is not None else time.time()
    if current > exp + leeway_seconds:
        raise TokenExpired()
    # Whoever holds the secret cannot mint a token for years, nor one dated ahead.
    if exp - iat > settings.token_max_ttl_seconds:
        raise MalformedToken("token lifetime exceeds the maximum")
    if iat > current + leeway_seconds:
        raise MalformedToken("token issued in the future")
    role_set = frozenset(roles)
    _check_role_scope(tenant_id, role_set)
    return Claims(
        sub=sub,
        tenant_id=tenant_id,
        project_ids=project_ids,
        roles=role_set,
        iat=iat,
        exp=exp,
    )


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MalformedToken("malformed token: not JSON") from exc
    if not isinstance(value, dict):
        raise MalformedToken("malformed token: not a JSON object")
    return value
