"""Lifecycle records from Celery's signals, on the producer, in the worker's main process and in its children.

Where each record is made (prefork):

* ``task-published``: the producer; ``before_task_publish`` stamps the publish time and trace id in the
  message headers, ``after_task_publish`` writes the record once the broker took the message.
* ``task-received``, ``task-revoked``, ``task-unknown``, ``task-rejected`` and the ``worker-*`` records: the
  main process (consumer).
* ``task-started``, ``task-succeeded``, ``task-failed``, ``task-retried``: the child that runs the task.
* ``task-failed`` when the child itself died (hard time limit, SIGKILL, OOM): the main process, which
  Celery tells through ``task_failure`` with ``TimeLimitExceeded`` / ``WorkerLostError``.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import functools
import os
import signal as _signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from json.encoder import encode_basestring_ascii as _escape  # the C escaper, without a wrapper call
from types import TracebackType
from typing import Any, Final

import structlog

from . import _context, _queues
from ._encode import encode_json, iso_from_seconds, iso_timestamp, new_trace_id, truncate
from ._encode import encode_str as _encode_str
from ._encode import next_event_id as _next_event_id
from ._exceptions import error_fields, qualified_name
from ._runtime import Runtime, current

#: Message headers stamped by ``task-published`` and read by the worker.
HEADER_PUBLISHED_NS: Final = "celery_logs_published_ns"
HEADER_TRACE_ID: Final = "celery_logs_trace_id"

_LOGGER: Final = "celery_logs.lifecycle"

#: ``event.action`` -> (``log.level``, ``event.outcome`` or None, ``celery.task.state`` or None)
_ACTION_TRAITS: Final[dict[str, tuple[str, str | None, str | None]]] = {
    "task-published": ("info", None, "PENDING"),
    "task-received": ("info", None, "RECEIVED"),
    "task-started": ("info", None, "STARTED"),
    "task-succeeded": ("info", "success", "SUCCESS"),
    "task-failed": ("error", "failure", "FAILURE"),
    "task-retried": ("warning", "unknown", "RETRY"),  # the attempt failed; the task's outcome is not known yet
    "task-revoked": ("warning", "unknown", "REVOKED"),
    "task-rejected": ("error", "failure", "REJECTED"),
    "task-unknown": ("error", "failure", None),
    "worker-online": ("info", None, None),
    "worker-heartbeat": ("info", None, None),
    "worker-shutting-down": ("info", None, None),
    "worker-offline": ("info", None, None),
}


def _guarded(func: Callable[..., None]) -> Callable[..., None]:
    """Run a signal receiver behind the fault barrier: a logging bug never reaches Celery or the task."""

    @functools.wraps(func)
    def receiver(*args: Any, **kwargs: Any) -> None:
        runtime = current()
        if runtime is None:
            return
        try:
            func(runtime, *args, **kwargs)
        except Exception as exc:
            runtime.fault(exc, f"handling {func.__name__.lstrip('_')}")

    return receiver


# --- building blocks --------------------------------------------------------------------------------


def _task_record(runtime: Runtime, now: int, action: str, message: str, part: Mapping[str, Any]) -> dict[str, Any]:
    """A task record: common fields, the task's part (copied one level deep), state and outcome."""
    level, outcome, state = _ACTION_TRAITS[action]
    record = runtime.new_record(now, dataset="celery.task", level=level, message=message, logger=_LOGGER,
                                action=action)
    if outcome is not None:
        record["event"]["outcome"] = outcome
    celery = dict(part["celery"])
    task = dict(celery["task"])
    if state is not None:
        task["state"] = state
    celery["task"] = task
    record["celery"] = celery
    if part.get("trace") is not None:
        record["trace"] = part["trace"]
    labels = _context.LABELS.get()
    if labels:
        record["labels"] = runtime.redactor.mapping(labels)
    return record


def _task_part(*, task_id: str, name: str | None, root_id: Any = None, parent_id: Any = None, group_id: Any = None,
               retries: Any = None, delivery_info: Mapping[str, Any] | None = None, worker: Any = None,
               trace_id: Any = None) -> dict[str, Any]:
    """The task's part of every record about it (and of user lines logged while it runs)."""
    task: dict[str, Any] = {}
    if task_id:
        task["id"] = task_id
    if name:
        task["name"] = name
    if root_id:
        task["root_id"] = root_id
    if parent_id:
        task["parent_id"] = parent_id
    if group_id:
        task["group_id"] = group_id
    if isinstance(retries, int):
        task["retries"] = retries
    celery: dict[str, Any] = {"task": task}
    if delivery_info:
        exchange = delivery_info.get("exchange")
        routing_key = delivery_info.get("routing_key")
        queue = delivery_info.get("queue") or routing_key
        if queue:
            celery["queue"] = queue
        if exchange:
            celery["exchange"] = exchange
        if routing_key:
            celery["routing_key"] = routing_key
    if worker:
        celery["worker"] = worker
    part: dict[str, Any] = {"celery": celery}
    if trace_id:
        part["trace"] = {"id": str(trace_id)}
    return part


def _fallback_trace_id(root_id: Any, task_id: Any) -> str | None:
    """For a message without our trace header (its producer runs without celery-logs): the workflow's
    root task id, so every record of one workflow still shares one ``trace.id``."""
    source = root_id or task_id
    return str(source).replace("-", "") if source else None


def _part_from_context(ctx: Any, name: str | None) -> dict[str, Any]:
    """Task part from a ``celery.app.task.Context`` (a task's ``request``)."""
    root_id = getattr(ctx, "root_id", None)
    return _task_part(
        task_id=ctx.id,
        name=name or getattr(ctx, "task", None),
        root_id=root_id,
        parent_id=getattr(ctx, "parent_id", None),
        group_id=getattr(ctx, "group", None),
        retries=getattr(ctx, "retries", None),
        delivery_info=getattr(ctx, "delivery_info", None),
        worker=getattr(ctx, "hostname", None),
        trace_id=getattr(ctx, HEADER_TRACE_ID, None) or _fallback_trace_id(root_id, ctx.id),
    )


def _part_from_request(req: Any) -> dict[str, Any]:
    """Task part from a ``celery.worker.request.Request`` (the main process's view of a message)."""
    headers = req.request_dict
    return _task_part(
        task_id=req.id,
        name=req.name,
        root_id=req.root_id,
        parent_id=req.parent_id,
        group_id=headers.get("group"),
        retries=headers.get("retries"),
        delivery_info=req.delivery_info,
        worker=req.hostname,
        trace_id=headers.get(HEADER_TRACE_ID) or _fallback_trace_id(req.root_id, req.id),
    )


def _iso_any(value: Any) -> str | None:
    """ISO-8601 UTC for a datetime, an ISO string or a Unix time; ``None`` when absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return iso_from_seconds(value.timestamp())
    if isinstance(value, (int, float)):
        return iso_from_seconds(float(value))
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return _iso_any(parsed)


def _seconds(ns: int) -> str:
    return f"{ns / 1e9:.3f}"


def _signal_name(signum: Any) -> str | None:
    if signum is None or signum == "":
        return None
    if isinstance(signum, int):
        try:
            return _signal.Signals(signum).name
        except ValueError:
            return str(signum)
    return str(signum)


# --- the per-task fast path: lines formatted directly from pre-encoded pieces ------------------------


def _frame(action: str) -> tuple[str, str, str, str]:
    """The constant text of one action's line around its varying parts (see :func:`_line`)."""
    level, outcome, state = _ACTION_TRAITS[action]
    return (
        f'","log.level":"{level}","message":',
        f',"log":{{"logger":"{_LOGGER}"}},"event":{{"id":"',
        f'","kind":"event","dataset":"celery.task","action":"{action}"'
        + (f',"outcome":"{outcome}"' if outcome is not None else ""),
        f',"state":"{state}"',
    )


_PUBLISHED: Final = _frame("task-published")
_RECEIVED: Final = _frame("task-received")
_STARTED: Final = _frame("task-started")
_SUCCEEDED: Final = _frame("task-succeeded")
#: The constant runs of task-started / task-succeeded between their varying parts (see :class:`_Shape`).
_STARTED_START: Final = _STARTED[2] + ',"start":"'
_QUEUE_WAIT: Final = '"queue_wait":'
_SUCCEEDED_ID: Final = ' s"' + _SUCCEEDED[1]
_SUCCEEDED_DURATION: Final = _SUCCEEDED[2] + ',"duration":'
_SUCCEEDED_STATE: Final = _SUCCEEDED[3]


def _line(runtime: Runtime, now: int, stamp: str, message: str, frame: tuple[str, str, str, str], *, own: str,
          rest: str, trace: str, event_members: str = "", task_members: str = "", celery_members: str = "") -> str:
    """The line :func:`_task_record` + rendering would give, from pre-encoded pieces.

    The four records of every task (published, received, started, succeeded) skip building and
    encoding nested dicts; tests check both paths give the same bytes. ``message`` is a JSON string,
    ``own`` the task's members before ``state`` (:func:`_own`), ``rest`` and ``trace`` from :class:`_Shape`.
    """
    level_member, log_and_id, action_members, state = frame
    labels = _context.LABELS.get()
    labels_member = ',"labels":' + encode_json(runtime.redactor.mapping(labels)) if labels else ""
    return (
        f'{{"@timestamp":"{stamp}{level_member}{message}{log_and_id}{_next_event_id(now)}{action_members}'
        f'{event_members}}},"celery":{{"task":{{{own}{state}{task_members}}}{rest}{celery_members}}}'
        f"{trace}{labels_member}{runtime.json_tail()}\n"
    )


class _Shape:
    """What the records of every task of one name, route and worker share, encoded once.

    A worker runs few distinct (name, route, worker) combinations, each for every one of its tasks.
    """

    __slots__ = ("name", "published", "received", "rest", "started", "started_head", "started_rest", "succeeded",
                 "succeeded_head", "task_name")

    def __init__(self, name: str, delivery_info: Mapping[str, Any] | None, worker: Any) -> None:
        self.task_name = name
        self.name = ',"name":' + _encode_str(name)
        rest = _members(_task_part(task_id="", name=None, delivery_info=delivery_info, worker=worker)["celery"],
                        skip="task")
        self.rest = "," + rest if rest else ""
        self.published = _encode_str(f"task published: {name}")
        self.received = _encode_str(f"task received: {name}")
        self.started = _encode_str(f"task started: {name}")
        # Without its closing quote: the run time and ` s"` follow.
        self.succeeded = _encode_str(f"task succeeded: {name} after ")[:-1]
        # task-started and task-succeeded are written out in their receivers: their constant runs, joined.
        self.started_head = _STARTED[0] + self.started + _STARTED[1]
        self.started_rest = _STARTED[3] + "}" + self.rest
        self.succeeded_head = _SUCCEEDED[0] + self.succeeded


_shapes: dict[tuple[Any, ...], _Shape] = {}
_SHAPES_KEPT: Final = 1024


def _new_shape(key: tuple[Any, ...], delivery_info: Mapping[str, Any] | None, worker: Any) -> _Shape:
    """The shape of ``key`` (name, exchange, routing key, queue, worker), kept when ``key`` is plain text."""
    shape = _Shape(key[0], delivery_info, worker)
    # Only str/None keys: a hit then always means the same text (bounded, so made-up names can't grow it).
    if len(_shapes) < _SHAPES_KEPT and all(type(v) is str or v is None for v in key):
        _shapes[key] = shape
    return shape


def _routed_shape(name: str, delivery_info: Mapping[str, Any] | None, worker: Any) -> _Shape:
    """The shape of a task as the worker sees it: its name, its message's route and this worker."""
    if delivery_info:
        key = (name, delivery_info.get("exchange"), delivery_info.get("routing_key"), delivery_info.get("queue"),
               worker)
    else:
        key = (name, None, None, None, worker)
    try:
        return _shapes[key]
    except (KeyError, TypeError):
        return _new_shape(key, delivery_info, worker)


def _value(value: Any) -> str:
    """One value as :func:`_members` encodes it."""
    kind = type(value)
    if kind is str:
        return _escape(value)
    if kind is int:
        return f"{value}"
    return encode_json(value)


def _own(task_id: str, shape: _Shape, *, root_id: Any, parent_id: Any, group_id: Any, retries: Any) -> str:
    """``celery.task``'s members before ``state``, as :func:`_task_part` and :func:`_members` give them."""
    own = f'"id":{_escape(task_id)}{shape.name}'
    if root_id:
        own += ',"root_id":' + (_escape(root_id) if type(root_id) is str else _value(root_id))
    if parent_id:
        own += ',"parent_id":' + (_escape(parent_id) if type(parent_id) is str else _value(parent_id))
    if group_id:
        own += ',"group_id":' + _value(group_id)
    if type(retries) is int:
        own += f',"retries":{retries}'
    elif isinstance(retries, int):  # a bool: encoded as JSON true/false, as the record path does
        own += ',"retries":' + _value(retries)
    return own


def _extra_members(extra: Mapping[str, Any]) -> str:
    """``,"args":...,"kwargs":...`` and the other additions to ``celery.task``, as :func:`_members` gives them."""
    if len(extra) == 2 and "args" in extra:  # nearly every task: the two reprs (set together), nothing else
        return f',"args":{_escape(extra["args"])},"kwargs":{_escape(extra["kwargs"])}'
    return "," + _members(extra) if extra else ""


def _iso_members(eta: Any, expires: Any) -> dict[str, str]:
    """``eta`` / ``expires`` of a task record, when given."""
    extra: dict[str, str] = {}
    for key, value in (("eta", eta), ("expires", expires)):
        iso = _iso_any(value)
        if iso is not None:
            extra[key] = iso
    return extra


# --- producer --------------------------------------------------------------------------------------


def _before_task_publish(sender: Any = None, *, headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Stamp the publish time and the trace id into the message's headers: the worker reads them."""
    runtime = current()
    if runtime is None or headers is None or "id" not in headers:
        return  # protocol 1 messages carry no headers to stamp
    try:
        headers[HEADER_PUBLISHED_NS] = time.time_ns()
        headers[HEADER_TRACE_ID] = _context.TRACE_ID.get() or headers.get(HEADER_TRACE_ID) or new_trace_id()
    except Exception as exc:
        runtime.fault(exc, "handling before_task_publish")


def _after_task_publish(sender: Any = None, *, body: Any = None, exchange: Any = None, routing_key: Any = None,
                        headers: dict[str, Any] | None = None, **_: Any) -> None:
    # Written once the broker took the message, so a publish that failed leaves no record of a message
    # never sent; timed when the publish began (the stamp the worker's queue wait counts from).
    # The fault barrier is written into this receiver and the three other per-task ones rather than
    # added by `_guarded`: one call frame fewer on every task.
    runtime = current()
    if runtime is None or headers is None or "id" not in headers:
        return
    try:
        now = headers.get(HEADER_PUBLISHED_NS)
        if type(now) is not int:
            return  # not stamped by us (installed between the two signals)
        trace_id = headers.get(HEADER_TRACE_ID) or new_trace_id()
        name = headers.get("task") or sender
        task_id = headers["id"]
        extra: dict[str, Any] = {}
        if isinstance(body, (tuple, list)) and len(body) >= 2:
            extra["args"] = runtime.redactor.repr(body[0])
            extra["kwargs"] = runtime.redactor.repr(body[1])
        eta, expires = headers.get("eta"), headers.get("expires")
        if eta is not None or expires is not None:
            extra.update(_iso_members(eta, expires))
        if runtime.fast_path and type(name) is str and name and type(task_id) is str and task_id:
            key = (name, exchange, routing_key, None, None)
            try:
                shape = _shapes[key]
            except (KeyError, TypeError):
                shape = _new_shape(key, {"exchange": exchange, "routing_key": routing_key}, None)
            own = _own(task_id, shape, root_id=headers.get("root_id"), parent_id=headers.get("parent_id"),
                       group_id=headers.get("group"), retries=headers.get("retries"))
            runtime.output.write_line(_line(
                runtime, now, iso_timestamp(now), shape.published, _PUBLISHED, own=own, rest=shape.rest,
                trace=',"trace":{"id":' + _escape(str(trace_id)) + "}", task_members=_extra_members(extra),
            ))
            return
        part = _task_part(
            task_id=task_id, name=name, root_id=headers.get("root_id"), parent_id=headers.get("parent_id"),
            group_id=headers.get("group"), retries=headers.get("retries"),
            delivery_info={"exchange": exchange, "routing_key": routing_key}, trace_id=trace_id,
        )
        _emit_task_record(runtime, now, "task-published", message=f"task published: {name}", part=part,
                          task_extra=extra)
    except Exception as exc:
        runtime.fault(exc, "handling after_task_publish")


def _emit_task_record(runtime: Runtime, now: int, action: str, *, message: str, part: Mapping[str, Any],
                      task_extra: Mapping[str, Any]) -> None:
    """A task record whose only additions are fields of ``celery.task``, through the record path."""
    record = _task_record(runtime, now, action, message, part)
    record["celery"]["task"].update(task_extra)
    runtime.emit(record)


# --- worker main process ---------------------------------------------------------------------------

#: Requests seen by this (main) process, for the records it makes when a child dies under a task. Weak
#: references, so a request lives no longer than Celery keeps it; the dead ones are swept as the dict
#: grows, which costs a task much less than a WeakValueDictionary's per-entry callback machinery.
_received: dict[str, weakref.ref[Any]] = {}
_received_sweep_at = [1024]


def _received_request(task_id: Any) -> Any:
    """The request this process received as ``task_id``, while Celery still holds it; else None."""
    ref = _received.get(task_id) if isinstance(task_id, str) else None
    return ref() if ref is not None else None


def _sweep_received() -> None:
    """Drop the entries whose request is gone; sweep again once the live ones have doubled."""
    for task_id, ref in list(_received.items()):
        if ref() is None:
            del _received[task_id]
    _received_sweep_at[0] = max(1024, 2 * len(_received))


def _task_received(sender: Any = None, *, request: Any = None, **_: Any) -> None:
    runtime = current()
    if runtime is None or request is None:
        return
    try:
        now = time.time_ns()
        task_id = request.id
        _received[task_id] = weakref.ref(request)
        if len(_received) > _received_sweep_at[0]:
            _sweep_received()
        name = request.name
        redactor = runtime.redactor
        extra: dict[str, Any] = {"args": redactor.repr(request.args), "kwargs": redactor.repr(request.kwargs)}
        eta, expires = request.eta, request.expires
        if eta is not None or expires is not None:
            extra.update(_iso_members(eta, expires))
        if getattr(getattr(request, "task", None), "acks_late", False) is True:
            # Lost-task detection tells "the work is gone" from "the broker will deliver it again" by it.
            extra["acks_late"] = True
        if runtime.fast_path and type(name) is str and name and type(task_id) is str and task_id:
            headers = request.request_dict
            delivery_info = request.delivery_info
            worker = request.hostname
            shape = _routed_shape(name, delivery_info, worker)
            root_id = request.root_id
            trace_id = headers.get(HEADER_TRACE_ID) or _fallback_trace_id(root_id, task_id)
            own = _own(task_id, shape, root_id=root_id, parent_id=request.parent_id, group_id=headers.get("group"),
                       retries=headers.get("retries"))
            runtime.output.write_line(_line(
                runtime, now, iso_timestamp(now), shape.received, _RECEIVED, own=own, rest=shape.rest,
                trace=',"trace":{"id":' + _escape(str(trace_id)) + "}" if trace_id else "",
                task_members=_extra_members(extra),
            ))
            return
        _emit_task_record(runtime, now, "task-received", message=f"task received: {name}",
                          part=_part_from_request(request), task_extra=extra)
    except Exception as exc:
        runtime.fault(exc, "handling task_received")


@_guarded
def _task_revoked(runtime: Runtime, /, sender: Any = None, *, request: Any = None, terminated: Any = False,
                  signum: Any = None, expired: Any = False, **_: Any) -> None:
    if request is None:
        return
    now = time.time_ns()
    name = getattr(sender, "name", None)
    part = _part_from_context(request, name)
    how = "expired" if expired else ("terminated" if terminated else "revoked")
    record = _task_record(runtime, now, "task-revoked", f"task revoked: {name} ({how})", part)
    revoke: dict[str, Any] = {"terminated": bool(terminated), "expired": bool(expired)}
    signame = _signal_name(signum) if terminated else None
    if signame is not None:
        revoke["signal"] = signame
    record["celery"]["revoke"] = revoke
    _add_run_times(record, _received_request(request.id), now)
    runtime.emit(record)


@_guarded
def _task_unknown(runtime: Runtime, /, sender: Any = None, *, name: Any = None, id: Any = None,
                  message: Any = None, exc: Any = None, **_: Any) -> None:
    now = time.time_ns()
    delivery = getattr(message, "delivery_info", None)
    part = _task_part(task_id=str(id), name=str(name), delivery_info=delivery,
                      worker=getattr(sender, "hostname", None))
    record = _task_record(runtime, now, "task-unknown", f"unknown task: {name}", part)
    runtime.emit(record)


@_guarded
def _task_rejected(runtime: Runtime, /, sender: Any = None, *, message: Any = None, exc: Any = None, **_: Any) -> None:
    now = time.time_ns()
    headers = getattr(message, "headers", None) or {}
    part = _task_part(task_id=str(headers.get("id", "")), name=headers.get("task"),
                      delivery_info=getattr(message, "delivery_info", None), worker=getattr(sender, "hostname", None))
    reason = truncate(repr(exc), 200) if exc is not None else "not a task message"
    record = _task_record(runtime, now, "task-rejected", f"message rejected: {reason}", part)
    runtime.emit(record)


def _add_run_times(record: dict[str, Any], request: Any, now: int) -> None:
    """``event.start/end/duration`` from the main process's view (when the child cannot tell any more)."""
    started = getattr(request, "time_start", None) if request is not None else None
    record["event"]["end"] = record["@timestamp"]
    if isinstance(started, (int, float)) and started > 0:
        record["event"]["start"] = iso_from_seconds(started)
        record["event"]["duration"] = max(now - int(started * 1e9), 0)


# --- worker child (or the solo/threads pool's process) -----------------------------------------------


class _LazyPart(Mapping[str, Any]):
    """The running task's part, built from its request only when something reads it.

    On the fast path task-started and task-succeeded never need it: only a log line inside the task, a
    failure or a retry does, and most tasks have none of those.
    """

    __slots__ = ("_ctx", "_name", "_part")

    def __init__(self, ctx: Any, name: str) -> None:
        self._ctx = ctx
        self._name = name
        self._part: dict[str, Any] | None = None

    def _built(self) -> dict[str, Any]:
        part = self._part
        if part is None:
            part = self._part = _part_from_context(self._ctx, self._name)
        return part

    def __getitem__(self, key: str) -> Any:
        return self._built()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._built()

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


@dataclass(slots=True)
class _Run:
    """A task running in this process: when it started and the context to restore after it."""

    start_mono: int
    start_ns: int
    part: Mapping[str, Any]
    tokens: tuple[contextvars.Token[Any], ...]
    structlog_vars: dict[str, Any]
    #: On the fast path, what task-started was made of, for task-succeeded (see :func:`_line`).
    shape: _Shape | None = None
    own: str = ""
    trace: str = ""
    #: ``start_ns`` as ISO text, formatted once for task-started and reused by the terminal record.
    start_stamp: str = ""


#: Running tasks by id. Only single dict operations touch it, each atomic in CPython: no lock needed.
_running: dict[str, _Run] = {}


def forget_runs() -> None:
    """A fresh process (forked child) has no running tasks."""
    _running.clear()


def _task_prerun(sender: Any = None, *, task_id: Any = None, task: Any = None, **_: Any) -> None:
    runtime = current()
    if runtime is None or task is None or task_id is None:
        return
    try:
        start_mono = time.monotonic_ns()
        now = time.time_ns()
        ctx = task.request
        name = task.name
        own_id = ctx.id
        root_id = getattr(ctx, "root_id", None)
        trace_id = getattr(ctx, HEADER_TRACE_ID, None)
        if not trace_id:  # what _fallback_trace_id gives, without its call on every task
            source = root_id or own_id
            trace_id = str(source).replace("-", "") if source else None
        trace = str(trace_id) if trace_id else None
        fast = runtime.fast_path and type(name) is str and name and type(own_id) is str and own_id
        part = _LazyPart(ctx, name) if fast else _part_from_context(ctx, name)
        labels = _context.LABELS.get()
        tokens = (
            _context.TASK.set(part),
            _context.LABELS.set(labels),
            _context.TRACE_ID.set(trace),
        )
        run = _Run(start_mono, now, part, tokens,
                   structlog.contextvars.get_contextvars() if _STRUCTLOG_VARS is None or _STRUCTLOG_VARS else {})
        _running[task_id] = run
        published = getattr(ctx, HEADER_PUBLISHED_NS, None)
        wait = max(now - published, 0) if isinstance(published, int) and published > 0 else None
        if fast:
            shape = _routed_shape(name, getattr(ctx, "delivery_info", None), getattr(ctx, "hostname", None))
            run.shape = shape
            run.own = own = _own(own_id, shape, root_id=root_id, parent_id=getattr(ctx, "parent_id", None),
                                 group_id=getattr(ctx, "group", None), retries=getattr(ctx, "retries", None))
            run.trace = trace_member = ',"trace":{"id":' + _escape(trace) + "}" if trace else ""
            run.start_stamp = stamp = iso_timestamp(now)
            labels_member = ',"labels":' + encode_json(runtime.redactor.mapping(labels)) if labels else ""
            # What _line gives for task-started, written out here: one call fewer on every task.
            # Written last, once the context is bound: a failing write leaves nothing to undo.
            runtime.output.write_line(
                f'{{"@timestamp":"{stamp}{shape.started_head}{_next_event_id(now)}{_STARTED_START}{stamp}'
                f'"}},"celery":{{"task":{{{own}{shape.started_rest}{"" if wait is None else f",{_QUEUE_WAIT}{wait}"}'
                f"}}{trace_member}{labels_member}{runtime.json_tail()}\n"
            )
            return
        record = _task_record(runtime, now, "task-started", f"task started: {name}", part)
        record["event"]["start"] = record["@timestamp"]
        if wait is not None:
            record["celery"]["queue_wait"] = wait
        runtime.emit(record)
    except Exception as exc:
        runtime.fault(exc, "handling task_prerun")


def _members(obj: Mapping[str, Any], skip: str = "") -> str:
    """``"k":v,...`` for one of our flat objects (keys are ours; string values escaped like any value)."""
    return ",".join(f'"{key}":{_value(value)}' for key, value in obj.items() if key != skip)


def _terminal(runtime: Runtime, run: _Run, action: str, message: str) -> dict[str, Any]:
    end_mono = time.monotonic_ns()
    now = time.time_ns()
    duration = end_mono - run.start_mono
    record = _task_record(runtime, now, action, message.format(secs=_seconds(duration)), run.part)
    event = record["event"]
    event["duration"] = duration
    event["start"] = iso_timestamp(run.start_ns)
    event["end"] = record["@timestamp"]
    return record


def _run_of(task_id: Any) -> _Run | None:
    return _running.get(task_id) if isinstance(task_id, str) else None


@_guarded
def _task_retry(runtime: Runtime, /, sender: Any = None, *, request: Any = None, reason: Any = None,
                einfo: Any = None, **_: Any) -> None:
    task_id = getattr(request, "id", None)
    run = _run_of(task_id)
    name = getattr(sender, "name", None)
    cause = getattr(reason, "exc", None)
    text = repr(cause) if cause is not None else str(getattr(reason, "message", None) or reason)
    text = truncate(text, runtime.settings.max_value_chars)
    if run is not None:
        record = _terminal(runtime, run, "task-retried", f"task retried: {name} ({text}) after {{secs}} s")
    else:
        record = _task_record(runtime, time.time_ns(), "task-retried", f"task retried: {name} ({text})",
                              _part_from_context(request, name))
    retry: dict[str, Any] = {"reason": text}
    eta = _retry_eta(getattr(reason, "when", None))
    if eta is not None:
        retry["eta"] = eta
    record["celery"]["retry"] = retry
    if isinstance(cause, BaseException):
        record["error"] = error_fields(cause)
    runtime.emit(record)


def _retry_eta(when: Any) -> str | None:
    if isinstance(when, (int, float)) and not isinstance(when, bool):
        return iso_from_seconds(time.time() + float(when))
    return _iso_any(when)


_parent_terminals: collections.OrderedDict[str, None] = collections.OrderedDict()
_parent_terminals_lock = threading.Lock()
_PARENT_TERMINALS_KEPT: Final = 4096


def _first_parent_terminal(task_id: Any) -> bool:
    """True the first time the main process reports a terminal failure for ``task_id``."""
    key = str(task_id)
    with _parent_terminals_lock:
        if key in _parent_terminals:
            return False
        _parent_terminals[key] = None
        if len(_parent_terminals) > _PARENT_TERMINALS_KEPT:
            _parent_terminals.popitem(last=False)
    return True


@_guarded
def _task_failure(runtime: Runtime, /, sender: Any = None, *, task_id: Any = None, exception: Any = None,
                  traceback: TracebackType | str | None = None, einfo: Any = None, **_: Any) -> None:
    name = getattr(sender, "name", None)
    if not isinstance(exception, BaseException):
        exception = RuntimeError(repr(exception))
    etype = qualified_name(type(exception)).rsplit(".", 1)[-1]
    run = _run_of(task_id)
    if run is not None:
        record = _terminal(runtime, run, "task-failed", f"task failed: {name} ({etype}) after {{secs}} s")
    else:
        # Not running here: this is the main process telling that the child running it died
        # (hard time limit, SIGKILL, OOM) or a message it refused; the child wrote nothing terminal.
        # Celery reports a hard time limit twice (on the timeout, then on the child's death): one record.
        if not _first_parent_terminal(task_id):
            return
        now = time.time_ns()
        request = _received_request(task_id)
        part = _part_from_request(request) if request is not None else _task_part(task_id=str(task_id), name=name)
        record = _task_record(runtime, now, "task-failed", f"task failed: {name} ({etype})", part)
        _add_run_times(record, request, now)
        if "duration" in record["event"]:
            record["message"] += f" after {_seconds(record['event']['duration'])} s"
    # From a child Celery passes the traceback object; from the main process, ExceptionInfo's text.
    tb = traceback if isinstance(traceback, (TracebackType, str)) else exception.__traceback__
    record["error"] = error_fields(exception, tb)
    if run is not None:
        record["celery"]["task"]["args"] = runtime.redactor.repr(getattr(sender.request, "args", None))
        record["celery"]["task"]["kwargs"] = runtime.redactor.repr(getattr(sender.request, "kwargs", None))
    runtime.emit(record)


def _succeeded(runtime: Runtime, run: _Run, task: Any, result: Any) -> None:
    """task-succeeded through the record path (the fast path is in :func:`_task_postrun`)."""
    record = _terminal(runtime, run, "task-succeeded", f"task succeeded: {task.name} after {{secs}} s")
    if runtime.settings.log_results:
        record["celery"]["task"]["result"] = runtime.redactor.repr(result)
    runtime.emit(record)


def _task_postrun(sender: Any = None, *, task_id: Any = None, task: Any = None, retval: Any = None, state: Any = None,
                  **_: Any) -> None:
    """task-succeeded, from ``task_postrun`` (one signal fewer per task than ``task_success``)."""
    runtime = current()
    if runtime is None:
        return
    try:
        run = _running.pop(task_id, None) if isinstance(task_id, str) else None
        if run is None:
            return
        try:
            if state != "SUCCESS":
                return
            if task is None:
                task = sender
            shape = run.shape
            if shape is not None and runtime.fast_path and task.name == shape.task_name:
                end_mono = time.monotonic_ns()
                now = time.time_ns()
                duration = end_mono - run.start_mono
                stamp = iso_timestamp(now)
                result_member = (
                    ',"result":' + _escape(runtime.redactor.repr(retval)) if runtime.settings.log_results else ""
                )
                labels = _context.LABELS.get()
                labels_member = ',"labels":' + encode_json(runtime.redactor.mapping(labels)) if labels else ""
                # What _line gives for task-succeeded, written out here (`%.3f` is `:.3f`, without the
                # format-spec parsing).
                runtime.output.write_line(
                    f'{{"@timestamp":"{stamp}{shape.succeeded_head}{"%.3f" % (duration / 1e9)}{_SUCCEEDED_ID}'
                    f'{_next_event_id(now)}{_SUCCEEDED_DURATION}{duration},"start":"{run.start_stamp}","end":"{stamp}'
                    f'"}},"celery":{{"task":{{{run.own}{_SUCCEEDED_STATE}{result_member}}}{shape.rest}}}{run.trace}'
                    f"{labels_member}{runtime.json_tail()}\n"
                )
            else:
                _succeeded(runtime, run, task, retval)
        finally:
            _restore(run)
    except Exception as exc:
        runtime.fault(exc, "handling task_postrun")


def _restore(run: _Run) -> None:
    """Put back the context from before the task, so nothing it bound reaches the next task."""
    task_token, labels_token, trace_token = run.tokens
    try:
        # All three were set in one context: they reset together or (another context) not at all.
        _context.TRACE_ID.reset(trace_token)
        _context.LABELS.reset(labels_token)
        _context.TASK.reset(task_token)
    except ValueError:  # the task ran in another context (async pools): clear instead
        _context.TRACE_ID.set(None)
        _context.LABELS.set({})
        _context.TASK.set(None)
    if run.structlog_vars or _STRUCTLOG_VARS is None or _STRUCTLOG_VARS:
        structlog.contextvars.clear_contextvars()
        if run.structlog_vars:
            structlog.contextvars.bind_contextvars(**run.structlog_vars)


#: structlog's registry of its context variables, empty while nobody in this process has bound one (then
#: there is nothing to snapshot or restore, and the walk over the whole context can be skipped). structlog
#: only ever adds to this dict, never replaces it, so it is looked up once; None if structlog renames it.
_STRUCTLOG_VARS: Final[dict[str, Any] | None] = getattr(structlog.contextvars, "_CONTEXT_VARS", None)


# --- worker records ---------------------------------------------------------------------------------


class _Heartbeat:
    """``worker-heartbeat`` every ``interval`` seconds from the worker's main process."""

    def __init__(self, runtime: Runtime, consumer: Any, interval: float) -> None:
        self._runtime = runtime
        self._consumer = consumer
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="celery-logs-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                _worker_record(self._runtime, self._consumer, "worker-heartbeat", interval=self._interval)
            except Exception as exc:
                self._runtime.fault(exc, "writing a worker heartbeat")
            try:
                _queues.sample(self._runtime, self._consumer, _nodename(self._consumer))
            except Exception as exc:
                self._runtime.fault(exc, "sampling queue depths")


#: The heartbeat thread and the consumer of this process, when it is a worker's main process.
_heartbeat: list[_Heartbeat] = []
_consumers: list[Any] = []


def _nodename(consumer: Any) -> str | None:
    return getattr(consumer, "hostname", None)


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _worker_stats(consumer: Any) -> dict[str, Any]:
    from celery.worker import state

    stats: dict[str, Any] = {"active": len(state.active_requests), "processed": int(state.all_total_count[0])}
    pool = getattr(consumer, "pool", None)
    size = getattr(pool, "num_processes", None) or getattr(getattr(consumer, "controller", None), "concurrency", None)
    if isinstance(size, int):
        stats["pool_size"] = size
    rss = _rss_bytes()
    if rss is not None:
        stats["rss_bytes"] = rss
    with contextlib.suppress(OSError):
        stats["loadavg"] = round(os.getloadavg()[0], 3)
    return stats


def _worker_record(runtime: Runtime, consumer: Any, action: str, *, interval: float | None = None) -> None:
    """A worker record; ``interval``: seconds until the next heartbeat, which silence is judged against."""
    now = time.time_ns()
    node = _nodename(consumer)
    words = {"worker-online": "online", "worker-heartbeat": "heartbeat", "worker-offline": "offline"}
    record = runtime.new_record(now, dataset="celery.worker", level="info", message=f"worker {words[action]}: {node}",
                                logger=_LOGGER, action=action)
    stats = _worker_stats(consumer)
    if interval is not None:
        stats["heartbeat_interval"] = interval
    celery: dict[str, Any] = {"worker_stats": stats}
    if node:
        celery["worker"] = node
    record["celery"] = celery
    runtime.emit(record)


@_guarded
def _worker_ready(runtime: Runtime, /, sender: Any = None, **_: Any) -> None:
    _worker_record(runtime, sender, "worker-online", interval=runtime.settings.heartbeat_interval)
    stop_heartbeat()
    beat = _Heartbeat(runtime, sender, runtime.settings.heartbeat_interval)
    _heartbeat.append(beat)
    beat.start()
    _consumers.append(sender)


@_guarded
def _worker_shutdown(runtime: Runtime, /, sender: Any = None, **_: Any) -> None:
    stop_heartbeat()
    consumer = _consumers.pop() if _consumers else sender
    _worker_record(runtime, consumer, "worker-offline")


def stop_heartbeat() -> None:
    """Stop the heartbeat thread of this process, if any."""
    while _heartbeat:
        _heartbeat.pop().stop()


def forget_worker() -> None:
    """A forked child is not the worker's main process: no heartbeat, no consumer."""
    _heartbeat.clear()
    _consumers.clear()


#: (signal name, receiver) connected by ``install()`` and disconnected by ``reset()``.
RECEIVERS: Final[tuple[tuple[str, Callable[..., None]], ...]] = (
    ("before_task_publish", _before_task_publish),
    ("after_task_publish", _after_task_publish),
    ("task_received", _task_received),
    ("task_prerun", _task_prerun),
    ("task_retry", _task_retry),
    ("task_failure", _task_failure),
    ("task_postrun", _task_postrun),
    ("task_revoked", _task_revoked),
    ("task_unknown", _task_unknown),
    ("task_rejected", _task_rejected),
    ("worker_ready", _worker_ready),
    ("worker_shutdown", _worker_shutdown),
)
