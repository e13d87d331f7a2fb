"""Log lines: one event per line, as JSON (or key=value text), each naming the merchant and the
webhook it concerns.

Rules this module enforces:
- Every line has `time` (UTC, RFC 3339, milliseconds), `level`, `logger` and `message`; then
  the fields bound for the request or the task (`merchant_id`, `webhook_id`, `sender`); then
  the record's own `extra` fields; then `exception`, a traceback, when there is one.
- Bound fields live in a context variable. `RequestLogContext` (ASGI middleware) gives each
  HTTP request a fresh, empty set, so what one request binds never reaches another's lines;
  `log_fields` does the same around background work (one merchant's dispatch batch).
- Values from outside (a merchant id in a URL, a `webhook-id` header) are cut to
  `MAX_FIELD_CHARS`, and text mode quotes any value with a space, a quote, an `=` or a
  control character, so a caller cannot forge a line or a field.
- Binding is a dict update, cheap enough for the accept path, which itself logs only at debug.
"""

from __future__ import annotations

import json
import logging
import logging.config
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from pointguard.config import Settings

MAX_FIELD_CHARS = 200
FORMATTERS = {"json": "pointguard.logs.JsonFormatter", "text": "pointguard.logs.TextFormatter"}
# Libraries that log every outbound HTTP request, or each step of starting PostgreSQL, at info.
QUIET_LOGGERS = ("httpx", "httpcore", "pgserver")
_UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")

_fields: ContextVar[dict[str, str] | None] = ContextVar("pointguard_log_fields", default=None)
# What every LogRecord carries; anything else on a record came from `extra=` (but uvicorn's
# `color_message`, the message again with terminal colours).
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}


def bind(**fields: str) -> None:
    """Add fields to every line logged from here to the end of the request (or the
    `log_fields` block) in progress."""
    current = _fields.get()
    cut = _cut(fields)
    if current is None:  # outside any scope: the fields hold for the rest of this task
        _fields.set(cut)
    else:
        current.update(cut)


def _cut(fields: Mapping[str, str]) -> dict[str, str]:
    """Fields as logged: each value at most `MAX_FIELD_CHARS` long."""
    return {name: value[:MAX_FIELD_CHARS] for name, value in fields.items()}


def bound_fields() -> Mapping[str, str]:
    """The fields bound for the request or task in progress."""
    return _fields.get() or {}


@contextmanager
def log_fields(**fields: str) -> Iterator[None]:
    """Lines logged inside the block carry `fields` (and those already bound outside it)."""
    token = _fields.set({**bound_fields(), **_cut(fields)})
    try:
        yield
    finally:
        _fields.reset(token)


class RequestLogContext:
    """ASGI middleware: each HTTP request starts with no bound fields, and its fields end
    with it (the error handlers run inside, so their lines carry them too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _fields.set({})
        try:
            await self.app(scope, receive, send)
        finally:
            _fields.reset(token)


def line_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Everything a line says, in order: time, level, logger, message, bound fields, extra.
    The bound fields are read now, so a formatter must run in the logging call's own task, as
    a StreamHandler's does."""
    moment = datetime.fromtimestamp(record.created, UTC)
    fields: dict[str, Any] = {
        "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": record.getMessage(),
        **bound_fields(),
    }
    for name, value in vars(record).items():
        if name not in _RECORD_ATTRIBUTES:
            fields[name] = value
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = line_fields(record)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        return json.dumps(fields, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger message key=value ...`, for a person reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = line_fields(record)
        time, logger, message = (fields.pop(name) for name in ("time", "logger", "message"))
        del fields["level"]
        flat = str(message).replace("\n", " ")  # one event, one line
        line = f"{time} {record.levelname} {logger} {flat}"
        line += "".join(f" {name}={_text_value(value)}" for name, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def _text_value(value: object) -> str:
    text = str(value)
    if text and all(c.isprintable() and c not in ' "=' for c in text):
        return text
    return json.dumps(text, ensure_ascii=False)


def logging_config(settings: Settings) -> dict[str, Any]:
    """A `logging.config.dictConfig` document: every logger (uvicorn's too) writes lines in
    `settings.log_format` to stderr, at `settings.log_level`. Uvicorn applies it in each of
    its worker processes."""
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"pointguard": {"()": FORMATTERS[settings.log_format]}},
        "handlers": {"stderr": {"()": "pointguard.logs.stderr_handler", "formatter": "pointguard"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            # Uvicorn's own loggers hand their lines to the root's handler.
            **{name: {"level": level, "handlers": [], "propagate": True} for name in _UVICORN},
            **{name: {"level": "WARNING"} for name in QUIET_LOGGERS},
        },
    }


def stderr_handler() -> logging.Handler:
    """The handler of every line. Python's warnings (a library's deprecation notice) become
    lines too, rather than free text among the JSON."""
    logging.captureWarnings(True)
    return logging.StreamHandler(sys.stderr)


def configure(settings: Settings) -> None:
    """Set up this process's logging (the `worker` and `dispatch` commands; `serve` hands
    `logging_config` to uvicorn instead)."""
    logging.config.dictConfig(logging_config(settings))
