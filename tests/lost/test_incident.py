"""The users' incident and its variants, with real prefork workers on Redis, the real shipper and node.

Each test asserts the exact ids of each class against ground truth that does not come from celery-logs
(what the tasks wrote, what Redis holds), within 30 s of the incident, with default settings.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.lost.conftest import Stage, poll, settled, wait_until

#: The issue's promise: the right answer within this many seconds of the incident.
WITHIN = 30.0

pytestmark = pytest.mark.slow


def test_term_then_sigkill_the_users_incident(stage: Stage) -> None:
    """Worker 1 shuts down warm, worker 2 gets TERM then SIGKILL 5 s later: its running tasks are lost, its
    prefetched ones wait for redelivery, worker 1's prefetched (requeued, then held by worker 2) are not
    listed."""
    # Which worker fetches what is decided up front: two idle workers on one queue race for the messages,
    # and worker 1 (prefetch 3 x 4) can take all of them, leaving worker 2 nothing to run.
    w1 = stage.start_worker("w1", concurrency=3)
    first = stage.send(3 + 12)
    wait_until("worker 1 running 3", lambda: len(stage.truth().running_on(w1)) == 3, timeout=180)
    assert settled(stage.queued_ids) == set()  # worker 1 holds the other 12: its prefetch is full
    w2 = stage.start_worker("w2", concurrency=4)
    ids = first + stage.send(4)
    wait_until("worker 2 running 4", lambda: len(stage.truth().running_on(w2)) == 4, timeout=180)
    w1.proc.send_signal(signal.SIGTERM)
    stage.release(w1)
    assert w1.proc.wait(60) == 0
    assert settled(stage.queued_ids) == set()  # worker 1's 12, requeued, now prefetched by worker 2
    w2.proc.send_signal(signal.SIGTERM)
    time.sleep(5)  # supervisord's stopwaitsecs: the incident's timing, not a wait for an outcome
    os.kill(w2.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    w2.proc.wait(30)
    truth = stage.truth()
    running = truth.running_on(w2)
    unacked = stage.unacked_ids()
    assert (len(truth.ended), len(running), len(unacked)) == (3, 4, 12)
    assert running | unacked | truth.ended == set(ids)
    expected = {"lost": running, "redelivery-pending": unacked}
    poll("lost after TERM then SIGKILL", stage.lost, expected, deadline=killed + WITHIN)
    poll("the sweeper's marks", stage.marked, expected, deadline=killed + WITHIN)
    # Worker 3 starts with an empty queue (the 12 wait out Redis's visibility timeout): nothing changes.
    w3 = stage.start_worker("w3", concurrency=2)
    stage.release(w3)
    assert stage.lost() == expected
    classes = stage.report()["lost_classes"]
    assert classes == {"lost": 4, "redelivery-pending": 12, "requeued": 0}


def test_kill_9_of_the_main_process(stage: Stage) -> None:
    """`kill -9` of the main process (its children die with it): running tasks lost, prefetched pending."""
    w1 = stage.start_worker("w1", concurrency=2)
    ids = stage.send(6)
    wait_until("2 tasks running", lambda: len(stage.truth().running_on(w1)) == 2, timeout=180)
    assert settled(stage.queued_ids) == set()
    os.kill(w1.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    w1.proc.wait(30)
    running = stage.truth().running_on(w1)
    unacked = stage.unacked_ids()
    assert len(running) == 2 and not running & unacked  # acknowledged when a pool child took them
    assert running | unacked == set(ids)
    expected = {"lost": running, "redelivery-pending": unacked}
    poll("lost after kill -9", stage.lost, expected, deadline=killed + WITHIN)
    poll("the sweeper's marks", stage.marked, expected, deadline=killed + WITHIN)


def test_deploy_with_a_backlog_is_not_an_incident(stage: Stage) -> None:
    """TERM both workers while tasks wait in the queue: nothing is lost; the prefetched ones are requeued
    (marked so in the entity index, never listed)."""
    w1 = stage.start_worker("w1", concurrency=2)
    w2 = stage.start_worker("w2", concurrency=2)
    ids = stage.send(30)
    wait_until("4 tasks running", lambda: len(stage.truth().started) == 4, timeout=180)
    waiting = settled(stage.queued_ids)
    assert len(waiting) < 30 - 4  # some are prefetched
    for w in (w1, w2):
        w.proc.send_signal(signal.SIGTERM)
        stage.release(w)
    for w in (w1, w2):
        assert w.proc.wait(60) == 0
    done = time.monotonic()
    truth = stage.truth()
    requeued = stage.queued_ids() - waiting
    assert truth.ended == set(truth.started) and len(truth.ended) == 4
    assert requeued | waiting | truth.ended == set(ids) and stage.unacked_ids() == set()
    poll("the sweeper's marks", stage.marked, {"requeued": requeued}, deadline=done + WITHIN)
    assert stage.lost() == {}
    report = stage.report()
    assert (report["lost"], report["recovered"]) == ([], {})  # never marked lost, not even for a moment
    assert report["lost_classes"] == {"lost": 0, "redelivery-pending": 0, "requeued": len(requeued)}


def test_acks_late_redelivered_then_recovered(stage: Stage) -> None:
    """acks_late with a 10 s visibility timeout: a killed worker's started tasks are redelivery-pending,
    then Redis delivers them to the next worker, they complete and count as recovered."""
    env = {"LOST_APP_ACKS_LATE": "1", "LOST_APP_VISIBILITY_TIMEOUT": "10"}
    w1 = stage.start_worker("w1", concurrency=2, env=env)
    ids = set(stage.send(2))
    wait_until("2 tasks running", lambda: len(stage.truth().running_on(w1)) == 2, timeout=180)
    os.killpg(w1.proc.pid, signal.SIGKILL)
    killed = time.monotonic()
    w1.proc.wait(30)
    assert stage.unacked_ids() == ids
    poll("lost after kill -9 with acks_late", stage.lost, {"redelivery-pending": ids}, deadline=killed + WITHIN)
    poll("the sweeper's marks", stage.marked, {"redelivery-pending": ids}, deadline=killed + WITHIN)
    w2 = stage.start_worker("w2", concurrency=2, env=env)
    stage.release(w2)
    wait_until("the redelivered tasks to end", lambda: stage.truth().ended == ids, timeout=90)
    ended = time.monotonic()
    assert {w for i in ids for w in stage.truth().started[i]} == {w1.nodename, w2.nodename}
    poll("recovered", stage.recovered, {"redelivery-pending": ids}, deadline=ended + WITHIN)
    assert stage.marked() == {} and stage.lost() == {}
    report = stage.report()
    assert (report["recovered"], report["lost"]) == ({"redelivery-pending": 2}, [])
