"""A program that is no worker and configures logging late, run with and without celery-logs
(``CONSOLE_APP_CELERY_LOGS=1``): what it prints must not change."""

from __future__ import annotations

import logging
import logging.config
import os

from celery import Celery

import celery_logs

app = Celery("plain_program", broker="memory://")
if os.environ.get("CONSOLE_APP_CELERY_LOGS") == "1":
    celery_logs.install(app, service="plain")

log = logging.getLogger("plain.app")
log.warning("before any configuration")  # no handler anywhere: logging.lastResort prints it
log.info("info while nothing asked for it")
logging.basicConfig(format="%(levelname)s %(name)s %(message)s")  # no level: the root stays at WARNING
log.warning("after basicConfig")
log.info("info, the root still at WARNING")
logging.getLogger().setLevel(logging.INFO)
log.info("info once the program asked for it")
# A framework's LOGGING (Django's, say) replaces the root logger's handlers: celery-logs, on none of them,
# keeps hearing the lines.
logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"short": {"format": "DICT %(levelname)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "short", "stream": "ext://sys.stderr"}},
    "root": {"level": "INFO", "handlers": ["console"]},
})
log.info("after dictConfig")
