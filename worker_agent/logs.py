"""Logging shared by the agent and the dispatcher: secret redaction, JSON lines, rotating files.

This module is plain Python (the agent never imports Django); the dispatcher's settings
reference `RedactingFilter` and `JsonFormatter` from here, so both programs hide the same
secrets the same way. Every line names the task and worker it is about
(`worker_agent.logcontext`).
"""

from __future__ import annotations

import json
import logging
import logging.config
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from worker_agent.logcontext import FIELDS

MASK = "[redacted]"
LOG_FORMATS = ("plain", "json")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s [task=%(task_id)s worker=%(worker)s] %(message)s"
# Rotate at 10 MiB, keep 5 old files.
MAX_BYTES = 10 * 1024 * 1024
BACKUP_COUNT = 5

_PATTERNS = (
    # The original system's ?api_key=... query parameter, also URL-encoded inside another
    # parameter (the login redirect's `next=/tasks/%3Fapi_key%3D...`).
    (re.compile(r"((?:[?&]|%3F|%26)api_key(?:=|%3D))[^&\s\"']*", re.IGNORECASE), r"\1" + MASK),
    # Our secrets: ack_ (API key), acw_ (worker token), acj_ (join key); keep the prefix.
    (re.compile(r"\b(ac[kwj]_[0-9a-f]{8}_)[A-Za-z0-9_-]+"), r"\1" + MASK),
    (re.compile(r"(\bBearer\s+)[^\s\"',]+", re.IGNORECASE), r"\1" + MASK),
    # aria2's RPC secret, as a call parameter or in its conf file.
    (re.compile(r"(\btoken:)[^\s\"',\]]+"), r"\1" + MASK),
    (re.compile(r"(\brpc-secret=)\S+"), r"\1" + MASK),
    (re.compile(r"(\bX-API-Key[\"']?\s*[:=]\s*[\"']?)[^\s\"',]+", re.IGNORECASE), r"\1" + MASK),
)


def redact(text: str) -> str:
    """Hide every secret shape we know (`?api_key=`, our keys and tokens, aria2's secret)."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Redact the formatted message (and exception text) of every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


# Record attributes every LogRecord has; anything else came from `extra=` and is kept.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def plain_formatter() -> logging.Formatter:
    """`PLAIN_FORMAT`, with ``-`` for a task or worker id the record does not carry."""
    return logging.Formatter(PLAIN_FORMAT, defaults=dict.fromkeys(FIELDS, "-"))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, task_id and worker (null when unset),
    message, any `extra=` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            **{name: getattr(record, name, None) for name in FIELDS},
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                plain = value is None or isinstance(value, str | int | float | bool)
                entry[key] = value if plain else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def logging_config(
    level: str,
    *,
    log_file: Path | None,
    log_format: str,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A `logging.config.dictConfig` dict: stdout, plus a rotating `log_file` when given.

    `context`: ids every line carries where no `log_context` sets them (the agent's worker name).
    """
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {list(LOG_FORMATS)}, got {log_format!r}")
    formatter = {
        "()": "worker_agent.logs.JsonFormatter"
        if log_format == "json"
        else "worker_agent.logs.plain_formatter"
    }
    filters = ["context", "redact"]
    handlers: dict[str, Any] = {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "main",
            "filters": filters,
        }
    }
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers["file"] = {
            "class": "logging.handlers.RotatingFileHandler",
            "filename": str(log_file),
            "maxBytes": MAX_BYTES,
            "backupCount": BACKUP_COUNT,
            "encoding": "utf-8",
            "formatter": "main",
            "filters": filters,
        }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {
                "()": "worker_agent.logcontext.LogContextFilter",
                "defaults": dict(context or {}),
            },
            "redact": {"()": "worker_agent.logs.RedactingFilter"},
        },
        "formatters": {"main": formatter},
        "handlers": handlers,
        "root": {"handlers": list(handlers), "level": level},
    }


def configure_logging(
    level: str,
    *,
    log_file: Path | None = None,
    log_format: str = "plain",
    context: dict[str, Any] | None = None,
) -> None:
    """Set up the root logger of a plain-Python process (the agent; `context={"worker": name}`)."""
    logging.config.dictConfig(
        logging_config(level, log_file=log_file, log_format=log_format, context=context)
    )
