"""Seed-style statsd signal handlers: the baseline celery-logs is measured against, in-process and in a worker.

Four UDP datagrams per task on the signals celery-logs uses for a run (task_prerun, task_postrun): a
``started`` counter and an ``active`` gauge when it starts, a ``runtime`` timer and a per-state counter when it
ends, as teams feeding Graphite/Datadog write them.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any


def connect(port: int) -> Callable[[], None]:
    """Connect the handlers (sending to 127.0.0.1:``port``); returns the function that disconnects them."""
    from celery import signals

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    addr = ("127.0.0.1", port)
    starts: dict[str, float] = {}

    def started(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task_id is not None:
            starts[task_id] = time.monotonic()
        sock.sendto(f"celery.{task.name}.started:1|c".encode(), addr)
        sock.sendto(f"celery.active:{len(starts)}|g".encode(), addr)

    def ended(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
        start = starts.pop(task_id or "", None)
        if start is not None:
            sock.sendto(f"celery.{task.name}.runtime:{(time.monotonic() - start) * 1000:.3f}|ms".encode(), addr)
        sock.sendto(f"celery.{task.name}.{(state or 'unknown').lower()}:1|c".encode(), addr)

    signals.task_prerun.connect(started, weak=False)
    signals.task_postrun.connect(ended, weak=False)

    def disconnect() -> None:
        signals.task_prerun.disconnect(started)
        signals.task_postrun.disconnect(ended)
        sock.close()

    return disconnect
