"""Which department a routing target names in a project: one rule for every service.

A routing rule (dispatch's rules, intake's onboarding `routing:` entries) names its
department by code or by kind ("engineering" may be a department's code or the kind of
one coded "eng"). Dispatch follows the name when it routes a complaint; intake checks an
onboarding file's entries against the same rule before it accepts them, so a file never
holds an entry dispatch would follow elsewhere. Pure: the caller says where each
department serves (`serves`: its project, or None for a company-wide one).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import Protocol, TypeVar


class NamedDepartment(Protocol):
    @property
    def code(self) -> str: ...

    @property
    def kind(self) -> str: ...


D = TypeVar("D", bound=NamedDepartment)
P = TypeVar("P", bound=Hashable)


def resolve_department(
    target: str, project: P, departments: Iterable[D], serves: Callable[[D], P | None]
) -> D | None:
    """The department `target` names in `project`: by code, then by kind; among several,
    the project's own before a company-wide one, then the lowest code. None when no
    department serving the project answers to the name."""
    serving = [d for d in departments if serves(d) in (project, None)]
    for name_of in (_code, _kind):
        found = [d for d in serving if name_of(d) == target]
        if found:
            return min(found, key=lambda d: (serves(d) is None, d.code))
    return None


def _code(department: NamedDepartment) -> str:
    return department.code


def _kind(department: NamedDepartment) -> str:
    return department.kind
