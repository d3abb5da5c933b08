"""The service factory and its parts: problem+json errors, JSON logs, metrics, readiness.

`create_service_app` is imported lazily: `propdesk.auth.dependencies` imports
`propdesk.service.problems`, and the factory imports the auth dependencies back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from propdesk.service.app import create_service_app

__all__ = ["create_service_app"]


def __getattr__(name: str) -> Any:
    if name == "create_service_app":
        from propdesk.service.app import create_service_app

        return create_service_app
    raise AttributeError(name)
