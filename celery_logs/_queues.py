"""Queue depth, sampled by the worker's main process at each heartbeat: one ``worker-queue-depth`` record per queue.

Why a record per queue rather than fields of the heartbeat record: a field per queue name
(``celery.queue_depth.<name>``) grows the mapping with every queue anyone ever creates, and a ``nested``
list of (queue, depth) pairs cannot be aggregated by Kibana's Lens. A record per queue reuses
``celery.queue``, so the depth aggregates per queue (max across workers per bucket) with one ``long``
field, and every filter on ``celery.queue`` (report, dashboard control) applies to it unchanged.

The depth is the broker's own count through kombu: a passive ``queue_declare``, whose ``message_count``
is what AMQP reports, and on Redis the ``LLEN`` of the queue's list and of its priority sub-lists
(kombu names them ``<queue>\\x06\\x16<priority>``; its transport sums them). It runs on the heartbeat
thread over a connection of its own, never the consumer's, so no task waits for it; every broker call
is bounded by a socket timeout and the whole sample by a time budget. A failed sample is a record with
``event.outcome: failure`` and the error, and is counted; nothing is raised.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Final

from ._exceptions import qualified_name
from ._runtime import Runtime

_LOGGER: Final = "celery_logs.queues"
#: Upper bound of one broker call's timeout, in seconds (shorter with a short heartbeat interval).
MAX_CALL_TIMEOUT: Final = 2.0


class _Sampler:
    """A broker connection of its own, reused across heartbeats, reopened after a failure."""

    def __init__(self, app: Any, timeout: float) -> None:
        self.app = app
        self.timeout = timeout
        self.pid = os.getpid()
        self.connection: Any = None
        self.failures = 0

    def _channel(self) -> Any:
        if self.connection is None:
            options = dict(self.app.conf.broker_transport_options or {})
            options.update(socket_timeout=self.timeout, socket_connect_timeout=self.timeout,
                           read_timeout=self.timeout, write_timeout=self.timeout)
            conn = self.app.connection_for_read(connect_timeout=self.timeout, transport_options=options)
            try:
                conn.connect()
            except Exception:
                conn.release()
                raise
            self.connection = conn
        return self.connection.default_channel

    def depth(self, queue: str) -> int:
        channel = self._channel()
        try:
            return int(channel.queue_declare(queue=queue, passive=True).message_count)
        except Exception as exc:
            # Virtual transports (Redis, SQS, ...) call a queue with no messages "not found": its list is gone.
            if getattr(self.connection.transport, "driver_type", "") == "redis" and "NOT_FOUND" in str(exc):
                return 0
            raise

    def close(self) -> None:
        conn, self.connection = self.connection, None
        if conn is not None and self.pid == os.getpid():
            try:
                conn.release()
            except Exception:  # the connection is being thrown away either way
                return


_samplers: list[_Sampler] = []
_lock = threading.Lock()


def failure_count() -> int:
    """Queue samples that failed in this process since :func:`install` (for tests and support)."""
    return sum(s.failures for s in _samplers)


def consumed_queues(consumer: Any) -> list[str]:
    """Names of the queues the worker consumes (``-Q``, or the default queue)."""
    try:
        names = list(consumer.app.amqp.queues.consume_from)
    except Exception:
        return []
    return sorted(str(n) for n in names)


def _sampler(runtime: Runtime, consumer: Any) -> _Sampler:
    with _lock:
        if _samplers and _samplers[-1].pid == os.getpid() and _samplers[-1].app is consumer.app:
            return _samplers[-1]
        forget()
        timeout = min(MAX_CALL_TIMEOUT, runtime.settings.heartbeat_interval / 4)
        sampler = _Sampler(consumer.app, timeout)
        _samplers.append(sampler)
        return sampler


def sample(runtime: Runtime, consumer: Any, node: str | None) -> None:
    """One ``worker-queue-depth`` record per queue the worker consumes (and per watched queue)."""
    if not runtime.settings.queue_depth:
        return
    sampler = _sampler(runtime, consumer)
    consumed = consumed_queues(consumer)
    queues = [(q, True) for q in consumed] + [(q, False) for q in runtime.settings.watch_queues if q not in consumed]
    # Half the interval at most, so the next heartbeat is never late because of a slow broker.
    deadline = time.monotonic() + runtime.settings.heartbeat_interval / 2
    for name, is_consumed in queues:
        now = time.time_ns()
        error: BaseException | None = None
        depth: int | None = None
        if time.monotonic() > deadline:
            error = TimeoutError("queue sampling took longer than half the heartbeat interval")
        else:
            try:
                depth = sampler.depth(name)
            except Exception as exc:
                error = exc
                sampler.close()
        record = runtime.new_record(now, dataset="celery.worker", level="info" if error is None else "warning",
                                    message=f"queue depth: {name} {depth}" if error is None
                                    else f"queue depth unknown: {name} ({type(error).__name__})",
                                    logger=_LOGGER, action="worker-queue-depth")
        celery: dict[str, Any] = {"queue": name, "queue_consumed": is_consumed}
        if node:
            celery["worker"] = node
        if error is None:
            celery["queue_depth"] = depth
        else:
            sampler.failures += 1
            record["event"]["outcome"] = "failure"
            record["error"] = {"type": qualified_name(type(error)), "message": str(error)[:500]}
        record["celery"] = celery
        runtime.emit(record)


def forget() -> None:
    """Drop the samplers (``reset()``, a new worker, a forked child: never close a parent's socket there)."""
    while _samplers:
        _samplers.pop().close()
