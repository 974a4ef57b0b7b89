"""Queue depth against real Redis queues filled to known depths, sampled in-process and by a real worker."""

from __future__ import annotations

import io
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

import celery_logs
from celery_logs import _queues, _runtime
from tests.support.workers import run_worker
from tests.worker.conftest import read_records

pytestmark = pytest.mark.integration


def _fill(app: Celery, queue: str, priorities: dict[int | None, int]) -> None:
    for priority, count in priorities.items():
        for _ in range(count):
            options: dict[str, Any] = {} if priority is None else {"priority": priority}
            app.send_task("depth.nothing", queue=queue, **options)


def test_depth_counts_the_priority_sub_queues(broker_url: str) -> None:
    """5 plain + 3 priority-6 + 2 priority-9 messages: depth 10, equal to LLEN over kombu's sub-lists; empty is 0."""
    app = Celery("depth", broker=broker_url)
    _fill(app, "depth-q", {None: 5, 6: 3, 9: 2})
    client = redis.Redis.from_url(broker_url)
    lists = [k for k in client.keys("depth-q*") if client.type(k) == b"list"]
    by_llen = sum(int(client.llen(k)) for k in lists)
    client.close()
    sampler = _queues._Sampler(app, timeout=2.0)
    try:
        assert len(lists) == 3  # the queue itself and two priority sub-lists
        assert sampler.depth("depth-q") == by_llen == 10
        assert sampler.depth("never-used") == 0
    finally:
        sampler.close()
        app.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _DeadConsumer:
    """What the heartbeat passes: a consumer whose app points at a broker nobody listens on."""

    def __init__(self, app: Celery) -> None:
        self.app = app


def test_a_failed_sample_is_a_record_and_a_count_never_an_exception() -> None:
    """Broker down: one failure record per queue, counted, nothing raised, within the time budget."""
    app = Celery("dead", broker=f"redis://127.0.0.1:{_closed_port()}/0")
    app.conf.task_default_queue = "dead-q"
    out = io.StringIO()
    celery_logs.install(app, service="dead", stream=out, heartbeat_interval=2.0, watch_queues=["other"])
    runtime = _runtime.current()
    assert runtime is not None
    began = time.monotonic()
    _queues.sample(runtime, _DeadConsumer(app), "celery@dead")
    elapsed = time.monotonic() - began
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    depth = [r for r in records if r["event"].get("action") == "worker-queue-depth"]
    assert [(r["celery"]["queue"], r["celery"]["queue_consumed"], r["event"]["outcome"]) for r in depth] == [
        ("dead-q", True, "failure"), ("other", False, "failure")]
    assert all("queue_depth" not in r["celery"] and r["error"]["type"] for r in depth)
    assert _queues.failure_count() == 2
    assert elapsed < 2.0 * 2  # two bounded attempts at most
    app.close()


def test_worker_heartbeats_carry_the_depth_of_its_queues(broker_url: str, tmp_path: Path) -> None:
    """A real worker consuming `live` and watching `backlog` (7 waiting): each heartbeat samples 0 and 7."""
    app = Celery("filler", broker=broker_url)
    _fill(app, "backlog", {None: 4, 3: 3})
    app.close()
    log_dir = tmp_path / "logs"
    env = {"CELERY_LOGS_LOG_DIR": str(log_dir), "CELERY_LOGS_HEARTBEAT_INTERVAL": "1",
           "CELERY_LOGS_WATCH_QUEUES": "backlog", "PERIODIC_INTERVAL": "3600"}
    with run_worker("tests.periodic.apps.beat_app", broker_url=broker_url, workdir=tmp_path, concurrency=1,
                    queues=["live"], env=env) as worker:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            depth = [r for r in read_records(log_dir) if r["event"].get("action") == "worker-queue-depth"]
            if sum(r["celery"]["queue"] == "backlog" for r in depth) >= 2:
                break
            time.sleep(0.1)  # poll interval, not a wait for an outcome
    got = {(r["celery"]["queue"], r["celery"]["queue_consumed"], r["celery"]["queue_depth"]) for r in depth}
    assert got == {("live", True, 0), ("backlog", False, 7)}
    assert {r["celery"]["worker"] for r in depth} == {worker.nodename}
