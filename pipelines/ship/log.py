"""The shipper's own logs as JSON lines (ECS-style field names), and its progress line on a terminal."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import IO, Any

#: ``LogRecord`` attributes that are not user-supplied ``extra`` fields.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``@timestamp``, ``log.level``, ``log.logger``, ``message`` and extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "@timestamp": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info:
            doc["error.stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure_json_logging(stream: IO[str], *, level: int = logging.INFO) -> logging.Handler:
    """Send the shipper's logger to ``stream`` as JSON (called by the CLI, never at import)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("celery_logs.shipper")
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return handler
