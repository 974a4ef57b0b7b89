"""Fixtures of the worker-side tests: a clean celery-logs state per test, a shared real worker per module."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

import celery_logs
from pipelines.dev.stack import LocalRedis
from tests.support.workers import WorkerProcess, run_worker


def read_records(log_dir: Path) -> list[dict[str, Any]]:
    """Every record of every file in ``log_dir`` (rotated ones too), checking each is one whole line."""
    records: list[dict[str, Any]] = []
    for path in sorted(log_dir.glob("*.jsonl*")):
        data = path.read_bytes()
        if not data:
            continue
        assert data.endswith(b"\n"), f"{path.name} ends with a partial line"
        for line in data.split(b"\n")[:-1]:
            record = json.loads(line)
            record["_file"] = path.name
            records.append(record)
    return records


def action(record: dict[str, Any]) -> str | None:
    return record.get("event", {}).get("action")


def task_id_of(record: dict[str, Any]) -> str | None:
    return record.get("celery", {}).get("task", {}).get("id")


def wait_records(
    log_dir: Path, predicate: Callable[[list[dict[str, Any]]], bool], *, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Poll the files until ``predicate(records)`` holds; fail with what was there at the deadline."""
    deadline = time.monotonic() + timeout
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = read_records(log_dir)
        if predicate(records):
            return records
        time.sleep(0.1)  # poll interval, not a wait for an outcome
    summary = [(action(r), task_id_of(r), r.get("message")) for r in records][-30:]
    raise AssertionError(f"condition not met after {timeout} s; last records: {summary}")


def task_records(records: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    """Lifecycle records of one task, in event-id (time) order."""
    own = [r for r in records if task_id_of(r) == task_id and r["event"].get("dataset") == "celery.task"]
    return sorted(own, key=lambda r: r["event"]["id"])


def has_action(task_id: str, *wanted: str) -> Callable[[list[dict[str, Any]]], bool]:
    def check(records: list[dict[str, Any]]) -> bool:
        seen = {action(r) for r in records if task_id_of(r) == task_id}
        return all(w in seen for w in wanted)

    return check


class LifecycleWorker:
    """The shared worker of a module and a producer app that sends to it."""

    def __init__(self, worker: WorkerProcess, log_dir: Path, broker_url: str, queue: str) -> None:
        self.worker = worker
        self.log_dir = log_dir
        self.broker_url = broker_url
        self.queue = queue
        self.producer = Celery("producer", broker=broker_url)
        self.producer.conf.task_default_queue = queue

    def install_producer(self, **kwargs: Any) -> None:
        """Install celery-logs in this (test) process as the producer side, writing beside the worker."""
        celery_logs.install(self.producer, service="producer", log_dir=self.log_dir, **kwargs)

    def send(self, name: str, *args: Any, **options: Any) -> str:
        kwargs = options.pop("kwargs", None)
        result = self.producer.send_task(name, args=args, kwargs=kwargs, queue=self.queue, **options)
        return str(result.id)


@pytest.fixture(scope="module")
def lifecycle_worker(
    redis_server: LocalRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LifecycleWorker]:
    """One real prefork worker (concurrency 4, heartbeat every second) running the test app."""
    import redis

    workdir = tmp_path_factory.mktemp("lifecycle")
    log_dir = workdir / "logs"
    # db 0 is never handed out by the per-test `broker_url` fixture, so no other test flushes it.
    broker_url = f"redis://127.0.0.1:{redis_server.port}/0"
    queue = f"lifecycle-{uuid.uuid4().hex[:8]}"
    env = {
        "CELERY_LOGS_LOG_DIR": str(log_dir),
        "CELERY_LOGS_HEARTBEAT_INTERVAL": "1",
        "CELERY_LOGS_SERVICE": "ignored-because-install-passes-service",
    }
    with run_worker(
        "tests.worker.apps.lifecycle_app", broker_url=broker_url, workdir=workdir, concurrency=4,
        queues=[queue], env=env,
    ) as worker:
        lw = LifecycleWorker(worker, log_dir, broker_url, queue)
        yield lw
        lw.producer.close()
    client = redis.Redis.from_url(broker_url)
    client.flushdb()
    client.close()
