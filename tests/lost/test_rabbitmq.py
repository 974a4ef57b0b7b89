"""Lost tasks on RabbitMQ, Celery's default broker: real prefork workers, the real shipper and node.

RabbitMQ differs from Redis where it matters here: when a consumer's connection drops (a killed worker),
the broker puts its unacknowledged messages back in the queue at once, where Redis keeps them until the
visibility timeout. The classes still hold: ``redelivery-pending`` is what the broker will deliver again.
Ground truth is what the tasks wrote and what the broker says is ready in the queue.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelines.dev.stack import DevStackError
from tests.conftest import _unavailable
from tests.lost.conftest import QUEUE, Stage, poll, settled, wait_until
from tests.support.rabbitmq import LocalRabbitMQ

WITHIN = 30.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rabbitmq() -> Iterator[LocalRabbitMQ]:
    """One RabbitMQ node for the module."""
    node = LocalRabbitMQ()
    try:
        node.start()
    except DevStackError as exc:
        _unavailable("RabbitMQ", exc)
    yield node
    node.stop()


@pytest.fixture
def broker_url(rabbitmq: LocalRabbitMQ) -> Iterator[str]:
    """The stage's broker is RabbitMQ here; the tasks' queue starts empty."""
    _purge(rabbitmq.url)
    yield rabbitmq.url
    _purge(rabbitmq.url)


def _purge(url: str) -> None:
    from kombu import Connection

    with Connection(url) as conn:
        channel = conn.default_channel
        channel.queue_declare(queue=QUEUE, durable=True, auto_delete=False)
        channel.queue_purge(QUEUE)


def _ready(url: str) -> int:
    """Messages ready in the queue, as the broker counts them (not delivered, or given back)."""
    from kombu import Connection

    with Connection(url) as conn:
        _, count, _ = conn.default_channel.queue_declare(queue=QUEUE, passive=True)
    return int(count)


def test_kill_9_on_rabbitmq_then_the_next_worker_runs_what_the_broker_gave_back(stage: Stage) -> None:
    """kill -9 of a worker: its running tasks are lost; its prefetched messages, back in the queue the moment
    its connection dropped, are redelivery-pending until the next worker runs them, then recovered."""
    assert stage.broker_url.startswith("amqp://")
    w1 = stage.start_worker("w1", concurrency=2)
    ids = set(stage.send(6))
    wait_until("2 tasks running", lambda: len(stage.truth().running_on(w1)) == 2, timeout=180)
    assert settled(lambda: _ready(stage.broker_url)) == 0  # the other 4 are prefetched (2 x 4 allowed)
    os.killpg(w1.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    w1.proc.wait(30)
    running = stage.truth().running_on(w1)
    prefetched = ids - running
    assert (len(running), len(prefetched)) == (2, 4)
    poll("the broker gave the prefetched back", lambda: _ready(stage.broker_url), 4, deadline=killed + WITHIN)
    expected = {"lost": running, "redelivery-pending": prefetched}
    poll("lost after kill -9", stage.lost, expected, deadline=killed + WITHIN)
    poll("the sweeper's marks", stage.marked, expected, deadline=killed + WITHIN)
    w2 = stage.start_worker("w2", concurrency=4)
    stage.release(w2)
    wait_until("the redelivered tasks to end", lambda: stage.truth().ended == prefetched, timeout=90)
    ended = time.monotonic()
    assert {i for i, ws in stage.truth().started.items() if ws == [w2.nodename]} == prefetched
    poll("recovered", stage.recovered, {"redelivery-pending": prefetched}, deadline=ended + WITHIN)
    assert stage.marked() == {"lost": running}
    assert stage.lost() == {"lost": running}


def _depths(log_dir: Path) -> list[tuple[str, Any, str]]:
    """(queue, depth, error type) of every worker-queue-depth record, in the order written."""
    out = []
    for path in sorted(log_dir.glob("*.jsonl*")):
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec["event"].get("action") == "worker-queue-depth":
                out.append((rec["celery"]["queue"], rec["celery"].get("queue_depth"),
                            rec.get("error", {}).get("type", "")))  # fmt: skip
    return out


def test_deploy_on_rabbitmq_requeues_and_loses_nothing(stage: Stage) -> None:
    """TERM a worker with tasks prefetched: it finishes what runs, the broker takes the rest back; they are
    marked requeued and never listed. Before that, its queue-depth samples read RabbitMQ's count, and a
    watched queue that does not exist (which closes the AMQP channel) does not stop the next sample."""
    w1 = stage.start_worker("w1", concurrency=2, env={"CELERY_LOGS_WATCH_QUEUES": "no-such-queue"})
    ids = set(stage.send(6))
    wait_until("2 tasks running", lambda: len(stage.truth().running_on(w1)) == 2, timeout=180)
    assert settled(lambda: _ready(stage.broker_url)) == 0

    def sampled_after_a_failure() -> bool:
        depths = _depths(stage.log_dir)
        # The 6 are all prefetched by now, so any sample of the queue after a failure reads 0.
        return any(d[0] == "no-such-queue" and depths[i + 1:i + 2] == [(QUEUE, 0, "")] for i, d in enumerate(depths))

    wait_until("a sample of the queue after the missing queue's failure", sampled_after_a_failure, timeout=60)
    assert {d for d in _depths(stage.log_dir) if d[0] == "no-such-queue"} == {
        ("no-such-queue", None, "amqp.exceptions.NotFound")
    }
    w1.proc.send_signal(signal.SIGTERM)
    stage.release(w1)
    assert w1.proc.wait(60) == 0
    done = time.monotonic()
    truth = stage.truth()
    requeued = ids - truth.ended
    assert (len(truth.ended), len(requeued), _ready(stage.broker_url)) == (2, 4, 4)
    poll("the sweeper's marks", stage.marked, {"requeued": requeued}, deadline=done + WITHIN)
    assert stage.lost() == {}
    report = stage.report()
    assert (report["lost"], report["recovered"]) == ([], {})
    assert report["lost_classes"] == {"lost": 0, "redelivery-pending": 0, "requeued": 4}
