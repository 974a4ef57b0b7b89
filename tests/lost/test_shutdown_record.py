"""The worker's own word on its shutdown: `worker-shutting-down` records from a real prefork worker."""

from __future__ import annotations

import signal

from celery_logs._schema import get_path as g
from tests.lost.conftest import Stage, settled, wait_until
from tests.worker.conftest import read_records


def test_term_writes_shutting_down_with_what_is_in_flight(stage: Stage) -> None:
    """TERM: a record at once (warm, SIGTERM, running vs prefetched ids, a 1 s interval), then one a second
    until worker-offline; heartbeats and worker-online announce their interval; acks_late is recorded."""
    w1 = stage.start_worker("w1", concurrency=1, env={"LOST_APP_ACKS_LATE": "1"})
    ids = stage.send(3)
    wait_until("1 task running", lambda: len(stage.truth().running_on(w1)) == 1, timeout=60)
    assert settled(stage.queued_ids) == set()
    running = stage.truth().running_on(w1)
    w1.proc.send_signal(signal.SIGTERM)
    wait_until("three shutting-down records", lambda: _count(stage, "worker-shutting-down") >= 3, timeout=60)
    stage.release(w1)
    assert w1.proc.wait(60) == 0
    records = [r for r in read_records(stage.log_dir) if g(r, "celery.worker") == w1.nodename]
    actions = [g(r, "event.action") for r in records if g(r, "event.dataset") == "celery.worker"]
    assert actions[0] == "worker-online" and actions[-1] == "worker-offline"
    downs = [r for r in records if g(r, "event.action") == "worker-shutting-down"]
    assert [g(downs[0], f"celery.shutdown.{k}") for k in ("how", "signal", "active_ids", "prefetched_ids")] == [
        "warm", "SIGTERM", sorted(running), sorted(set(ids) - running)]
    assert g(downs[0], "celery.worker_stats.heartbeat_interval") == 1.0
    assert {g(d, "celery.shutdown.how") for d in downs} == {"warm"}
    online = next(r for r in records if g(r, "event.action") == "worker-online")
    assert g(online, "celery.worker_stats.heartbeat_interval") == 5.0
    received = [r for r in records if g(r, "event.action") == "task-received"]
    assert {g(r, "celery.task.id") for r in received} == set(ids)
    assert {g(r, "celery.task.acks_late") for r in received} == {True}


def _count(stage: Stage, action: str) -> int:
    return sum(g(r, "event.action") == action for r in read_records(stage.log_dir))
