"""The app of the periodic-task tests: run by a real ``celery beat`` and a real prefork worker.

Every entry runs every ``PERIODIC_INTERVAL`` seconds: one succeeds, one fails, and one goes to a per-node
queue (``node1-crontab``) that only a worker the tests may stop consumes.
"""

from __future__ import annotations

import os
from datetime import timedelta

from celery import Celery

import celery_logs

INTERVAL = float(os.environ.get("PERIODIC_INTERVAL", "2"))

app = Celery("beat_app", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue="periodic",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    beat_max_loop_interval=1,
    beat_schedule={
        "ok-every": {"task": "periodic.ok", "schedule": timedelta(seconds=INTERVAL)},
        "fail-every": {"task": "periodic.fail", "schedule": timedelta(seconds=INTERVAL)},
        "node1-cleanup": {
            "task": "periodic.node",
            "schedule": timedelta(seconds=INTERVAL),
            "options": {"queue": "node1-crontab"},
        },
    },
)
celery_logs.install(app, service="periodic", version=os.environ.get("PERIODIC_VERSION", "1.0"))


class CleanupError(Exception):
    """Raised by the failing periodic task."""


@app.task(name="periodic.ok")
def ok() -> str:
    return "ok"


@app.task(name="periodic.fail")
def fail() -> None:
    raise CleanupError("nothing to clean")


@app.task(name="periodic.node")
def node() -> str:
    return "cleaned"
