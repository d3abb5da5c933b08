"""Staff tokens and the FastAPI auth dependencies."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request

from propdesk.auth.dependencies import (
    StaffContext,
    require_operator,
    require_staff,
    unauthenticated,
)
from propdesk.auth.roles import Role
from propdesk.auth.tokens import (
    BadSignature,
    MalformedToken,
    TokenError,
    TokenExpired,
    check_token_secret,
    issue_token,
    verify_token,
)
from propdesk.service import create_service_app
from propdesk.service.query_params import READS_RAW_QUERY
from propdesk.settings import Settings
from propdesk.tenancy import TenantContext

TENANT = uuid.UUID("22222222-2222-4222-8222-222222222222")
PROJECT_A = uuid.UUID("33333333-3333-4333-8333-333333333333")
PROJECT_B = uuid.UUID("44444444-4444-4444-8444-444444444444")
SETTINGS = Settings(token_secret="test-secret-1", token_ttl_seconds=600)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def unb64(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def clerk_token(**kwargs) -> str:
    return issue_token(
        SETTINGS,
        tenant_id=TENANT,
        subject="clerk-1",
        roles=kwargs.pop("roles", [Role.INTAKE_CLERK]),
        **kwargs,
    )


# -- tokens ----------------------------------------------------------------------------


def test_round_trip_keeps_every_claim() -> None:
    now = time.time()
    token = clerk_token(project_ids=[PROJECT_B, PROJECT_A], roles=["handler", "quality"])
    claims = verify_token(SETTINGS, token)
    assert claims.sub == "clerk-1"
    assert claims.tenant_id == TENANT
    assert claims.project_ids == frozenset({PROJECT_A, PROJECT_B})
    assert claims.roles == frozenset({"handler", "quality"})
    assert claims.iss == "propdesk"
    assert abs(claims.iat - now) <= 1 and claims.exp == claims.iat + 600
    ctx = claims.to_context()
    assert ctx == TenantContext(
        tenant_id=TENANT,
        project_ids=frozenset({PROJECT_A, PROJECT_B}),
        actor="clerk-1",
        roles=frozenset({"handler", "quality"}),
    )
    header = unb64(token.split(".")[0])
    assert header == {"alg": "HS256", "typ": "JWT"}


def test_all_projects_is_null() -> None:
    token = clerk_token()
    assert unb64(token.split(".")[1])["project_ids"] is None
    assert verify_token(SETTINGS, token).project_ids is None


def test_tampered_payload_is_rejected() -> None:
    header, payload, signature = clerk_token().split(".")
    claims = unb64(payload)
    claims["roles"] = ["tenant_admin"]
    with pytest.raises(BadSignature):
        verify_token(SETTINGS, f"{header}.{b64(claims)}.{signature}")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(BadSignature):
        verify_token(SETTINGS, f"{header}.{payload}.{flipped}")


def test_other_secret_is_rejected() -> None:
    with pytest.raises(BadSignature):
        verify_token(Settings(token_secret="another"), clerk_token())


def test_alg_none_and_other_algorithms_are_rejected() -> None:
    _, payload, signature = clerk_token().split(".")
    for alg in ("none", "HS512", "RS256"):
        with pytest.raises(MalformedToken, match="algorithm"):
            verify_token(SETTINGS, f"{b64({'alg': alg, 'typ': 'JWT'})}.{payload}.{signature}")


def test_expiry_with_leeway() -> None:
    issued = 1_700_000_000
    token = clerk_token(ttl=60, now=issued)
    assert verify_token(SETTINGS, token, now=issued + 60).sub == "clerk-1"
    assert verify_token(SETTINGS, token, now=issued + 85).sub == "clerk-1"  # within 30 s leeway
    with pytest.raises(TokenExpired):
        verify_token(SETTINGS, token, now=issued + 91)
    with pytest.raises(TokenExpired):
        verify_token(SETTINGS, token, now=issued + 61, leeway_seconds=0)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "..", "!!!.???.***", f"{b64({'alg': 'HS256'})}.e30", "ü.ü.ü"],
)
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(MalformedToken):
        verify_token(SETTINGS, token)


def test_signed_but_malformed_claims_are_rejected() -> None:
    # A correctly signed token whose claims are wrong must still fail: forge one by signing
    # the bad payload with the real key the same way issue_token does.
    import hashlib
    import hmac

    header = b64({"alg": "HS256", "typ": "JWT"})
    for claims in (
        {"iss": "evil", "sub": "x", "tenant_id": str(TENANT), "roles": [], "iat": 1, "exp": 2},
        {"iss": "propdesk", "sub": "x", "tenant_id": "not-a-uuid", "roles": [], "iat": 1, "exp": 2},
        {
            "iss": "propdesk",
            "sub": "x",
            "tenant_id": str(TENANT),
            "roles": "admin",
            "iat": 1,
            "exp": 2,
        },
        {
            "iss": "propdesk",
            "sub": "x",
            "tenant_id": None,
            "roles": ["handler"],
            "iat": 1,
            "exp": 2,
        },
        # Nobody, or for no project.
        {"iss": "propdesk", "sub": "", "tenant_id": str(TENANT), "roles": [], "iat": 1, "exp": 2},
        {
            "iss": "propdesk",
            "sub": "x",
            "tenant_id": str(TENANT),
            "project_ids": [],
            "roles": [],
            "iat": 1,
            "exp": 2,
        },
    ):
        payload = b64(claims)
        sig = hmac.new(b"test-secret-1", f"{header}.{payload}".encode(), hashlib.sha256).digest()
        token = f"{header}.{payload}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"
        with pytest.raises(MalformedToken):
            verify_token(SETTINGS, token, now=1)


def test_a_token_is_issued_for_someone_and_for_some_projects() -> None:
    with pytest.raises(ValueError, match="subject"):
        issue_token(SETTINGS, tenant_id=TENANT, subject="", roles=["handler"])
    with pytest.raises(ValueError, match="at least one"):
        issue_token(SETTINGS, tenant_id=TENANT, subject="x", roles=["handler"], project_ids=[])
    # A generator of project ids is read once, as a list.
    token = issue_token(
        SETTINGS, tenant_id=TENANT, subject="x", roles=["handler"], project_ids=iter([TENANT])
    )
    assert verify_token(SETTINGS, token).project_ids == frozenset({TENANT})


def test_operator_tokens_have_no_tenant() -> None:
    token = issue_token(SETTINGS, tenant_id=None, subject="ops", roles=[Role.OPERATOR])
    claims = verify_token(SETTINGS, token)
    assert claims.tenant_id is None and claims.is_operator
    with pytest.raises(TokenError):
        issue_token(SETTINGS, tenant_id=TENANT, subject="ops", roles=[Role.OPERATOR])
    with pytest.raises(TokenError):
        issue_token(SETTINGS, tenant_id=None, subject="ops", roles=[Role.OPERATOR, Role.QUALITY])
    with pytest.raises(TokenError):
        issue_token(SETTINGS, tenant_id=None, subject="clerk", roles=[Role.INTAKE_CLERK])


@pytest.mark.parametrize("environment", ["production", "prod", "staging"])
@pytest.mark.parametrize(
    "secret",
    [
        Settings.model_fields["token_secret"].default,  # the development default
        "change-me-token-secret",  # the deploy/ examples' placeholder
        "short-but-random-Zq8",  # under 32 bytes
    ],
)
def test_outside_development_a_guessable_secret_is_refused(environment: str, secret: str) -> None:
    with pytest.raises(RuntimeError, match="TOKEN_SECRET"):
        check_token_secret(Settings(environment=environment, token_secret=secret))
    with pytest.raises(RuntimeError, match="TOKEN_SECRET"):
        issue_token(
            Settings(environment=environment, token_secret=secret),
            tenant_id=TENANT,
            subject="x",
            roles=["handler"],
        )
    good = Settings(environment=environment, token_secret="q8V1f0nC3x2rJm5u7WbK9pLs4dTy6hEzAa0")
    check_token_secret(good)
    assert verify_token(good, issue_token(good, tenant_id=TENANT, subject="x", roles=["handler"]))
    check_token_secret(Settings(environment="development", token_secret=secret))  # a laptop


def test_no_token_lives_longer_than_the_maximum_nor_starts_in_the_future() -> None:
    import base64
    import hashlib
    import hmac
    import json

    with pytest.raises(ValueError, match="between 1 s and"):
        issue_token(
            SETTINGS, tenant_id=TENANT, subject="x", roles=["handler"], ttl=10 * 365 * 86400
        )

    def forged(iat: int, exp: int) -> str:
        """Signed with the right secret, as a holder of it could: only the claims are off."""

        def part(obj: dict) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        head = part({"alg": "HS256", "typ": "JWT"})
        claims = {"iss": "propdesk", "sub": "x", "tenant_id": str(TENANT), "project_ids": None}
        body = part({**claims, "roles": ["handler"], "iat": iat, "exp": exp})
        mac = hmac.new(SETTINGS.token_secret.encode(), f"{head}.{body}".encode(), hashlib.sha256)
        return f"{head}.{body}." + base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()

    now = int(time.time())
    assert verify_token(SETTINGS, forged(now, now + 3600), now=now).sub == "x"
    with pytest.raises(TokenError, match="lifetime"):
        verify_token(SETTINGS, forged(now, now + 10 * 365 * 86400), now=now)
    with pytest.raises(TokenError, match="future"):
        verify_token(SETTINGS, forged(now + 3600, now + 7200), now=now)


# -- dependencies ----------------------------------------------------------------------

router = APIRouter()


# Its plugged-in authenticator below also reads `api_key` from the query.
@router.get("/clerk", openapi_extra=READS_RAW_QUERY)
async def clerk_only(ctx: TenantContext = require_staff(Role.INTAKE_CLERK)) -> dict:
    return {"tenant_id": str(ctx.tenant_id), "actor": ctx.actor, "roles": sorted(ctx.roles)}


@router.get("/supervisors")
async def supervisors(
    ctx: TenantContext = require_staff(Role.CS_SUPERVISOR, Role.DIRECTOR),
) -> dict:
    return {"actor": ctx.actor}


@router.get("/anyone")
async def anyone(ctx: StaffContext) -> dict:
    return {"actor": ctx.actor}


@router.get("/ops")
async def ops(ctx: TenantContext = require_operator()) -> dict:
    return {"actor": ctx.actor, "tenant_id": ctx.tenant_id}


class ApiKeyAuthenticator:
    """What intake will plug in: keys looked up in its own table (a dict here)."""

    challenge = 'ApiKey header="X-API-Key"'

    def __init__(self, keys: dict[str, TenantContext]) -> None:
        self.keys = keys

    async def authenticate(self, request: Request) -> TenantContext | None:
        key = request.headers.get("x-api-key") or request.query_params.get("api_key")
        if key is None:
            return None
        if key not in self.keys:
            raise unauthenticated("Unknown API key.", self.challenge)
        return self.keys[key]


def make_app() -> FastAPI:
    return create_service_app("authsvc", settings=SETTINGS, routers=[router], configure_logs=False)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = make_app()
    integration = TenantContext.for_tenant(TENANT, actor="apikey:cc", roles={Role.INTEGRATION})
    clerk_key = TenantContext.for_tenant(TENANT, actor="apikey:desk", roles={Role.INTAKE_CLERK})
    app.state.authenticators.append(
        ApiKeyAuthenticator({"k-integration": integration, "k-clerk": clerk_key})
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_valid_token_yields_the_tenant_context(client: httpx.AsyncClient) -> None:
    resp = await client.get("/clerk", headers=bearer(clerk_token()))
    assert resp.status_code == 200
    assert resp.json() == {"tenant_id": str(TENANT), "actor": "clerk-1", "roles": ["intake_clerk"]}


async def test_missing_credential_is_401_with_challenges(client: httpx.AsyncClient) -> None:
    resp = await client.get("/clerk")
    assert resp.status_code == 401
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["code"] == "unauthenticated"
    challenge = resp.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="propdesk"') and "ApiKey" in challenge
    resp = await client.get("/clerk", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert resp.status_code == 401


async def test_a_credential_this_service_does_not_read_is_named() -> None:
    """A service of staff tokens alone (dispatch, reporting) told an API key, or another
    Authorization scheme, says that this credential is not taken here, not that none came."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app()), base_url="http://testserver"
    ) as tokens_only:
        resp = await tokens_only.get("/anyone", headers={"X-API-Key": "k-clerk"})
        assert resp.status_code == 401
        body = resp.json()
        assert body["code"] == "unauthenticated"
        assert "API keys are not accepted" in body["detail"], body
        assert body["errors"] == [
            {
                "field": "header.X-API-Key",
                "rule": "accepted_credential",
                "message": "API keys are not accepted by this service",
            }
        ]
        assert resp.headers["www-authenticate"] == 'Bearer realm="propdesk"'
        resp = await tokens_only.get("/anyone", headers={"Authorization": "Basic dXNlcjpwYXNz"})
        assert resp.status_code == 401
        assert resp.json()["errors"][0]["field"] == "header.Authorization"
        assert "'Basic'" in resp.json()["detail"]
        resp = await tokens_only.get("/anyone", headers={"Authorization": "ApiKey k-clerk"})
        assert "API keys are not accepted" in resp.json()["errors"][0]["message"], resp.text
        # A token or key sent without its scheme is never echoed back.
        secret = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.SIGNATURE"
        for header in (secret, f"Bearer\t{secret}", f"{secret} more", ""):
            resp = await tokens_only.get("/anyone", headers={"Authorization": header})
            assert resp.status_code == 401, header
            assert resp.json()["errors"][0]["field"] == "header.Authorization"
            assert "SIGNATURE" not in resp.text and "<scheme> <credentials>" in resp.text
        resp = await tokens_only.get("/anyone")
        assert resp.json()["detail"] == "This endpoint needs a credential."
        assert "errors" not in resp.json() or not resp.json()["errors"]


async def test_bad_tokens_are_401_with_the_reason(client: httpx.AsyncClient) -> None:
    expired = clerk_token(ttl=10, now=time.time() - 3600)
    resp = await client.get("/clerk", headers=bearer(expired))
    assert resp.status_code == 401
    assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    assert "expired" in resp.json()["detail"]
    forged = issue_token(
        Settings(token_secret="attacker"), tenant_id=TENANT, subject="x", roles=["intake_clerk"]
    )
    resp = await client.get("/clerk", headers=bearer(forged))
    assert resp.status_code == 401 and "bad signature" in resp.json()["detail"]
    resp = await client.get("/clerk", headers=bearer("garbage"))
    assert resp.status_code == 401 and "malformed" in resp.json()["detail"]


async def test_wrong_role_is_403_naming_the_role(client: httpx.AsyncClient) -> None:
    resp = await client.get("/clerk", headers=bearer(clerk_token(roles=[Role.HANDLER])))
    assert resp.status_code == 403
    body = resp.json()
    assert body["code"] == "forbidden" and "intake_clerk" in body["detail"]
    assert body["required_roles"] == ["intake_clerk"]
    resp = await client.get("/supervisors", headers=bearer(clerk_token()))
    assert resp.status_code == 403
    assert resp.json()["required_roles"] == ["cs_supervisor", "director"]
    resp = await client.get("/supervisors", headers=bearer(clerk_token(roles=[Role.DIRECTOR])))
    assert resp.status_code == 200


async def test_operator_only_on_operator_endpoints(client: httpx.AsyncClient) -> None:
    op = issue_token(SETTINGS, tenant_id=None, subject="ops-1", roles=[Role.OPERATOR])
    assert (await client.get("/ops", headers=bearer(op))).json() == {
        "actor": "ops-1",
        "tenant_id": None,
    }
    for path in ("/clerk", "/anyone"):
        resp = await client.get(path, headers=bearer(op))
        assert resp.status_code == 403, path
        assert "operator" in resp.json()["detail"].lower()
    resp = await client.get("/ops", headers=bearer(clerk_token()))
    assert resp.status_code == 403 and resp.json()["required_roles"] == ["operator"]


async def test_any_staff_endpoint(client: httpx.AsyncClient) -> None:
    resp = await client.get("/anyone", headers=bearer(clerk_token(roles=[Role.QUALITY])))
    assert resp.json() == {"actor": "clerk-1"}
    assert (await client.get("/anyone")).status_code == 401


async def test_a_key_sent_as_an_authorization_scheme_is_told_its_header(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get("/clerk", headers={"Authorization": "ApiKey k-clerk"})
    assert resp.status_code == 401
    assert resp.json()["errors"] == [
        {
            "field": "header.Authorization",
            "rule": "accepted_credential",
            "message": "an API key goes in the X-API-Key header, not Authorization",
        }
    ]
    assert "k-clerk" not in resp.text


async def test_plugged_in_api_keys(client: httpx.AsyncClient) -> None:
    resp = await client.get("/clerk", headers={"X-API-Key": "k-clerk"})
    assert resp.status_code == 200 and resp.json()["actor"] == "apikey:desk"
    resp = await client.get("/clerk", params={"api_key": "k-clerk"})
    assert resp.status_code == 200
    resp = await client.get("/clerk", headers={"X-API-Key": "k-integration"})
    assert resp.status_code == 403
    resp = await client.get("/clerk", headers={"X-API-Key": "nope"})
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == 'ApiKey header="X-API-Key"'
    # Authenticators are tried in order: a bearer token decides before the key is looked at.
    resp = await client.get(
        "/clerk", headers={**bearer(clerk_token()), "X-API-Key": "k-integration"}
    )
    assert resp.json()["actor"] == "clerk-1"
