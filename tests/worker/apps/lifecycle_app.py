"""The test app run by a real prefork worker: one task per lifecycle the tests check."""

from __future__ import annotations

import logging
import os
import time

from celery import Celery
from celery.exceptions import Reject
from celery.utils.log import get_task_logger

import celery_logs

app = Celery("lifecycle_app", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue="lifecycle",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    celery_logs_environment="test",
)
celery_logs.install(app, service="lifecycle", version="1.2.3")

stdlib_logger = logging.getLogger("lifecycle_app.tasks")
task_logger = get_task_logger(__name__)
struct_logger = celery_logs.get_logger("lifecycle_app.struct")


class ChargeError(Exception):
    """Raised by `fail_chained` on top of the original KeyError."""


@app.task(name="lifecycle.add")
def add(x: int, y: int) -> int:
    return x + y


def _lookup(table: dict[str, int], key: str) -> int:
    return table[key]


@app.task(name="lifecycle.fail_chained")
def fail_chained(account: str) -> None:
    try:
        _lookup({}, account)
    except KeyError as exc:
        raise ChargeError(f"cannot charge account {account}") from exc


@app.task(name="lifecycle.flaky", bind=True, max_retries=5)
def flaky(self: object, attempts_before_success: int) -> str:
    retries: int = self.request.retries  # type: ignore[attr-defined]
    if retries < attempts_before_success:
        raise self.retry(exc=ConnectionError(f"attempt {retries} refused"), countdown=0.2)  # type: ignore[attr-defined]
    return "ok"


@app.task(name="lifecycle.hard_limit", time_limit=1)
def hard_limit() -> None:
    time.sleep(30)


@app.task(name="lifecycle.sleep")
def sleep(seconds: float) -> None:
    time.sleep(seconds)


@app.task(name="lifecycle.secret")
def secret(user: str, blob: str, password: str, options: dict[str, object]) -> int:
    return len(blob)


@app.task(name="lifecycle.logs")
def logs(tenant: str) -> None:
    celery_logs.bind_labels(tenant=tenant)
    stdlib_logger.info("stdlib line for %s", tenant)
    task_logger.warning("task logger line")
    struct_logger.info("structlog line", order_id=42, api_token="abc")
    try:
        {}["missing"]
    except KeyError:
        stdlib_logger.exception("handled error")


@app.task(name="lifecycle.plain_line")
def plain_line() -> None:
    stdlib_logger.info("line from a task without labels")


@app.task(name="lifecycle.noop")
def noop() -> None:
    return None


class _Unpicklable:
    """A return value the pool cannot send back to the main process."""

    def __reduce__(self) -> str:
        raise TypeError("this value cannot be pickled")


@app.task(name="lifecycle.reject")
def reject() -> None:
    raise Reject("not for this worker", requeue=False)


@app.task(name="lifecycle.unpicklable_result")
def unpicklable_result() -> object:
    return _Unpicklable()


@app.task(name="lifecycle.soft_limit", soft_time_limit=0.5)
def soft_limit() -> None:
    time.sleep(30)
