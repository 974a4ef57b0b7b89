"""Context carried by every record made while it is bound: the running task, the trace id, labels.

Context variables, not thread-locals, so threads, gevent/eventlet greenlets and asyncio tasks each see
their own. The worker binds the task's context before the task runs and restores the previous one
after it, so nothing bound during a task reaches the next task on the same process.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

#: The running task's part of a record: ``{"celery": {"task": {...}, ...}, "trace": {"id": ...}}``.
TASK: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar("celery_logs_task", default=None)
_EMPTY: Mapping[str, Any] = MappingProxyType({})
#: ``labels.*`` bound by the user.
LABELS: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("celery_logs_labels", default=_EMPTY)
#: The trace id to stamp on tasks published from here (a web request, a task).
TRACE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("celery_logs_trace_id", default=None)


_LABEL_KEY = str.maketrans({".": "_", "*": "_", "\\": "_"})


def label_key(key: str) -> str:
    """A ``labels`` key as the ecs-logging spec wants it: ``.``, ``*`` and ``\\`` become ``_``."""
    return key.translate(_LABEL_KEY)


def _sanitised(labels: Mapping[str, Any]) -> dict[str, Any]:
    return {label_key(str(k)): v for k, v in labels.items()}


def bind_labels(**labels: Any) -> None:
    """Add ``labels.*`` to every record made from now on in this context (inside a task: until it ends)."""
    LABELS.set({**LABELS.get(), **_sanitised(labels)})


@contextlib.contextmanager
def bound_labels(**labels: Any) -> Iterator[None]:
    """Add ``labels.*`` to every record made inside the ``with`` block."""
    token = LABELS.set({**LABELS.get(), **_sanitised(labels)})
    try:
        yield
    finally:
        LABELS.reset(token)


def bind_trace_id(trace_id: str | None) -> None:
    """Set the ``trace.id`` stamped on tasks published from this context (e.g. the web request's id)."""
    TRACE_ID.set(trace_id)


@contextlib.contextmanager
def trace_context(trace_id: str) -> Iterator[None]:
    """Stamp ``trace_id`` on records and on tasks published inside the ``with`` block."""
    token = TRACE_ID.set(trace_id)
    try:
        yield
    finally:
        TRACE_ID.reset(token)


def current_trace_id() -> str | None:
    """The trace id of this context: the running task's, else the one bound by the caller."""
    return TRACE_ID.get()
