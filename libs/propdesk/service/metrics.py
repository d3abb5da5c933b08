"""Prometheus metrics of the HTTP layer, in the process-wide default registry.

The default registry is shared on purpose: the bus, timers and domain code register their
own metrics there and /metrics serves them all. Labels stay bounded: route templates (never
raw paths), a closed set of methods, status codes; no tenant label, because a SaaS with
thousands of tenants would multiply every histogram series by that many.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

HTTP_REQUESTS = Counter(
    "propdesk_http_requests",
    "HTTP requests handled, by route template and status.",
    ["service", "method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "propdesk_http_request_duration_seconds",
    "Time from the request reaching the service middleware to the response's last byte.",
    ["service", "method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "<unmatched>"


def observe_request(service: str, method: str, route: str, status: int, seconds: float) -> None:
    method_label = method if method in KNOWN_METHODS else "OTHER"
    status_label = str(status)
    HTTP_REQUESTS.labels(service, method_label, route, status_label).inc()
    HTTP_DURATION.labels(service, method_label, route, status_label).observe(seconds)


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
