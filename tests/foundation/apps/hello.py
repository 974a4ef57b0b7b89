"""A minimal Celery app to prove the worker fixture runs real prefork workers."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("hello", broker=os.environ["CELERY_BROKER_URL"], backend=os.environ["CELERY_BROKER_URL"])


@app.task(name="hello.pid")
def pid() -> int:
    """Return the pid of the pool process that ran it."""
    return os.getpid()
