"""Routing stdlib logging (Celery's own lines and the user's) and structlog through the one renderer."""

from __future__ import annotations

import logging
import sys
import threading
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
    """Each log line becomes one record on the installation's output (fed by :class:`_Tap`, on no logger)."""

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


class _Tap:
    """Hears the log records that reach the root logger without being a handler on any logger, as Sentry's
    logging integration does.

    A handler on the root logger counts as "logging is configured" everywhere that asks: ``basicConfig()``
    becomes a no-op, ``logging.lastResort`` stops printing warnings of a program that configured nothing,
    and Celery's setup adds no console handler to a root logger it does not hijack (beat, or a worker
    with ``worker_hijack_root_logger=False``). So celery-logs wraps ``Logger.callHandlers`` instead: it
    runs every handler the program has, exactly as before, then hands the record to ours.
    """

    def __init__(self) -> None:
        self.handler: RecordHandler | None = None
        self.previous: Any = None
        #: ``_tapped`` is in the chain of ``Logger.callHandlers`` (maybe under another library's wrapper).
        self.wrapped = False
        self._busy = threading.local()

    def __call__(self, logger: logging.Logger, record: logging.LogRecord) -> None:
        try:
            self.previous(logger, record)
        finally:
            handler = self.handler
            # A line logged while ours is written (by a processor, say) is not written by ours again.
            if (handler is not None and record.levelno >= handler.level and not getattr(self._busy, "on", False)
                    and _reaches_root(logger)):
                self._busy.on = True
                try:
                    handler.handle(record)
                finally:
                    self._busy.on = False


_tap = _Tap()


def _reaches_root(logger: logging.Logger) -> bool:
    """Whether a record of ``logger`` propagates to the root logger's handlers, or to ``celery.task``'s
    (Celery makes it stop there): the lines a handler on those two would get, and no others, so a
    library that keeps its lines to itself (``propagate = False``) stays out of the records too."""
    node: logging.Logger | None = logger
    while node is not None:
        if node.parent is None or node.name == CELERY_TASK_LOGGER:
            return True
        if not node.propagate:
            return False
        node = node.parent
    return True


def _tapped(logger: logging.Logger, record: logging.LogRecord) -> None:
    _tap(logger, record)


def install_tap(runtime: Runtime) -> RecordHandler:
    """From now on every record any logger handles also reaches our handler; no level or handler changes."""
    handler = RecordHandler(runtime, logging.getLevelName(runtime.settings.level))
    if not runtime.settings.celery_task_lines:
        handler.addFilter(SkipCeleryTaskLines())
    if not _tap.wrapped:
        _tap.previous = logging.Logger.callHandlers
        logging.Logger.callHandlers = _tapped  # type: ignore[method-assign,assignment]
        _tap.wrapped = True
    _tap.handler = handler
    return handler


def remove_tap() -> None:
    """Our handler hears nothing more; ``Logger.callHandlers`` is given back unless wrapped again since."""
    _tap.handler = None
    if logging.Logger.callHandlers is _tapped:
        logging.Logger.callHandlers = _tap.previous  # type: ignore[method-assign]
        _tap.wrapped = False
    # Else another library wrapped it after us and holds ours: we stay in its chain, passing through,
    # and a later install() only gives the tap a handler again.
