"""A beat whose console is compared with and without celery-logs (``CONSOLE_APP_CELERY_LOGS=1``)."""

from __future__ import annotations

import os

from celery import Celery

import celery_logs

_url = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
app = Celery("beat_console_app", broker=_url)
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=os.environ.get("CONSOLE_APP_HIJACK", "1") == "1",
    beat_schedule={"tick": {"task": "beat_console.tick", "schedule": 0.5}},
)
if os.environ.get("CONSOLE_APP_CELERY_LOGS") == "1":
    celery_logs.install(app, service="beat-console")
