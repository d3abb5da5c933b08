"""An HTTP client that calls an ASGI app in process, as a service's clients would see it:
an exception the app lets through is the 500 its error middleware answers, not raised."""

from __future__ import annotations

import httpx
from starlette.types import ASGIApp


def asgi_client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://testserver",
    )
