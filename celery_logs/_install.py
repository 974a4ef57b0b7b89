"""``install()``: the one call that wires celery-logs into a Celery app; ``reset()`` undoes it."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

import structlog
from celery import Celery, signals

from . import _beat, _context, _encode, _lifecycle, _process, _queues, _runtime, _shutdown, _stdlib
from ._output import JsonLinesFile, Output, StreamOutput
from ._runtime import Runtime
from ._settings import RecordProcessor, Settings, SettingsError, resolve

_lock = threading.Lock()
#: (signal, dispatch uid) of every receiver install() connected.
_connected: list[tuple[Any, str]] = []


def install(
    app: Celery | None = None,
    *,
    service: str | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    stdout: bool | None = None,
    console: bool | None = None,
    environment: str | None = None,
    version: str | None = None,
    heartbeat_interval: float | None = None,
    log_results: bool | None = None,
    redact_keys: Iterable[str] | None = None,
    max_bytes: int | None = None,
    backup_count: int | None = None,
    level: str | int | None = None,
    max_value_chars: int | None = None,
    celery_task_lines: bool | None = None,
    queue_depth: bool | None = None,
    watch_queues: Iterable[str] | None = None,
    processors: Sequence[RecordProcessor] = (),
    stream: TextIO | None = None,
) -> Settings:
    """Send structured JSON records of every task's lifecycle, and every log line, to one output.

    Call it once per process, where the Celery app is created (worker and producers alike), after
    ``app.config_from_object(...)`` so that ``celery_logs_*`` settings are seen. Arguments left as
    ``None`` come from the Celery config, then ``CELERY_LOGS_*`` environment variables, then defaults
    (see ``docs/worker.md``). Calling it again replaces the previous installation.

    Returns the resolved settings. Raises :class:`SettingsError` for a bad setting.
    """
    keywords = {
        "service": service, "log_dir": log_dir, "stdout": stdout, "console": console,
        "environment": environment, "version": version, "heartbeat_interval": heartbeat_interval,
        "log_results": log_results, "redact_keys": redact_keys, "max_bytes": max_bytes,
        "backup_count": backup_count, "level": level, "max_value_chars": max_value_chars,
        "celery_task_lines": celery_task_lines, "queue_depth": queue_depth, "watch_queues": watch_queues,
    }
    config = _celery_config(app)
    settings = resolve(keywords, config=config, processors=processors)
    output = _make_output(settings, stream)
    with _lock:
        _teardown()
        runtime = Runtime(settings, output)
        _runtime.set_current(runtime)
        # Locks a parent thread (the heartbeat) may hold when the pool forks must not be inherited held.
        _process.watch_forks(_encode.after_fork, _runtime.after_fork)
        _stdlib.configure_structlog()
        _stdlib.install_tap(runtime)
        for name, receiver in (*_lifecycle.RECEIVERS, *_beat.RECEIVERS, *_PROCESS_RECEIVERS):
            sig = getattr(signals, name)
            uid = f"celery_logs.{receiver.__module__}.{name}"
            sig.connect(receiver, weak=False, dispatch_uid=uid)
            _connected.append((sig, uid))
        for name, receiver in _shutdown.RECEIVERS:  # after the lifecycle's: worker-offline is written first
            sig = getattr(signals, name)
            uid = f"celery_logs.shutdown.{name}"
            sig.connect(receiver, weak=False, dispatch_uid=uid)
            _connected.append((sig, uid))
    return settings


def _celery_config(app: Celery | None) -> dict[str, Any]:
    if app is None:
        return {}
    conf = app.conf
    return {key: conf.get(key) for key in conf if isinstance(key, str) and key.startswith("celery_logs_")}


def _make_output(settings: Settings, stream: TextIO | None) -> Output:
    if settings.log_dir is not None and not settings.stdout:
        try:
            return JsonLinesFile(Path(settings.log_dir), settings.service, max_bytes=settings.max_bytes,
                                 backup_count=settings.backup_count)
        except OSError as exc:
            raise SettingsError(f"celery-logs: cannot write to log_dir {settings.log_dir}: {exc.strerror}") from None
    return StreamOutput(stream, console=settings.console)


# How a worker's (and beat's) logging is set up (celery/app/log.py): Celery configures its console or
# --logfile handlers only on loggers without a handler, and only when nobody answers ``setup_logging``.
# celery-logs is on no logger (``_stdlib._Tap``) and answers nothing, so Celery sees what it would see
# without it. Only when JSON on the console was asked for does it take Celery's console handler out.


def _after_setup_logger(logger: logging.Logger | None = None, logfile: Any = None, **kwargs: Any) -> None:
    """Celery configured the root logger."""
    _json_console_only(logger or logging.getLogger(), logfile)


def _after_setup_task_logger(logger: logging.Logger | None = None, logfile: Any = None, **kwargs: Any) -> None:
    """Celery configured ``celery.task`` (which does not propagate)."""
    _json_console_only(logger or logging.getLogger(_stdlib.CELERY_TASK_LOGGER), logfile)


def _json_console_only(logger: logging.Logger, logfile: Any) -> None:
    runtime = _runtime.current()
    if runtime is None or not runtime.settings.json_console or logfile:
        return
    # JSON on stdout was asked for: the console carries our lines, not Celery's human ones too.
    for handler in list(logger.handlers):
        if type(handler) is logging.StreamHandler and handler.stream in (sys.__stderr__, sys.__stdout__):
            logger.removeHandler(handler)


def _worker_process_init(**kwargs: Any) -> None:
    """A new prefork child: its own file, no tasks or heartbeat inherited from the main process."""
    runtime = _runtime.current()
    if runtime is None:
        return
    try:
        _process.refresh()
        reopen = getattr(runtime.output, "reopen_after_fork", None)
        if reopen is not None:
            reopen()
        _lifecycle.forget_runs()
        _lifecycle.forget_worker()
        _shutdown.forget()
        _queues.forget()
    except Exception as exc:
        runtime.fault(exc, "re-initialising a worker child")


_PROCESS_RECEIVERS = (
    ("after_setup_logger", _after_setup_logger),
    ("after_setup_task_logger", _after_setup_task_logger),
    ("worker_process_init", _worker_process_init),
)


def _teardown() -> None:
    for sig, uid in _connected:
        sig.disconnect(dispatch_uid=uid)
    _connected.clear()
    _lifecycle.stop_heartbeat()
    _beat.stop()
    _queues.forget()
    _lifecycle.forget_worker()
    _shutdown.stop()
    _lifecycle.forget_runs()
    _stdlib.remove_tap()
    runtime = _runtime.current()
    if runtime is not None:
        runtime.output.close()
    _runtime.set_current(None)


def reset() -> None:
    """Undo :func:`install` (for tests): disconnect signals, remove the handler, close the file."""
    with _lock:
        _teardown()
        structlog.reset_defaults()
        _context.LABELS.set({})
        _context.TASK.set(None)
        _context.TRACE_ID.set(None)


def get_logger(name: str | None = None, **initial: Any) -> Any:
    """A structlog logger whose lines become records with the current task's context."""
    return structlog.stdlib.get_logger(name, **initial)


def fault_count() -> int:
    """How many logging faults this process has counted since :func:`install`."""
    runtime = _runtime.current()
    return runtime.faults if runtime is not None else 0


def installed() -> bool:
    """True when :func:`install` is in effect."""
    return _runtime.current() is not None

