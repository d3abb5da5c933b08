"""Open311 GeoReport v2 under /open311/v2 (http://wiki.open311.org/GeoReport_v2/).

Thin: authenticate, parse, call the same recording flow as /v1/complaints, render JSON or
XML. Mounted by intake.app as `intake.api.open311.router`.

Conventions and deliberate deviations from the public-city reading of the spec:
- jurisdiction_id is the project code (or id); optional when the key sees one project.
- Every endpoint needs a credential: `api_key` (query or form field, as the spec says),
  or the `X-API-Key` header, or a staff bearer token. Complaints are private data, so
  GET services/requests are not anonymous. A missing or invalid key is 403 as in the spec
  (so is a rejected bearer token: Open311 knows no 401).
- POST answers 201 with service_request_id at once (services are `realtime`); a repeat
  from the same household on an open case answers 200 with that case's service_request_id
  (nothing new is created). Tokens are the caller's own ticket id (attribute[ticket_id])
  or the Idempotency-Key it sent.
- A location is optional: a complaint about staff attitude has none.
- Errors are the spec's list of {code, description}, in the requested format; so are the
  refusals made before a handler runs (body too large, unknown route, a 500):
  `Open311ErrorFormat` rewrites those answers on /open311/ paths.
- Attachments are references (`media_url`); a multipart file upload is refused (400), not
  dropped: the platform keeps no file store.
- Plus mySociety's `servicerequestupdates.{fmt}` (the complaint timeline as updates).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from intake import idempotency_cache, ratelimit
from intake.api.deps import RECORD_ROLES, driver_pool_of, redis_of, sessions_of
from intake.api.schemas import ComplaintIn
from intake.auth import ApiKeyAuthenticator, context_for
from intake.domain.rules import TenantRules
from intake.flows.record_complaint import load_rules, record_complaint
from intake.open311 import catalog, lookups
from intake.open311.errors import (
    OPENAPI_RESPONSE,
    Open311Error,
    Open311Errors,
    from_field_errors,
    open311_field,
)
from intake.open311.rendering import Format, parse_format, render, render_errors
from intake.open311.service_requests import (
    parse_request_query,
    request_update,
    service_notice,
    service_request,
)
from intake.open311.submission import flatten, parse_submission, repeated_fields
from intake.store import tenants as directory
from propdesk.auth.dependencies import authenticate, authorize, one_credential
from propdesk.db.session import tenant_transaction
from propdesk.service.json_members import repeated_member
from propdesk.service.problems import PROBLEM_CONTENT_TYPE, PayloadTooLarge, ProblemError
from propdesk.service.query_params import READS_RAW_QUERY
from propdesk.service.request_context import bind_tenant
from propdesk.service.text import NO_NUL_MESSAGE, has_nul
from propdesk.tenancy import TenantContext

# Every route reads more of its query than it declares (the spec's filters and a POST's
# fields, which may come in the query): the app's unknown-parameter check leaves them be.
# Every answer comes in the format the path names (`.json` or `.xml`).
_IN_EITHER_FORMAT: dict[str, Any] = {
    "application/json": {},
    "text/xml": {"schema": {"type": "string"}},
}
router = APIRouter(
    prefix="/open311/v2",
    tags=["open311"],
    responses={
        200: {"description": "JSON or XML, as the path asks", "content": _IN_EITHER_FORMAT},
        "4XX": OPENAPI_RESPONSE,
        "5XX": OPENAPI_RESPONSE,
    },
)

MAX_BODY_FIELDS = 100
MAX_IDEMPOTENCY_KEY = 255

Handler = Callable[[Format], Awaitable[Response]]


def _response(fmt: Format, body: bytes, status: int = 200, **headers: str) -> Response:
    return Response(body, status_code=status, media_type=fmt.media_type, headers=headers or None)


def _errors_response(fmt: Format, exc: Open311Errors) -> Response:
    return Response(
        render_errors(fmt, exc.errors),
        status_code=exc.status,
        media_type=fmt.media_type,
        headers=exc.headers,
    )


async def _answer(raw_format: str, handler: Handler) -> Response:
    """Run `handler`, answering every refusal in the Open311 error format."""
    fmt = parse_format(raw_format)
    if fmt is None:
        return _errors_response(
            Format.JSON,
            Open311Errors([Open311Error(404, f"format: {raw_format!r} is not json or xml")]),
        )
    try:
        return await handler(fmt)
    except Open311Errors as exc:
        return _errors_response(fmt, exc)
    except ProblemError as exc:
        converted = from_field_errors(exc.status, exc.detail or exc.title, exc.errors)
        converted.headers = exc.headers
        return _errors_response(fmt, converted)


def _api_key_authenticator(request: Request) -> ApiKeyAuthenticator | None:
    for authenticator in getattr(request.app.state, "authenticators", ()):
        if isinstance(authenticator, ApiKeyAuthenticator):
            return authenticator
    return None


def _refuse_nul(request: Request, api_key: str | None) -> None:
    """Path and query parameters (and a body's api_key) with NUL, which PostgreSQL cannot
    store or compare, are refused before anything reads them."""
    params = [*request.path_params.items(), *request.query_params.multi_items()]
    if api_key is not None:
        params.append(("api_key", api_key))
    bad = dict.fromkeys(name for name, value in params if has_nul(name) or has_nul(value))
    if bad:
        raise Open311Errors([Open311Error(400, f"{name}: {NO_NUL_MESSAGE}") for name in bad])


async def _context(
    request: Request, api_key: str | None, roles: tuple[str, ...] = ()
) -> TenantContext:
    _refuse_nul(request, api_key)
    try:
        one_credential(request)
    except ProblemError as exc:
        raise Open311Errors([Open311Error(403, _refused(exc))]) from None
    # The spec's api_key parameter, or the header the native API uses.
    api_key = api_key or request.headers.get("x-api-key")
    if api_key:
        authenticator = _api_key_authenticator(request)
        identity = await authenticator.identify(api_key.strip()) if authenticator else None
        if identity is None:
            raise Open311Errors([Open311Error(403, "api_key: invalid")])
        wait = await ratelimit.retry_after(
            redis_of(request),
            identity.tenant_id,
            identity.key_id,
            identity.rate_limit_per_minute,
        )
        if wait is not None:
            raise Open311Errors(
                [
                    Open311Error(
                        429,
                        f"api_key: at most {identity.rate_limit_per_minute} requests per "
                        f"minute; retry in {wait} s",
                    )
                ],
                headers={"Retry-After": str(wait)},
            )
        ctx = context_for(identity)
    else:
        try:
            ctx = await authenticate(request)
        except ProblemError as exc:
            # The spec: "403 for errors because of wrong or missing api_key"; a rejected
            # bearer token is a wrong credential too. Open311 has no 401.
            if exc.status == 401:
                missing = "needs a credential" in (exc.detail or "")
                description = "api_key: required" if missing else _refused(exc)
                raise Open311Errors([Open311Error(403, description)]) from None
            raise
    authorize(ctx, roles)
    bind_tenant(ctx)
    return ctx


def _refused(exc: ProblemError) -> str:
    """A rejected credential in Open311's words: the header at fault, then why."""
    field = exc.errors[0]["field"] if exc.errors else "header.Authorization"
    return f"{field.removeprefix('header.')}: {exc.detail}"


async def _project(
    s: AsyncSession, jurisdiction_id: str | None, *, required: bool = True
) -> Any | None:
    """The project a jurisdiction_id names (RLS limits it to what the caller may see);
    without one, the caller's only project, or None when it sees several and
    `required` is False."""
    if jurisdiction_id:
        project = await directory.project_by_ref(s, jurisdiction_id)
        if project is None:
            raise Open311Errors(
                [Open311Error(404, f"jurisdiction_id: {jurisdiction_id!r} not found")]
            )
        return project
    visible = await lookups.visible_projects(s)
    if len(visible) == 1:
        return await directory.project_by_id(s, visible[0].id)
    if not visible:
        raise Open311Errors([Open311Error(404, "jurisdiction_id: no project is visible")])
    if required:
        raise Open311Errors(
            [
                Open311Error(
                    400, "jurisdiction_id: required (the credential serves several projects)"
                )
            ]
        )
    return None


async def _rules(s: AsyncSession, ctx: TenantContext) -> TenantRules:
    assert ctx.tenant_id is not None
    overrides, _settings = await directory.tenant_rules(s, ctx.tenant_id)
    return load_rules(overrides)


@router.get("/services.{fmt}", openapi_extra=READS_RAW_QUERY)
async def list_services(
    request: Request, fmt: str, jurisdiction_id: str | None = None, api_key: str | None = None
) -> Response:
    async def handle(f: Format) -> Response:
        ctx = await _context(request, api_key)
        async with tenant_transaction(sessions_of(request), ctx) as s:
            await _project(s, jurisdiction_id)
            rules = await _rules(s, ctx)
        return _response(f, render(f, "services", "service", catalog.service_list(rules)))

    return await _answer(fmt, handle)


@router.get("/services/{service_code}.{fmt}", openapi_extra=READS_RAW_QUERY)
async def service_definition(
    request: Request,
    service_code: str,
    fmt: str,
    jurisdiction_id: str | None = None,
    api_key: str | None = None,
) -> Response:
    async def handle(f: Format) -> Response:
        ctx = await _context(request, api_key)
        category = catalog.category_of(service_code)
        if category is None:
            raise Open311Errors([Open311Error(404, f"service_code: {service_code!r} not found")])
        async with tenant_transaction(sessions_of(request), ctx) as s:
            await _project(s, jurisdiction_id)
        return _response(
            f, render(f, "service_definition", None, catalog.service_definition(category))
        )

    return await _answer(fmt, handle)


GIVE_ONCE = "give this parameter once; it takes one value"


def _once(items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """`items`, unless one of them comes twice: which would the caller mean?"""
    if twice := repeated_fields(items):
        raise Open311Errors([Open311Error(400, f"{name}: {GIVE_ONCE}") for name in twice])
    return items


def _query(request: Request, repeatable: frozenset[str] = frozenset()) -> dict[str, str]:
    """The query's parameters; those in `repeatable` may come more than once (their values
    joined with commas, as the spec's comma-separated lists), the others only once."""
    out: dict[str, str] = {}
    for name in request.query_params:
        values = request.query_params.getlist(name)
        if len(values) > 1 and name not in repeatable:
            _once([(name, v) for v in values])
        out[name] = ",".join(values)
    return out


async def _submitted_fields(request: Request) -> dict[str, Any]:
    """Query string, then the form-encoded (spec) or JSON body; the body wins. Within
    each, a field comes once (a multi-valued attribute's `attribute[code][]` excepted)."""
    items: list[tuple[str, Any]] = _once(list(request.query_params.multi_items()))
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = orjson.loads(await request.body())
        except PayloadTooLarge as exc:
            raise Open311Errors([Open311Error(413, f"body: at most {exc.limit} bytes")]) from None
        except orjson.JSONDecodeError as exc:
            raise Open311Errors([Open311Error(400, f"body: not valid JSON ({exc})")]) from None
        if not isinstance(body, dict):
            raise Open311Errors([Open311Error(400, "body: must be a JSON object")])
        if (path := repeated_member(await request.body())) is not None:
            # orjson keeps the last of two: which would the caller mean?
            name = ".".join(str(p) for p in path)
            raise Open311Errors([Open311Error(400, f"{name}: {GIVE_ONCE}")])
        items.extend(body.items())
    elif content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        try:
            form = await request.form(max_fields=MAX_BODY_FIELDS)
        except PayloadTooLarge as exc:
            raise Open311Errors([Open311Error(413, f"body: at most {exc.limit} bytes")]) from None
        except HTTPException as exc:
            # Starlette's form parser: too many fields, a part too large, a malformed part.
            raise Open311Errors([Open311Error(exc.status_code, f"body: {exc.detail}")]) from None
        uploads = dict.fromkeys(k for k, v in form.multi_items() if not isinstance(v, str))
        if uploads:
            # Not dropped in silence: attachments are references, and there is no file store.
            raise Open311Errors(
                [
                    Open311Error(
                        400,
                        f"{name}: file uploads are not accepted; give media_url, a link to "
                        "the file (attachments are kept as references)",
                    )
                    for name in uploads
                ]
            )
        items.extend(_once(list(form.multi_items())))
    elif content_type:
        raise Open311Errors(
            [
                Open311Error(
                    400,
                    f"body: unsupported content type {content_type!r} "
                    "(use application/x-www-form-urlencoded or application/json)",
                )
            ]
        )
    if len(items) > MAX_BODY_FIELDS:
        raise Open311Errors([Open311Error(400, f"body: at most {MAX_BODY_FIELDS} fields")])
    return flatten(items)


def _complaint_in(fields: Mapping[str, Any]) -> ComplaintIn:
    try:
        return ComplaintIn.model_validate(fields)
    except ValidationError as exc:
        raise Open311Errors(
            [
                Open311Error(
                    400,
                    f"{open311_field('.'.join(str(p) for p in e['loc']))}: {e['msg']}",
                )
                for e in exc.errors()
            ]
        ) from None


def _idempotency_key(request: Request, ticket: str | None) -> str | None:
    header = request.headers.get("idempotency-key")
    if header is not None:
        if not header.strip() or len(header) > MAX_IDEMPOTENCY_KEY or not header.isprintable():
            raise Open311Errors(
                [
                    Open311Error(
                        400, f"Idempotency-Key: 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
                    )
                ]
            )
        return header
    return f"open311:{ticket}" if ticket else None


@router.post(
    "/requests.{fmt}",
    openapi_extra=READS_RAW_QUERY,
    responses={
        201: {
            "description": "Recorded: the new request's `service_request_id` (200: a repeat "
            "that joined an open case, with that case's id)",
            "content": _IN_EITHER_FORMAT,
        }
    },
)
async def create_request(request: Request, fmt: str) -> Response:
    async def handle(f: Format) -> Response:
        fields = await _submitted_fields(request)
        api_key = fields.get("api_key")
        ctx = await _context(request, api_key if isinstance(api_key, str) else None, RECORD_ROLES)
        submission = parse_submission(fields)
        async with tenant_transaction(sessions_of(request), ctx) as s:
            project = await _project(s, submission.jurisdiction_id)
        assert project is not None
        body = _complaint_in({**submission.complaint, "project": str(project.id)})
        key = _idempotency_key(request, submission.idempotency_seed)
        try:
            result = await record_complaint(
                sessions_of(request), driver_pool_of(request), redis_of(request), ctx, body, key
            )
        except ProblemError as exc:
            if (
                exc.code == "idempotency-key-reused"
                and request.headers.get("idempotency-key") is None
            ):
                raise Open311Errors(
                    [
                        Open311Error(
                            409,
                            "attribute[ticket_id]: this ticket id was already submitted with "
                            "different fields",
                        )
                    ]
                ) from None
            raise
        created = result.body
        answer = [
            {
                "service_request_id": created["id"],
                "service_notice": service_notice(created),
                "account_id": submission.account_id,
            }
        ]
        headers = {"Location": f"/open311/v2/requests/{created['id']}.{f.value}"}
        if result.replayed:
            headers["Idempotent-Replayed"] = "true"
        return _response(
            f, render(f, "service_requests", "request", answer), result.status, **headers
        )

    return await _answer(fmt, handle)


async def _find_requests(
    request: Request, api_key: str | None, jurisdiction_id: str | None, params: Any
) -> list[dict[str, Any]]:
    """The service requests a query selects, as Open311 representations (one lookup
    shared by the list and the single-request endpoints)."""
    ctx = await _context(request, api_key)
    query = parse_request_query(params, datetime.now(UTC))
    async with tenant_transaction(sessions_of(request), ctx) as s:
        project = await _project(s, jurisdiction_id, required=False)
        rows = await lookups.find_requests(s, project.id if project else None, query)
    return [service_request(r._mapping, r.agency) for r in rows]


REPEATABLE_FILTERS = frozenset({"service_code", "status"})


@router.get("/requests.{fmt}", openapi_extra=READS_RAW_QUERY)
async def list_requests(
    request: Request, fmt: str, jurisdiction_id: str | None = None, api_key: str | None = None
) -> Response:
    async def handle(f: Format) -> Response:
        # The spec: service_code and status "can be declared multiple times, comma
        # delimited"; repeated parameters add up like the comma-separated list. The
        # others take one value.
        params = _query(request, REPEATABLE_FILTERS)
        items = await _find_requests(request, api_key, jurisdiction_id, params)
        return _response(f, render(f, "service_requests", "request", items))

    return await _answer(fmt, handle)


@router.get("/requests/{service_request_id}.{fmt}", openapi_extra=READS_RAW_QUERY)
async def get_request(
    request: Request,
    service_request_id: str,
    fmt: str,
    jurisdiction_id: str | None = None,
    api_key: str | None = None,
) -> Response:
    async def handle(f: Format) -> Response:
        params = {"service_request_id": service_request_id}
        items = await _find_requests(request, api_key, jurisdiction_id, params)
        if not items:
            raise Open311Errors(
                [Open311Error(404, f"service_request_id: {service_request_id!r} not found")]
            )
        return _response(f, render(f, "service_requests", "request", items))

    return await _answer(fmt, handle)


@router.get("/tokens/{token}.{fmt}", openapi_extra=READS_RAW_QUERY)
async def get_token(
    request: Request,
    token: str,
    fmt: str,
    jurisdiction_id: str | None = None,
    api_key: str | None = None,
) -> Response:
    async def handle(f: Format) -> Response:
        ctx = await _context(request, api_key)
        async with tenant_transaction(sessions_of(request), ctx) as s:
            project = await _project(s, jurisdiction_id, required=False)
            row = await lookups.request_for_token(
                s,
                project.id if project else None,
                token,
                actor=ctx.actor,
                namespace=idempotency_cache.namespace(ctx),
            )
        if row is None:
            raise Open311Errors([Open311Error(404, f"token: {token!r} not found")])
        items = [{"service_request_id": str(row.id), "token": token}]
        return _response(f, render(f, "service_requests", "request", items))

    return await _answer(fmt, handle)


@router.get("/servicerequestupdates.{fmt}", openapi_extra=READS_RAW_QUERY)
async def list_updates(
    request: Request, fmt: str, jurisdiction_id: str | None = None, api_key: str | None = None
) -> Response:
    """mySociety's extension: what happened to requests between start_date and end_date."""

    async def handle(f: Format) -> Response:
        ctx = await _context(request, api_key)
        params = {k: v for k, v in _query(request).items() if k in ("start_date", "end_date")}
        query = parse_request_query(params, datetime.now(UTC))
        async with tenant_transaction(sessions_of(request), ctx) as s:
            project = await _project(s, jurisdiction_id, required=False)
            rows = await lookups.find_updates(s, project.id if project else None, query)
        items = [request_update(r._mapping) for r in rows]
        return _response(f, render(f, "service_request_updates", "request_update", items))

    return await _answer(fmt, handle)


def _requested_format(path: str) -> Format:
    """The format a path asks for (`requests.xml`, `tokens/abc.json`); JSON otherwise."""
    last = path.rstrip("/").rpartition("/")[2]
    fmt = parse_format(last.rpartition(".")[2]) if "." in last else None
    return fmt or Format.JSON


class Open311ErrorFormat:
    """Pure ASGI middleware: on /open311/ paths, a problem+json answer made outside the
    handlers (the body limit's 413, an unknown route's 404, a 405, an unhandled error's
    500, a validation error) is sent as the spec's error list instead, in the requested
    format, with the same status (422 → 400, as Open311 clients know it) and headers.
    Mounted outermost, so it also sees what the request middleware answers."""

    def __init__(self, app: ASGIApp, *, prefix: str = router.prefix + "/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if _content_type(message) == PROBLEM_CONTENT_TYPE:
                    start = message  # held until its body is complete
                    return
            elif message["type"] == "http.response.body" and start is not None:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    await _send_open311(scope["path"], start, bytes(body), send)
                return
            await send(message)

        await self.app(scope, receive, rewrite)


def _content_type(start: Message) -> str:
    for key, value in start.get("headers", ()):
        if key.lower() == b"content-type":
            return value.decode("latin-1").split(";")[0].strip().lower()
    return ""


async def _send_open311(path: str, start: Message, raw: bytes, send: Send) -> None:
    try:
        problem = orjson.loads(raw)
    except orjson.JSONDecodeError:
        problem = {}
    status = int(start["status"])
    detail = problem.get("detail") or problem.get("title") or "request refused"
    if status >= 500 and problem.get("request_id"):
        detail = f"{detail} (request_id {problem['request_id']})"
    converted = from_field_errors(status, detail, problem.get("errors"))
    fmt = _requested_format(path)
    content = render_errors(fmt, converted.errors)
    headers = [
        (k, v)
        for k, v in start.get("headers", ())
        if k.lower() not in (b"content-type", b"content-length")
    ]
    headers += [
        (b"content-type", fmt.media_type.encode("latin-1")),
        (b"content-length", str(len(content)).encode("latin-1")),
    ]
    await send({"type": "http.response.start", "status": converted.status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
