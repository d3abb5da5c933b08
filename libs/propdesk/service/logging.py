"""Structured logs: one JSON object per line, carrying tenant, trace and request ids.

Every record passes `ContextFilter` on the handler, which copies what is known about the
current work (tenant context, OTel span, request id) onto the record; the formatter then
only renders. Extra fields given with `logger.info(..., extra={...})` are kept.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace

from propdesk.service.request_context import current_request
from propdesk.settings import Settings
from propdesk.tenancy import TenantContext, current_context

CONTEXT_FIELDS = (
    "service",
    "tenant_id",
    "project_ids",
    "actor",
    "trace_id",
    "span_id",
    "request_id",
)
# Attributes every LogRecord has; anything else on a record came in through `extra=`.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_SKIP = _RECORD_ATTRS | frozenset(CONTEXT_FIELDS)
_HANDLER_NAME = "propdesk"


class ContextFilter(logging.Filter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        info = current_request()
        ctx: TenantContext | None = current_context() or (info.tenant if info else None)
        # Outside a request a line may name one itself (`extra`: a refusal before the app).
        record.request_id = info.request_id if info else getattr(record, "request_id", None)
        if ctx is not None:
            record.tenant_id = str(ctx.tenant_id) if ctx.tenant_id else None
            record.project_ids = (
                "*" if ctx.project_ids is None else sorted(str(p) for p in ctx.project_ids)
            )
            record.actor = ctx.actor
        else:
            record.tenant_id = record.project_ids = record.actor = None
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            record.trace_id = format(span_context.trace_id, "032x")
            record.span_id = format(span_context.span_id, "016x")
        else:
            record.trace_id = record.span_id = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            doc[name] = getattr(record, name, None)
        for name, value in record.__dict__.items():
            if name not in _SKIP and not name.startswith("_"):
                doc[name] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=str).decode()


class ConsoleFormatter(logging.Formatter):
    """For a developer's terminal: the same facts, one readable line."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s%(context)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"{name}={getattr(record, name)}"
            for name in ("request_id", "tenant_id", "actor", "trace_id")
            if getattr(record, name, None)
        ]
        parts += [
            f"{name}={value}"
            for name, value in record.__dict__.items()
            if name not in _SKIP and not name.startswith("_") and name != "context"
        ]
        record.context = f"  [{' '.join(parts)}]" if parts else ""
        return super().format(record)


def configure_logging(service: str, settings: Settings, *, stream: Any = None) -> logging.Handler:
    """Route all logging (ours, uvicorn's, libraries') through one context-aware handler.

    Idempotent: a second call replaces the handler it installed before. uvicorn should be
    started with `log_config=None, access_log=False`; the service middleware writes the
    access line itself, with tenant and trace ids that uvicorn's cannot know.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter(service))
    handler.setFormatter(JsonFormatter() if settings.log_json else ConsoleFormatter())
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    return handler
