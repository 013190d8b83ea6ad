"""Structured logs: one JSON object per line on stdout, with Heroku's request id when there is one."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

# Heroku's router gives every request an X-Request-ID and logs it; carrying it into the app's
# lines lets the two be joined in a log drain.
REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID = 200
# Attributes every LogRecord has; anything else came in through ``extra=`` and is kept.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


def request_id() -> str | None:
    from flask import has_request_context, request

    if not has_request_context():
        return None
    value = request.headers.get(REQUEST_ID_HEADER)
    return value[:MAX_REQUEST_ID] if value else None


def task_context() -> dict:
    """The Celery task this line was logged from, if any (workers log runs, not requests)."""
    task_module = sys.modules.get("celery._state")  # never import Celery just to log
    task = task_module.get_current_task() if task_module else None
    if task is None or task.request is None or task.request.id is None:
        return {}
    return {"task_id": task.request.id, "task": task.name}


class JsonFormatter(logging.Formatter):
    """A LogRecord as one line of JSON: time, level, logger, message, request or task, process."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        try:
            found = request_id()
        except Exception:  # logging must never fail a request
            found = None
        if found:
            entry["request_id"] = found
        entry.update(task_context())
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def install_json_logging(level: str = "INFO", *, stream=None) -> logging.Handler:
    """Send the root logger's records to stdout as JSON lines; idempotent (one handler per process)."""
    root = logging.getLogger()
    for handler in root.handlers:
        if getattr(handler, "inkling_json", False):
            return handler
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.inkling_json = True
    root.addHandler(handler)
    root.setLevel(level)
    return handler
