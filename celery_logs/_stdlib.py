"""Routing stdlib logging (Celery's own lines and the user's) and structlog through the one renderer."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, Final

import structlog
from structlog.stdlib import ProcessorFormatter

from . import _context
from ._encode import set_path, truncate
from ._exceptions import error_fields
from ._runtime import Runtime, current

#: Top-level record keys a user's extra field may not replace; such extras go under ``labels``.
_RESERVED: Final = frozenset(
    {"@timestamp", "message", "log", "event", "ecs", "service", "host", "process", "trace", "error", "celery",
     "celery_logs", "labels"}
)
#: Keys structlog / ProcessorFormatter add that are already represented in the record.
_DROP: Final = ("timestamp", "_record", "_from_structlog", "stack_info", "positional_args")


def _bounded(runtime: Runtime, key: str, value: Any) -> Any:
    if runtime.redactor.is_secret(key):
        return "[REDACTED]"
    if isinstance(value, str):
        return truncate(value, runtime.settings.max_value_chars)
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    return runtime.redactor.repr(value)


def build_record(runtime: Runtime, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
    """The record of one log line (stdlib or structlog), with the task context of where it was logged."""
    log_record: logging.LogRecord | None = event_dict.get("_record")
    for key in _DROP:
        event_dict.pop(key, None)
    message = event_dict.pop("event", "")
    level = event_dict.pop("level", None) or (log_record.levelname if log_record else "info")
    logger = event_dict.pop("logger", None) or (log_record.name if log_record else "")
    exc_info = event_dict.pop("exc_info", None)
    created = log_record.created if log_record is not None else None
    now = int(created * 1e9) if created is not None else time.time_ns()
    record = runtime.new_record(now, dataset="celery.app", level=str(level).lower(),
                                message=truncate(str(message), runtime.settings.max_value_chars), logger=str(logger))
    task = _context.TASK.get()
    if task is not None:
        record["celery"] = task["celery"]
        if "trace" in task:
            record["trace"] = task["trace"]
    else:
        trace_id = _context.TRACE_ID.get()
        if trace_id:
            record["trace"] = {"id": trace_id}
    labels: dict[str, Any] = dict(runtime.redactor.mapping(_context.LABELS.get()))
    for raw_key, value in event_dict.items():
        key = str(raw_key)
        if key.split(".", 1)[0] in _RESERVED:
            labels[key] = _bounded(runtime, key, value)
        else:
            set_path(record, key, _bounded(runtime, key, value))
    if labels:
        record["labels"] = labels
    exc = _exception(exc_info)
    if exc is not None:
        record["error"] = error_fields(exc)
    return record


def _exception(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
        return exc_info[1]
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def _render_with_runtime(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> str:
    runtime = current()
    if runtime is None:
        return str(event_dict.get("event", ""))
    return runtime.render(build_record(runtime, event_dict))


class RecordHandler(logging.Handler):
    """The root handler: each log line becomes one record on the installation's output."""

    def __init__(self, runtime: Runtime, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.runtime = runtime
        self.setFormatter(
            ProcessorFormatter(
                foreign_pre_chain=[structlog.contextvars.merge_contextvars],
                processors=[_render_with_runtime],
            )
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            self.runtime.output.write_line(line if line.endswith("\n") else line + "\n")
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        self.runtime.fault(exc if exc is not None else RuntimeError("unknown"), "writing a log line")


STRUCTLOG_PROCESSORS: Final[list[Any]] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.filter_by_level,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.stdlib.PositionalArgumentsFormatter(),
    ProcessorFormatter.wrap_for_formatter,
]


def configure_structlog() -> None:
    """structlog hands its events to stdlib logging, so both end in :class:`RecordHandler`."""
    structlog.configure(
        processors=STRUCTLOG_PROCESSORS,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def install_handler(runtime: Runtime, level: str) -> RecordHandler:
    """Put our handler on the root logger (replacing a previous one of ours) and set the root level."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, RecordHandler):
            root.removeHandler(handler)
    handler = RecordHandler(runtime)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def remove_handlers() -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, RecordHandler):
            root.removeHandler(handler)

