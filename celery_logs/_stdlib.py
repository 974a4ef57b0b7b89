"""Routing stdlib logging (Celery's own lines and the user's) and structlog through the one renderer."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any, Final

import structlog
from structlog.stdlib import ProcessorFormatter

from . import _context, _undecodable
from ._encode import truncate
from ._exceptions import error_fields
from ._extras import place_extras
from ._runtime import Runtime, current

#: Keys structlog / ProcessorFormatter add that are already represented in the record.
_DROP: Final = ("timestamp", "_record", "_from_structlog", "stack_info", "positional_args")


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
    if event_dict:
        place_extras(runtime, record, labels, event_dict)
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
        if record.name == _undecodable.LOGGER:
            _undecodable.observe(self.runtime, record)
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


#: Celery's loggers whose INFO lines repeat what task-received / task-succeeded / task-retried say.
CELERY_TASK_LOGGERS: Final = ("celery.worker.strategy", "celery.app.trace")
#: Celery's logger of ``get_task_logger`` loggers; Celery's setup makes it not propagate to the root.
CELERY_TASK_LOGGER: Final = "celery.task"


class SkipCeleryTaskLines(logging.Filter):
    """Keeps Celery's per-task INFO lines out of our output only: the lifecycle records already say them.

    A filter on our handler, never a logger level: Celery's console, ``--logfile`` and the user's own
    handlers still get every line they would get without celery-logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name not in CELERY_TASK_LOGGERS


def _ours(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if isinstance(h, RecordHandler)]


def attach(runtime: Runtime, logger: logging.Logger) -> RecordHandler:
    """Our handler on ``logger`` (replacing a previous one of ours); no logger's level is touched."""
    for handler in _ours(logger):
        logger.removeHandler(handler)
    handler = RecordHandler(runtime, logging.getLevelName(runtime.settings.level))
    if not runtime.settings.celery_task_lines:
        handler.addFilter(SkipCeleryTaskLines())
    logger.addHandler(handler)
    return handler


def install_handler(runtime: Runtime) -> RecordHandler:
    """Our handler on the root logger, and on ``celery.task`` when Celery has made it a logger of its own.

    The root level is lowered to ours only while logging is unconfigured (no other handler on the root),
    so no other handler sees lines it would not have seen; in a worker, Celery's ``--loglevel`` then sets
    the levels as it always does.
    """
    root = logging.getLogger()
    handler = attach(runtime, root)
    level = logging.getLevelName(runtime.settings.level)
    if root.level > level and all(isinstance(h, RecordHandler) for h in root.handlers):
        root.setLevel(level)
    task_logger = logging.getLogger(CELERY_TASK_LOGGER)
    if not task_logger.propagate:
        attach(runtime, task_logger)
    return handler


def remove_handlers() -> None:
    for logger in (logging.getLogger(), logging.getLogger(CELERY_TASK_LOGGER)):
        for handler in _ours(logger):
            logger.removeHandler(handler)
