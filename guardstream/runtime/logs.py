"""Structured logging: one JSON object per line, correlated by request id and W3C trace id.

Log collectors (Loki, Elasticsearch, Cloud Logging) parse one JSON object per line without
a custom grammar, and `request_id`/`trace_id` let an operator jump from a decision on
`rejected` to every log line its processing wrote, and on to the caller's trace.

Never log prompt text: messages carry ids, reason codes and sizes. The formatter has no
way to tell prompt text from any other string, so this is a rule for callers; `extra`
fields are therefore limited to an allow-list of keys that cannot hold request content.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "guardstream_request_id", default=None
)
_TRACE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "guardstream_trace_id", default=None
)

# version "-" trace-id "-" parent-id "-" flags; an all-zero trace id is invalid (W3C §3.2.2.3).
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

#: `extra=` keys copied into the JSON object: identifiers, codes and numbers only.
EXTRA_FIELDS = frozenset(
    {
        "stage",
        "topic",
        "partition",
        "offset",
        "reason",
        "outcome",
        "tenant_tier",
        "decision_id",
        "schema_id",
        "duration_ms",
        "count",
        "group",
        "error_type",
    }
)


def trace_id_from_traceparent(traceparent: str | None) -> str | None:
    """The trace id (2nd field) of a W3C `traceparent`, or None if it is malformed.

    Version ``ff`` and all-zero ids are invalid per the spec, so they yield None rather
    than a trace id no tracing backend will ever show.
    """
    if not traceparent:
        return None
    m = _TRACEPARENT.match(traceparent.strip().lower())
    if m is None:
        return None
    version, trace_id, parent_id, _ = m.groups()
    if version == "ff" or trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id


def current_request_id() -> str | None:
    """The request id of the current context, if any."""
    return _REQUEST_ID.get()


def current_trace_id() -> str | None:
    """The W3C trace id of the current context, if any."""
    return _TRACE_ID.get()


@contextmanager
def log_context(request_id: str | None = None, traceparent: str | None = None) -> Iterator[None]:
    """Tag every log line written inside the block with `request_id` and `trace_id`.

    Context variables follow asyncio tasks, so concurrent records in one worker never see
    each other's ids. Values not given are inherited from the enclosing context.
    """
    tokens: list[tuple[contextvars.ContextVar[str | None], contextvars.Token[str | None]]] = []
    if request_id is not None:
        tokens.append((_REQUEST_ID, _REQUEST_ID.set(request_id)))
    if traceparent is not None:
        tokens.append((_TRACE_ID, _TRACE_ID.set(trace_id_from_traceparent(traceparent))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class JsonFormatter(logging.Formatter):
    """Formats each record as one JSON object on one line.

    Keys: ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``, ``message``, then
    ``request_id``/``trace_id`` when set, allow-listed ``extra`` fields, and ``exc_type``/
    ``exc`` for exceptions. Newlines inside values are escaped by JSON, so one record is
    always one line.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Render the record as a JSON line (without the trailing newline)."""
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            out["request_id"] = request_id
        trace_id = current_trace_id()
        if trace_id is not None:
            out["trace_id"] = trace_id
        for key in EXTRA_FIELDS:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_json_logging(level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every logger's records to `stream` (stderr) as JSON lines at `level`.

    Replaces the root logger's handlers, so calling it twice does not duplicate lines.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)


def json_logging_config(level: int | str = logging.INFO) -> dict[str, Any]:
    """A `logging.config.dictConfig` mapping that logs JSON lines to stderr.

    For processes whose framework configures logging itself: Faust's worker takes it as
    ``faust.Worker(app, logging_config=json_logging_config(level))``.
    """
    name = logging.getLevelName(level) if isinstance(level, int) else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {
            "json": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": name, "handlers": ["json"]},
    }
