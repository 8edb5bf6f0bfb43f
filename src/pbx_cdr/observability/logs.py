"""Logging: one line per event, plain text or JSON (``PBX_CDR_LOG_JSON=true``), with request ids.

Server processes get this configuration through uvicorn's ``log_config`` (see ``cli/serve.py``), so
every worker logs the same way. Every message and traceback passes through ``redact.scrub``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from pbx_cdr.config import Settings
from pbx_cdr.observability.context import request_id
from pbx_cdr.observability.redact import scrub

# Fields an access log record carries (``logger.info(..., extra={...})``), in this order.
ACCESS_FIELDS = ("method", "path", "route", "status", "duration_ms", "bytes", "client", "account_id")
_RESERVED = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime"}


class RequestIdFilter(logging.Filter):
    """Stamps each record with the id of the request being served ("-" outside requests)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id.get() or "-"
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            "request_id": getattr(record, "request_id", None) or request_id.get(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and key not in doc and not key.startswith("_"):
                doc[key] = value if isinstance(value, int | float | bool | None) else scrub(str(value))
        if record.exc_info:
            doc["exception"] = scrub(self.formatException(record.exc_info))
        return orjson.dumps(doc).decode()


class TextFormatter(logging.Formatter):
    """``time level logger [request id] message``, tracebacks scrubbed like the message."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _timestamp(record)

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def log_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for server processes (uvicorn applies it in each worker)."""
    level = settings.log_level.upper()
    formatter = "json" if settings.log_json else "text"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"json": {"()": JsonFormatter}, "text": {"()": TextFormatter}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": formatter,
                "filters": ["request_id"],
            },
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": formatter,
                "filters": ["request_id"],
            },
        },
        "loggers": {
            "pbx_cdr": {"handlers": ["stderr"], "level": level, "propagate": False},
            # One line per request, on stdout as uvicorn's own access log was; events go to stderr.
            "pbx_cdr.access": {"handlers": ["stdout"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            # Replaced by pbx_cdr.access, which masks query strings (uvicorn logs them whole).
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
        },
    }
