"""`python -m propdesk.devstack lock`: exact pins of the installed closure of propdesk[dev].

Walks the installed distributions from propdesk's requirements (with the dev and devstack
extras) rather than freezing the whole virtualenv, so a package someone installed by hand
for an experiment does not become a project dependency.
"""

from __future__ import annotations

from importlib import metadata

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# Exact versions of everything `pip install -e '.[dev]'` installs (propdesk's dependency
# closure, with the dev and devstack extras). The Makefile installs with
# `pip install -c constraints.txt -e '.[dev]'`; bounds live in pyproject.toml.
# Regenerate after changing dependencies: `make lock`
# (= .venv/bin/python -m propdesk.devstack lock > constraints.txt).
"""


def closure(root: str = "propdesk", extras: tuple[str, ...] = ("dev",)) -> dict[str, str]:
    """{canonical name: installed version} for root's requirements, recursively."""
    pins: dict[str, str] = {}
    todo: list[tuple[str, frozenset[str]]] = [(root, frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    base_env = default_environment()
    while todo:
        name, wanted = todo.pop()
        key = (canonicalize_name(name), wanted)
        if key in seen:
            continue
        seen.add(key)
        dist = metadata.distribution(name)
        if canonicalize_name(name) != canonicalize_name(root):
            pins[canonicalize_name(name)] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            applies = req.marker is None or any(
                req.marker.evaluate({**base_env, "extra": extra}) for extra in ("", *wanted)
            )
            if not applies:
                continue
            if canonicalize_name(req.name) == canonicalize_name(root):
                # propdesk[dev] requires propdesk[devstack]: follow the extra, pin nothing.
                todo.append((root, frozenset(req.extras)))
            else:
                todo.append((req.name, frozenset(req.extras)))
    return pins


def render(pins: dict[str, str]) -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def main() -> int:
    print(render(closure()), end="")
    return 0
