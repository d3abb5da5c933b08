"""`If-Match` on a work order's steps (RFC 9110 §13.1.1): a step that applies only to the
order as the client last read it.

Steps on one order are serialised by its row lock, and a step that waited behind another
applies to what the other left wherever it still may: a supervisor's accept queued behind
a reassignment accepts for the new handler. A client that must not act on a changed order
sends the order's entity tag, `ETag: "<seq>"` on `GET /v1/work-orders/{id}` and on every
step's answer (`seq` counts the order's steps and is in every work-order body): if a step
has been taken since (a person's, or one intake's events made: a repeat call, a regrade),
the answer is `412 precondition-failed` with the order's current `seq` and state, and
nothing changes. Without the header steps apply as before. `If-Match: *` asks only that
the order exist. Entity tags are strong: a weak one (`W/"3"`) never matches.

The tag is read under the order's row lock, before the step, in the step's transaction;
it is judged after the step, so that a step refused anyway keeps its own answer (404,
403, 409, 422), as RFC 9110 §13.2.1 has it, and a step on a changed order is rolled back
with its events. The header is parsed there too, after the credential is checked.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import Header
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.store import work_orders as orders
from propdesk.service.openapi_problems import problem_response
from propdesk.service.problems import ProblemError, field_error

# One member of an If-Match list (RFC 9110 §8.8.3, §13.1.1): `*`, or an entity tag
# (optional W/, then a quoted opaque tag, which may hold a comma).
_MEMBER = re.compile(r'(\*|(W/)?"[\x21\x23-\x7e\x80-\xff]*")[ \t]*(?:,|\Z)')


# What the OpenAPI document says of the tag and the precondition (api/work_orders.py).
_ETAG_HEADER: dict[str, Any] = {
    "ETag": {
        "description": 'The order\'s entity tag, `"<seq>"`: send it as If-Match to act '
        "only on the order as read.",
        "schema": {"type": "string", "examples": ['"3"']},
    }
}
READ_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"headers": _ETAG_HEADER}}
STEP_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": _ETAG_HEADER},
    412: {
        **problem_response(
            "`precondition-failed`: a step has been taken since the order was read "
            "(If-Match). Nothing changed; `current_seq` and `current_state` say where the "
            "order is, and the ETag header is its tag."
        ),
        "headers": _ETAG_HEADER,
    },
}


def etag(seq: int) -> str:
    """A work order's entity tag: its step count, quoted."""
    return f'"{seq}"'


@dataclass(frozen=True, slots=True)
class IfMatch:
    """The request's If-Match header lines, as sent (none: no precondition)."""

    values: tuple[str, ...] = ()

    @asynccontextmanager
    async def holds(self, session: AsyncSession, work_order_id: UUID) -> AsyncIterator[None]:
        """Around a step on `work_order_id`, in its transaction: 412 after it (rolling it
        back) when the order's tag before it was none the client sent."""
        if not self.values:
            yield
            return
        any_tag, strong = _parse(self.values)
        # Locked as the step will lock it: no step of another can come in between.
        before = await orders.get(session, work_order_id, lock=True)
        yield
        if before is None or any_tag or etag(before.seq) in strong:
            return
        raise ProblemError(
            412,
            "Precondition Failed",
            code="precondition-failed",
            detail=(
                f"The work order has changed since it was read: it is at step {before.seq}, "
                f"{before.state}. Read it again (GET) before deciding."
            ),
            headers={"ETag": etag(before.seq)},
            extensions={"current_seq": before.seq, "current_state": before.state},
        )


def if_match(
    values: Annotated[
        list[str] | None,
        Header(
            alias="If-Match",
            description='The order\'s ETag ("<seq>") as read: the step applies only if no '
            "step has been taken since (else 412)",
        ),
    ] = None,
) -> IfMatch:
    return IfMatch(tuple(values or ()))


def _parse(values: tuple[str, ...]) -> tuple[bool, frozenset[str]]:
    """(`*` was sent, the strong tags sent); 400 naming the header when it is not a list
    of entity tags or a lone `*`."""
    text = ",".join(values)
    members: list[tuple[str, bool]] = []
    at = 0
    while at < len(text):
        if text[at] in ", \t":
            at += 1
            continue
        found = _MEMBER.match(text, at)
        if found is None:
            raise _malformed()
        members.append((found.group(1), found.group(2) is not None))
        at = found.end()
    if not members or (len(members) > 1 and any(tag == "*" for tag, _ in members)):
        raise _malformed()
    if members[0][0] == "*":
        return True, frozenset()
    # Weak tags never match: If-Match compares strongly.
    return False, frozenset(tag for tag, weak in members if not weak)


def _malformed() -> ProblemError:
    return ProblemError(
        400,
        "Bad Request",
        code="malformed-precondition",
        detail='If-Match must be "*" or entity tags such as "3" (quoted).',
        errors=[field_error("header.If-Match", "entity_tag", 'a quoted tag: "3"')],
    )
