"""The app of the lost-task incident tests: long tasks that write their own ground truth.

Each run of ``lost.work`` appends ``start <task id> <worker>`` to the file named by ``LOST_APP_TRUTH``
when it starts and ``end <task id> <worker>`` when it finishes. It runs until a file
``release-<worker short name>`` appears beside that file (or ``LOST_APP_MAX_SECONDS`` pass), so a test
decides when each worker's tasks end. Everything else is Celery's defaults, but what the environment asks
for: ``LOST_APP_ACKS_LATE=1`` and ``LOST_APP_VISIBILITY_TIMEOUT`` (seconds, Redis; kombu then looks for
expired messages every second).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery

import celery_logs

app = Celery("lost_app", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(task_default_queue="lost", broker_connection_retry_on_startup=True)
if os.environ.get("LOST_APP_ACKS_LATE") == "1":
    app.conf.task_acks_late = True
if os.environ.get("LOST_APP_VISIBILITY_TIMEOUT"):
    # kombu looks for messages past the timeout every interval x throttle seconds (100 by default).
    app.conf.broker_transport_options = {
        "visibility_timeout": float(os.environ["LOST_APP_VISIBILITY_TIMEOUT"]),
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    }
celery_logs.install(app, service="lostapp")

TRUTH = Path(os.environ.get("LOST_APP_TRUTH", "/nonexistent/truth.txt"))
MAX_SECONDS = float(os.environ.get("LOST_APP_MAX_SECONDS", "300"))


def _note(word: str, task_id: str, worker: str) -> None:
    # One write of one short line with O_APPEND: lines from concurrent processes never interleave.
    fd = os.open(TRUTH, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{word} {task_id} {worker}\n".encode())
    finally:
        os.close(fd)


@app.task(name="lost.work", bind=True)
def work(self: object) -> str:
    request = self.request  # type: ignore[attr-defined]
    worker = str(request.hostname)
    _note("start", str(request.id), worker)
    release = TRUTH.parent / f"release-{worker.split('@', 1)[0]}"
    deadline = time.monotonic() + MAX_SECONDS
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    _note("end", str(request.id), worker)
    return "done"
