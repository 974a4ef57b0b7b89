"""The app run by `worker_overhead.py`: one no-op task, instrumented according to BENCH_MODE.

Modes: ``plain`` (Celery alone), ``celery_logs`` (install() writing files), ``statsd`` (signal handlers
sending four counters/timers/gauges per task over UDP, ``benchmarks/_statsd.py``, as teams do with
Graphite), ``events`` (plain, the worker runs with ``-E``), ``heartbeat_fast`` / ``queue_depth_fast``
(celery-logs with a heartbeat every 0.2 s, without / with queue-depth sampling at each).
"""

from __future__ import annotations

import os
import time

from celery import Celery

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
    from benchmarks import _statsd

    _statsd.connect(int(os.environ.get("BENCH_STATSD_PORT", "8125")))


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.done")
def done(key: str) -> None:
    import redis

    client = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    client.set(key, str(time.time()))
    client.close()
