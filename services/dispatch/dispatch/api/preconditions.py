"""`If-Match` on a work order's steps (RFC 9110 §13.1.1): a step that applies only to the
order as the client last read it.

Steps on one order are serialised by its row lock, and a step that waited behind another
applies to what the other left wherever it still may: a supervisor's accept queued behind
a reassignment accepts for the new handler. A client that must not act on a changed order
sends the order's entity tag, `ETag: "<seq>"` on `GET /v1/work-orders/{id}` (`seq` counts
the order's steps, in every work-order body too): if a step has been taken since, the
answer is `412 precondition-failed` with the order's current `seq` and state, and
nothing changes. Without the header steps apply as before. `If-Match: *` asks only that
the order exist. Entity tags are strong: a weak one (`W/"3"`) never matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Header
from sqlalchemy.ext.asyncio import AsyncSession

from dispatch.store import work_orders as orders
from propdesk.service.problems import ProblemError, field_error

# One entity tag of a list (RFC 9110 §8.8.3): optional W/, then a quoted opaque tag.
_ENTITY_TAG = re.compile(r'(W/)?"[\x21\x23-\x7e\x80-\xff]*"')


def etag(seq: int) -> str:
    """A work order's entity tag: its step count, quoted."""
    return f'"{seq}"'


@dataclass(frozen=True, slots=True)
class IfMatch:
    """The request's If-Match: None without one; `any_tag` for `*`; else its strong tags."""

    tags: frozenset[str] | None = None
    any_tag: bool = False

    async def check(self, session: AsyncSession, work_order_id: UUID) -> None:
        """Lock the order (the step then runs under the same lock) and refuse the step with
        412 unless its tag is one the client sent. An order the caller cannot see is left
        to the step's own 404."""
        if self.tags is None and not self.any_tag:
            return
        wo = await orders.get(session, work_order_id, lock=True)
        if wo is None or self.any_tag or (self.tags and etag(wo.seq) in self.tags):
            return
        raise ProblemError(
            412,
            "Precondition Failed",
            code="precondition-failed",
            detail=(
                f"The work order has changed since it was read: it is at step {wo.seq}, "
                f"{wo.state}. Read it again (GET) before deciding."
            ),
            headers={"ETag": etag(wo.seq)},
            extensions={"current_seq": wo.seq, "current_state": wo.state},
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
    """The If-Match header(s), parsed; a malformed one is a 400 naming it."""
    if not values:
        return IfMatch()
    members = [m.strip() for value in values for m in value.split(",") if m.strip()]
    if not members:
        raise _malformed()
    if members == ["*"]:
        return IfMatch(any_tag=True)
    strong: set[str] = set()
    for member in members:
        found = _ENTITY_TAG.fullmatch(member)
        if found is None:
            raise _malformed()
        if found.group(1) is None:  # weak tags never match (strong comparison)
            strong.add(member)
    return IfMatch(tags=frozenset(strong))


def _malformed() -> ProblemError:
    return ProblemError(
        400,
        "Bad Request",
        code="malformed-precondition",
        detail='If-Match must be "*" or entity tags such as "3" (quoted).',
        errors=[field_error("header.If-Match", "entity_tag", 'a quoted tag: "3"')],
    )
