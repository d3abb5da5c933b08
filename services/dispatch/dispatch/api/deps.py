"""What every router needs: the session factory and the domain errors as problem+json."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request
from starlette.responses import Response

from dispatch.domain.lifecycle import Action, CallbackNotSatisfied, IllegalTransition
from dispatch.domain.ownership import NotAllowed
from dispatch.flows.steps import InvalidStep, WorkOrderNotFound
from propdesk.db.session import tenant_transaction
from propdesk.service.problems import ProblemError, field_error, problem_response
from propdesk.tenancy import TenantContext


def sessions_of(request: Request) -> async_sessionmaker[AsyncSession]:
    return request.app.state.sessions


@asynccontextmanager
async def transaction(request: Request, ctx: TenantContext) -> AsyncIterator[AsyncSession]:
    async with tenant_transaction(sessions_of(request), ctx) as session:
        yield session


def project_not_found(project_id: UUID) -> ProblemError:
    """A project dispatch does not know, or the caller may not see: the same answer."""
    return ProblemError(
        404,
        "Not Found",
        code="project-not-found",
        detail=f"No project {project_id} is known to dispatch.",
    )


async def _illegal(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IllegalTransition)
    return problem_response(
        409,
        "Illegal work-order transition",
        code="illegal-transition",
        detail=f"The work order is {exc.current.value}: {exc}.",
        instance=request.url.path,
        extensions={"current_state": exc.current.value, "action": exc.action.value},
    )


async def _not_closed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, CallbackNotSatisfied)
    reopen = request.url.path.removesuffix("/close") + "/reopen"
    return problem_response(
        409,
        "A dissatisfied owner's case is reopened, not closed",
        code="callback-dissatisfied",
        detail=(
            f"The callback result is {exc.callback_result}: the case cannot be closed. "
            f"Reopen it (POST {reopen}) as a second complaint."
        ),
        instance=request.url.path,
        extensions={
            "current_state": exc.current.value,
            "action": Action.CLOSE.value,
            "callback_result": exc.callback_result,
            "allowed_action": Action.REOPEN.value,
            "reopen": reopen,
        },
    )


async def _not_allowed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotAllowed)
    return problem_response(
        403,
        "Forbidden",
        code="forbidden",
        detail=str(exc),
        instance=request.url.path,
        extensions=exc.facts or None,
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    return problem_response(
        404,
        "Not Found",
        code="work-order-not-found",
        detail=f"No work order {exc} is visible to you.",
        instance=request.url.path,
    )


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidStep)
    return problem_response(
        422,
        "Request validation failed",
        code="validation-failed",
        detail=exc.message,
        instance=request.url.path,
        errors=[field_error(exc.field, exc.rule, exc.message)],
    )


def install_domain_errors(app: FastAPI) -> None:
    app.add_exception_handler(IllegalTransition, _illegal)
    app.add_exception_handler(CallbackNotSatisfied, _not_closed)
    app.add_exception_handler(NotAllowed, _not_allowed)
    app.add_exception_handler(WorkOrderNotFound, _not_found)
    app.add_exception_handler(InvalidStep, _invalid)
