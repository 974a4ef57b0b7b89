"""A small app whose worker console is compared with and without celery-logs (``CONSOLE_APP_CELERY_LOGS=1``)."""

from __future__ import annotations

import logging
import os

from celery import Celery
from celery.utils.log import get_task_logger

import celery_logs

_url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery("console_app", broker=_url, backend=_url)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=os.environ.get("CONSOLE_APP_HIJACK", "1") == "1",
)
if os.environ.get("CONSOLE_APP_CELERY_LOGS") == "1":
    celery_logs.install(app, service="console")

task_logger = get_task_logger(__name__)
own_logger = logging.getLogger("console_app.own")


@app.task(name="console.work")
def work(n: int) -> int:
    task_logger.info("working on %s", n)
    own_logger.warning("own warning %s", n)
    print("printed", n)
    return n


@app.task(name="console.fail")
def fail() -> None:
    raise ValueError("boom")
