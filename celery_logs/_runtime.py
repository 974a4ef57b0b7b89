"""The one piece of global state: the current installation, and the fault barrier around it."""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any, Final

from . import _process
from ._encode import encode_json, event_id, iso_timestamp, render_json_with_tail
from ._output import Output
from ._redact import Redactor
from ._schema import ECS_VERSION, SCHEMA_VERSION
from ._settings import Settings

_SCHEMA: Final = {"schema_version": SCHEMA_VERSION}


class Runtime:
    """Everything an installation needs while it runs: settings, the output, the redactor, fault count."""

    def __init__(self, settings: Settings, output: Output) -> None:
        self.settings = settings
        self.output = output
        self.redactor = Redactor(keys=settings.redact_keys, limit=settings.max_value_chars)
        service: dict[str, Any] = {"name": settings.service}
        if settings.version is not None:
            service["version"] = settings.version
        if settings.environment is not None:
            service["environment"] = settings.environment
        self._service = service
        self._host = {"hostname": socket.gethostname()}
        self._processors = settings.processors
        #: True when records may be formatted straight to JSON text (no user processors, JSON output). Both
        #: are fixed for the life of a Runtime, so it is decided once, not asked twice per task.
        self.fast_path = not self._processors and output.renders_json
        # The fields that never change within a process are encoded once (per pid), not per record.
        self._json_tail_pid = -1
        self._json_tail = ""
        self.faults = 0
        self._fault_lock = threading.Lock()
        self._fault_reported = False

    def new_record(self, now_ns: int, *, dataset: str, level: str, message: str, logger: str,
                   action: str | None = None) -> dict[str, Any]:
        """The fields that vary per record; :meth:`render` adds the per-process ones."""
        event: dict[str, Any] = {"id": event_id(now_ns), "kind": "event", "dataset": dataset}
        if action is not None:
            event["action"] = action
        # The ecs-logging spec's order and shape: @timestamp, log.level (a top-level dotted key), message.
        return {
            "@timestamp": iso_timestamp(now_ns),
            "log.level": level,
            "message": message,
            "log": {"logger": logger},
            "event": event,
        }

    def constant_fields(self) -> dict[str, Any]:
        """The fields that are the same for every record of this process."""
        return {
            "ecs.version": ECS_VERSION,  # a top-level dotted key, as the ecs-logging spec says
            "service": self._service,
            "host": self._host,
            "process": {"pid": _process.pid()},
            "celery_logs": _SCHEMA,
        }

    def json_tail(self) -> str:
        """The per-process fields as JSON members (``,"ecs.version":...}``), closing the record's object."""
        pid = _process._state["pid"]  # asked for every line: no call for the pid
        if pid != self._json_tail_pid:
            self._json_tail = "," + encode_json(self.constant_fields())[1:]
            self._json_tail_pid = pid
        return self._json_tail

    def render(self, record: dict[str, Any]) -> str:
        """The line of a record: user processors applied, per-process fields added, one ``\\n`` at the end."""
        if self._processors or not self.output.renders_json:
            full = {**record, **self.constant_fields()}
            for processor in self._processors:
                full = processor(full)
            return self.output.render(full)
        return render_json_with_tail(record, self.json_tail())

    def emit(self, record: dict[str, Any]) -> None:
        """Render and write one record; a failure is counted and reported, never raised."""
        try:
            self.output.write_line(self.render(record))
        except Exception as exc:
            self.fault(exc, "writing a record")

    def emit_line(self, line: str) -> None:
        """Write a line already rendered (the lifecycle fast path); failures as in :meth:`emit`."""
        try:
            self.output.write_line(line)
        except Exception as exc:
            self.fault(exc, "writing a record")

    def fault(self, exc: BaseException, where: str) -> None:
        """Count a logging fault; say so once on stderr. The task's outcome is not touched."""
        with self._fault_lock:
            self.faults += 1
            first = not self._fault_reported
            self._fault_reported = True
        if first:
            try:
                sys.stderr.write(
                    f"celery-logs: logging fault while {where}: {type(exc).__name__}: {exc} "
                    f"(records may be missing; further faults are counted, not reported)\n"
                )
                sys.stderr.flush()
            except Exception:  # stderr itself is gone: nowhere left to report to
                return


_current: Runtime | None = None


def after_fork() -> None:
    """In a forked child: a fresh fault lock (a parent thread may have held it at fork time)."""
    if _current is not None:
        _current._fault_lock = threading.Lock()


def current() -> Runtime | None:
    """The installed runtime, or ``None``."""
    return _current


def set_current(runtime: Runtime | None) -> None:
    global _current  # noqa: PLW0603 - the single place where celery-logs keeps global state
    _current = runtime

