"""Where lines go: one JSON-lines file per process with rotation by rename, or a stream (stdout).

The file contract the shipper relies on: ``<log_dir>/<service>.<pid>.jsonl``, rotated by renaming it
to ``.jsonl.1`` (older ones shift to ``.2``, ``.3``, ...) once it would grow past ``max_bytes``; each
line is one record ending in ``\\n``, written with a single ``write`` on an ``O_APPEND`` descriptor,
unbuffered, so a process killed at any moment leaves only whole lines behind.
"""

from __future__ import annotations

import errno
import os
import re
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TextIO

from . import _process
from ._encode import render_json

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class Output(Protocol):
    """A destination of rendered records."""

    #: True when :meth:`render` is plain JSON (so a pre-encoded tail may be spliced on).
    renders_json: bool

    def write(self, record: Mapping[str, Any]) -> None: ...

    def write_line(self, line: str) -> None: ...

    def render(self, record: Mapping[str, Any]) -> str: ...

    def close(self) -> None: ...


def file_name(service: str, pid: int) -> str:
    """``<service>.<pid>.jsonl`` with the service name made safe for a file name."""
    return f"{_UNSAFE.sub('_', service)}.{pid}.jsonl"


class JsonLinesFile:
    """The JSON-lines file of the current process; a forked child switches to its own file on first write."""

    def __init__(self, directory: Path, service: str, *, max_bytes: int, backup_count: int) -> None:
        self.directory = directory
        self.service = service
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._fd = -1
        self._pid = -1
        self._size = 0
        self._lock = threading.Lock()
        # The file name follows the pid, which must stay right in forked children.
        _process.watch_forks()
        self._lock_pid = _process.pid()
        self.renders_json = True
        directory.mkdir(parents=True, exist_ok=True)
        if not os.access(directory, os.W_OK | os.X_OK):
            # Files open on the first record; say now, not at the first task, that none can be made.
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(directory))

    @property
    def path(self) -> Path:
        """The file this process writes (opened on its first record, so idle children leave no file)."""
        return self.directory / file_name(self.service, _process.pid())

    def _open(self, pid: int) -> None:
        if self._fd >= 0:
            # After a fork this is the parent's descriptor (our copy of it): close, never write to it.
            os.close(self._fd)
            self._fd = -1
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(self.directory / file_name(self.service, pid), flags, 0o644)
        self._pid = pid
        self._size = os.fstat(self._fd).st_size

    def reopen_after_fork(self) -> None:
        """In a forked child: forget the parent's lock; the child's own file opens on its first record."""
        self._lock = threading.Lock()
        self._lock_pid = _process.pid()

    def render(self, record: Mapping[str, Any]) -> str:
        return render_json(record)

    def write(self, record: Mapping[str, Any]) -> None:
        self.write_line(render_json(record))

    def write_line(self, line: str) -> None:
        pid = _process._state["pid"]  # two lines per task come through here: no call for the pid
        if self._lock_pid != pid:
            # A fork copied the parent's lock, possibly held by a parent thread that does not exist here.
            self.reopen_after_fork()
        data = line.encode("utf-8", "backslashreplace")
        # The lock is not for the write (one O_APPEND write is whole on its own) but for what goes with
        # it: the size that decides rotation, the rotation's renames, and opening the file in a child.
        with self._lock:
            if self._pid != pid:
                self._open(pid)
            if self._size + len(data) > self.max_bytes > 0 and self._size > 0 and self.backup_count > 0:
                self._rotate()
            written = os.write(self._fd, data)
            if written < len(data):  # rare (signal, full disk): finish the line rather than tear it
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(self._fd, view):]
            self._size += len(data)

    def _rotate(self) -> None:
        # RotatingFileHandler's scheme, which file shippers know how to follow: rename, never copy.
        base = str(self.directory / file_name(self.service, self._pid))
        for i in range(self.backup_count - 1, 0, -1):
            src = f"{base}.{i}"
            if os.path.exists(src):
                os.replace(src, f"{base}.{i + 1}")
        os.replace(base, f"{base}.1")
        self._open(self._pid)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
            self._fd = -1
            self._pid = -1


class StreamOutput:
    """Records as lines on a text stream (stdout by default), JSON or, on a terminal, console-rendered."""

    def __init__(self, stream: TextIO | None = None, *, console: bool = False) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._render: Callable[[Mapping[str, Any]], str] = render_json
        self.renders_json = True
        target = stream if stream is not None else sys.stdout
        if console and target.isatty():
            self._render = _console_renderer()
            self.renders_json = False

    def render(self, record: Mapping[str, Any]) -> str:
        return self._render(record)

    def write(self, record: Mapping[str, Any]) -> None:
        self.write_line(self._render(record))

    def write_line(self, line: str) -> None:
        stream = self._stream if self._stream is not None else _process_stdout()
        with self._lock:
            stream.write(line)
            stream.flush()

    def close(self) -> None:
        """Streams belong to the caller; nothing to close."""


def _process_stdout() -> TextIO:
    """``sys.stdout``, unless a Celery worker has redirected it into logging (``worker_redirect_stdouts``):
    a line written there would come back to our handler, which Celery's proxy drops as recursion."""
    stream = sys.stdout
    if type(stream).__name__ == "LoggingProxy" and sys.__stdout__ is not None:
        return sys.__stdout__
    return stream


def _console_renderer() -> Callable[[Mapping[str, Any]], str]:
    from structlog.dev import ConsoleRenderer

    renderer = ConsoleRenderer(colors=True)

    def render(record: Mapping[str, Any]) -> str:
        flat: dict[str, Any] = {}
        _flatten(record, "", flat)
        event: dict[str, Any] = {
            "timestamp": flat.pop("@timestamp", ""),
            "level": flat.pop("log.level", "info"),
            "event": flat.pop("message", ""),
        }
        stack = flat.pop("error.stack_trace", None)
        for key in ("event.id", "event.kind", "ecs.version", "celery_logs.schema_version", "host.hostname",
                    "service.name", "service.environment", "service.version", "process.pid"):
            flat.pop(key, None)
        event.update(flat)
        text = str(renderer(None, "info", event))
        if stack:
            text += "\n" + str(stack).rstrip("\n")
        return text + "\n"

    return render


def _flatten(node: Mapping[str, Any], prefix: str, out: dict[str, Any]) -> None:
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            _flatten(value, name + ".", out)
        else:
            out[name] = value
