"""Text every propdesk API accepts.

PostgreSQL cannot store the NUL character (U+0000) in `text` (CharacterNotInRepertoire) nor
`\\u0000` in `jsonb` (UntranslatableCharacter), so text containing it is refused at the door
with a 422 naming the field and the rule `no_nul`, instead of failing in the driver.

    from propdesk.service.text import NoNul, SafeStr
    name: Annotated[str, StringConstraints(max_length=200), NoNul]
    q: Annotated[str | None, Query(max_length=200), NoNul] = None
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

NUL = "\x00"
NO_NUL_RULE = "no_nul"
NO_NUL_MESSAGE = "must not contain the NUL character (\\u0000)"


def has_nul(value: str) -> bool:
    return NUL in value


def reject_nul(value: str) -> str:
    """The pydantic validator behind `NoNul`: error type `no_nul`."""
    if NUL in value:
        raise PydanticCustomError(NO_NUL_RULE, NO_NUL_MESSAGE)
    return value


# Annotated metadata for a `str` (body field, query or path parameter).
NoNul = AfterValidator(reject_nul)
SafeStr = Annotated[str, NoNul]
