"""The app run by `worker_overhead.py`: one no-op task, instrumented according to BENCH_MODE.

Modes: ``plain`` (Celery alone), ``celery_logs`` (install() writing files), ``statsd`` (signal handlers
sending a counter and a timer per task over UDP, as teams do with Graphite), ``events`` (plain, the
worker runs with ``-E``), ``heartbeat_fast`` / ``queue_depth_fast`` (celery-logs with a heartbeat every
0.2 s, without / with queue-depth sampling at each).
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from celery import Celery, signals

app = Celery("bench", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(broker_connection_retry_on_startup=True, worker_prefetch_multiplier=64)
MODE = os.environ.get("BENCH_MODE", "plain")

if MODE == "celery_logs":
    import celery_logs

    celery_logs.install(app, service="bench", log_dir=os.environ["BENCH_LOG_DIR"], heartbeat_interval=30)
elif MODE in ("heartbeat_fast", "queue_depth_fast"):
    # Heartbeats every 0.2 s (150 times the default rate), with and without sampling the depth of the
    # consumed queue and three watched ones at each: what the sampling costs the task path, exaggerated.
    import celery_logs

    celery_logs.install(app, service="bench", log_dir=os.environ["BENCH_LOG_DIR"], heartbeat_interval=0.2,
                        queue_depth=MODE == "queue_depth_fast", watch_queues=["watched-1", "watched-2", "watched-3"])
elif MODE == "statsd":
    _sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    _addr = ("127.0.0.1", int(os.environ.get("BENCH_STATSD_PORT", "8125")))
    _starts: dict[str, float] = {}

    @signals.task_prerun.connect(weak=False)
    def _statsd_start(task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task_id is not None:
            _starts[task_id] = time.monotonic()
        _sock.sendto(f"celery.{task.name}.started:1|c".encode(), _addr)

    @signals.task_postrun.connect(weak=False)
    def _statsd_end(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
        start = _starts.pop(task_id or "", None)
        if start is not None:
            ms = (time.monotonic() - start) * 1000
            _sock.sendto(f"celery.{task.name}.runtime:{ms:.3f}|ms".encode(), _addr)
        _sock.sendto(f"celery.{task.name}.{(state or 'unknown').lower()}:1|c".encode(), _addr)


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.done")
def done(key: str) -> None:
    import redis

    client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    client.set(key, str(time.time()))
    client.close()
