"""Lifecycle records of a real prefork worker (concurrency 4) on a real Redis broker, read from its files."""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

import pytest

import celery_logs

from .conftest import LifecycleWorker, action, has_action, read_records, task_id_of, task_records, wait_records

pytestmark = pytest.mark.integration

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
COMMON_KEYS = {"@timestamp", "log.level", "message", "log", "event", "ecs.version", "service", "host", "process",
               "celery_logs"}


def _pid_of_file(record: dict[str, Any]) -> int:
    return int(record["_file"].split(".")[1])


def test_success_has_published_received_started_succeeded(lifecycle_worker: LifecycleWorker) -> None:
    """A task that succeeds leaves exactly these four records, with the schema's fields and types."""
    lifecycle_worker.install_producer(environment="test")
    with celery_logs.trace_context("trace-success-1"):
        task_id = lifecycle_worker.send("lifecycle.add", 2, 3)
    records = wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-succeeded"))
    own = task_records(records, task_id)
    assert [action(r) for r in own] == ["task-published", "task-received", "task-started", "task-succeeded"]
    published, received, started, succeeded = own

    for r in own:
        assert r.keys() >= COMMON_KEYS
        assert TIMESTAMP.match(r["@timestamp"])
        assert UUID7.match(r["event"]["id"])
        assert r["event"]["kind"] == "event"
        assert r["event"]["dataset"] == "celery.task"
        assert r["ecs.version"] == "8.11.0"
        assert r["celery_logs"] == {"schema_version": "1"}
        assert r["trace"] == {"id": "trace-success-1"}
        assert r["process"]["pid"] == _pid_of_file(r)
        assert r["celery"]["task"]["name"] == "lifecycle.add"
        assert r["log.level"] == "info"
    assert published["service"] == {"name": "producer", "environment": "test"}
    assert published["process"]["pid"] == os.getpid()
    # The worker app passes service/version, and its Celery config sets the environment.
    for r in (received, started, succeeded):
        assert r["service"] == {"name": "lifecycle", "version": "1.2.3", "environment": "test"}
        assert r["celery"]["worker"] == lifecycle_worker.worker.nodename
        assert r["celery"]["queue"] == lifecycle_worker.queue
    assert received["process"]["pid"] == lifecycle_worker.worker.proc.pid
    assert started["process"]["pid"] == succeeded["process"]["pid"] != received["process"]["pid"]

    assert published["celery"]["task"] == {
        "id": task_id, "name": "lifecycle.add", "root_id": task_id, "retries": 0, "state": "PENDING",
        "args": "(2, 3)", "kwargs": "{}",
    }
    assert received["celery"]["task"]["state"] == "RECEIVED"
    assert received["celery"]["task"]["args"] == "[2, 3]"
    assert started["celery"]["task"]["state"] == "STARTED"
    assert started["celery"]["task"]["retries"] == 0
    assert isinstance(started["celery"]["queue_wait"], int)
    assert 0 <= started["celery"]["queue_wait"] < 60_000_000_000
    assert started["event"]["start"] == started["@timestamp"]
    assert started["message"] == "task started: lifecycle.add"

    assert succeeded["celery"]["task"]["state"] == "SUCCESS"
    assert succeeded["event"]["outcome"] == "success"
    assert isinstance(succeeded["event"]["duration"], int)
    assert 0 < succeeded["event"]["duration"] < 10_000_000_000
    assert succeeded["event"]["start"] == started["@timestamp"]
    assert succeeded["event"]["end"] == succeeded["@timestamp"]
    assert "result" not in succeeded["celery"]["task"]  # results are opt-in
    assert re.fullmatch(r"task succeeded: lifecycle\.add after \d+\.\d{3} s", succeeded["message"])


def test_task_from_an_uninstrumented_producer_gets_a_workflow_trace_id(lifecycle_worker: LifecycleWorker) -> None:
    """Without the producer's header, records and user lines share the root task id as trace.id."""
    task_id = lifecycle_worker.send("lifecycle.logs", "plain-producer")  # no install_producer()
    records = wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-succeeded"))
    own = [r for r in records if task_id_of(r) == task_id]
    assert [action(r) for r in task_records(records, task_id)] == ["task-received", "task-started", "task-succeeded"]
    assert {r["trace"]["id"] for r in own} == {task_id.replace("-", "")}
    assert "queue_wait" not in next(r for r in own if action(r) == "task-started")["celery"]


def test_chained_failure_has_whole_traceback_and_stable_grouping_key(lifecycle_worker: LifecycleWorker) -> None:
    """`raise X from Y` gives type, message, both tracebacks, and the same grouping key for the same bug."""
    lifecycle_worker.install_producer()
    first = lifecycle_worker.send("lifecycle.fail_chained", "acct-1")
    second = lifecycle_worker.send("lifecycle.fail_chained", "acct-2")
    records = wait_records(
        lifecycle_worker.log_dir,
        lambda rs: has_action(first, "task-failed")(rs) and has_action(second, "task-failed")(rs),
    )
    failed = [r for r in task_records(records, first) if action(r) == "task-failed"]
    assert len(failed) == 1
    rec = failed[0]
    assert rec["log.level"] == "error"
    assert rec["event"]["outcome"] == "failure"
    assert rec["celery"]["task"]["state"] == "FAILURE"
    assert rec["celery"]["task"]["args"] == "['acct-1']"
    assert re.fullmatch(r"task failed: lifecycle\.fail_chained \(ChargeError\) after \d+\.\d{3} s", rec["message"])
    error = rec["error"]
    assert error["type"] == "tests.worker.apps.lifecycle_app.ChargeError"
    assert error["message"] == "cannot charge account acct-1"
    stack = error["stack_trace"]
    assert stack.startswith("Traceback (most recent call last):\n")
    assert "KeyError: 'acct-1'" in stack
    assert "The above exception was the direct cause of the following exception:" in stack
    assert "in _lookup\n    return table[key]" in stack
    assert stack.rstrip("\n").endswith("tests.worker.apps.lifecycle_app.ChargeError: cannot charge account acct-1")
    assert stack.index("KeyError") < stack.index("direct cause") < stack.rindex("ChargeError")
    other = next(r for r in task_records(records, second) if action(r) == "task-failed")
    assert re.fullmatch(r"[0-9a-f]{32}", error["grouping_key"])
    assert other["error"]["grouping_key"] == error["grouping_key"]
    assert other["error"]["message"] == "cannot charge account acct-2"


def test_retried_twice_then_succeeds(lifecycle_worker: LifecycleWorker) -> None:
    """Each retry gives task-retried (reason, eta) and a new publish; the third run succeeds."""
    lifecycle_worker.install_producer()
    task_id = lifecycle_worker.send("lifecycle.flaky", 2)
    records = wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-succeeded"))
    own = task_records(records, task_id)
    runs = [r for r in own if action(r) in ("task-started", "task-retried", "task-succeeded")]
    assert [action(r) for r in runs] == [
        "task-started", "task-retried", "task-started", "task-retried", "task-started", "task-succeeded",
    ]
    assert [r["celery"]["task"]["retries"] for r in runs] == [0, 0, 1, 1, 2, 2]
    assert [action(r) for r in own].count("task-published") == 3
    assert [action(r) for r in own].count("task-received") == 3
    retried = [r for r in runs if action(r) == "task-retried"]
    assert [r["celery"]["retry"]["reason"] for r in retried] == [
        "ConnectionError('attempt 0 refused')", "ConnectionError('attempt 1 refused')",
    ]
    for r in retried:
        assert r["log.level"] == "warning"
        assert r["celery"]["task"]["state"] == "RETRY"
        assert r["event"]["outcome"] == "unknown"
        assert TIMESTAMP.match(r["celery"]["retry"]["eta"])
        assert r["celery"]["retry"]["eta"] > r["@timestamp"]
        assert r["error"]["type"] == "ConnectionError"
        assert isinstance(r["event"]["duration"], int)
    # Every run shares the trace id the first publish stamped.
    assert len({r["trace"]["id"] for r in own}) == 1


def test_revoked_while_waiting(lifecycle_worker: LifecycleWorker) -> None:
    """A task revoked before its countdown ends is recorded as revoked and never starts."""
    lifecycle_worker.install_producer()
    task_id = lifecycle_worker.send("lifecycle.sleep", 0, countdown=2)
    wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-received"))
    lifecycle_worker.producer.control.revoke(task_id)
    records = wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-revoked"))
    own = task_records(records, task_id)
    assert [action(r) for r in own] == ["task-published", "task-received", "task-revoked"]
    revoked = own[-1]
    assert revoked["celery"]["revoke"] == {"terminated": False, "expired": False}
    assert revoked["celery"]["task"]["state"] == "REVOKED"
    assert revoked["event"]["outcome"] == "unknown"
    assert revoked["process"]["pid"] == lifecycle_worker.worker.proc.pid
    assert TIMESTAMP.match(revoked["celery"]["task"].get("eta", "")) is None  # eta is on published/received
    assert TIMESTAMP.match(own[1]["celery"]["task"]["eta"])


def test_terminated_running_task_is_revoked_with_signal(lifecycle_worker: LifecycleWorker) -> None:
    """revoke(terminate=True) of a running task says terminated, and with which signal."""
    lifecycle_worker.install_producer()
    task_id = lifecycle_worker.send("lifecycle.sleep", 30)
    wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-started"))
    lifecycle_worker.producer.control.revoke(task_id, terminate=True, signal="SIGTERM")
    records = wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-revoked"))
    own = task_records(records, task_id)
    assert [action(r) for r in own] == ["task-published", "task-received", "task-started", "task-revoked"]
    assert own[-1]["celery"]["revoke"] == {"terminated": True, "expired": False, "signal": "SIGTERM"}


def test_hard_time_limit_is_reported_once_by_the_main_process(lifecycle_worker: LifecycleWorker) -> None:
    """The child is killed at the hard limit; the main process writes the one task-failed record."""
    lifecycle_worker.install_producer()
    task_id = lifecycle_worker.send("lifecycle.hard_limit")
    # Celery reports a hard limit twice: on the timeout, then when the killed child's job fails
    # ("Task handler raised error"). Wait for the second report before counting records.
    wait_records(
        lifecycle_worker.log_dir,
        lambda rs: any(r["message"].startswith("Task handler raised error: TimeLimitExceeded") for r in rs),
    )
    own = task_records(read_records(lifecycle_worker.log_dir), task_id)
    assert [action(r) for r in own] == ["task-published", "task-received", "task-started", "task-failed"]
    failed = own[-1]
    assert failed["process"]["pid"] == lifecycle_worker.worker.proc.pid
    assert failed["error"]["type"] == "billiard.exceptions.TimeLimitExceeded"
    assert failed["celery"]["task"]["name"] == "lifecycle.hard_limit"
    assert failed["celery"]["worker"] == lifecycle_worker.worker.nodename
    assert 1_000_000_000 <= failed["event"]["duration"] < 30_000_000_000
    assert re.fullmatch(
        r"task failed: lifecycle\.hard_limit \(TimeLimitExceeded\) after \d+\.\d{3} s", failed["message"]
    )
    assert "celery-logs: logging fault" not in lifecycle_worker.worker.console_tail(100_000)


def _accepted_by(lifecycle_worker: LifecycleWorker, task_id: str, timeout: float = 30.0) -> int | None:
    """The pid of the child the worker's main process says runs ``task_id`` (``inspect active``), polled."""
    node = lifecycle_worker.worker.nodename
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = lifecycle_worker.producer.control.inspect(destination=[node], timeout=1).active() or {}
        for request in replies.get(node, []):
            if request.get("id") == task_id and request.get("worker_pid"):
                return int(request["worker_pid"])
    return None


def test_child_killed_by_sigkill_is_reported_by_the_main_process(lifecycle_worker: LifecycleWorker) -> None:
    """SIGKILL of the child running a task (as the OOM killer does) still ends the task with task-failed."""
    lifecycle_worker.install_producer()
    task_id = lifecycle_worker.send("lifecycle.sleep", 30)
    records = wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-started"))
    child = next(r for r in task_records(records, task_id) if action(r) == "task-started")["process"]["pid"]
    # Kill only once the main process has the child's acceptance of the job. Killed before that, the job
    # was seen to run again in another child (a second task-started, a success 30 s later), which is the
    # pool's business, not a WorkerLostError.
    assert _accepted_by(lifecycle_worker, task_id) == child
    os.kill(child, signal.SIGKILL)
    records = wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-failed"))
    own = task_records(records, task_id)
    assert [action(r) for r in own] == ["task-published", "task-received", "task-started", "task-failed"]
    failed = own[-1]
    assert failed["process"]["pid"] == lifecycle_worker.worker.proc.pid
    assert failed["error"]["type"] == "billiard.exceptions.WorkerLostError"
    assert "SIGKILL" in failed["error"]["message"]
    assert failed["event"]["duration"] > 0
    assert "celery-logs: logging fault" not in lifecycle_worker.worker.console_tail(100_000)


def test_secrets_are_redacted_and_values_bounded(lifecycle_worker: LifecycleWorker) -> None:
    """A password kwarg and nested api_key never reach a file; a 5 MB argument becomes a bounded repr."""
    lifecycle_worker.install_producer()
    blob = "x" * 5_000_000
    task_id = lifecycle_worker.send(
        "lifecycle.secret", "bob", blob,
        kwargs={"password": "hunter2", "options": {"nested": {"api_key": "k-123", "region": "eu"}}},
    )
    records = wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-succeeded"))
    for path in lifecycle_worker.log_dir.glob("*.jsonl*"):
        text = path.read_text()
        assert "hunter2" not in text
        assert "k-123" not in text
        assert all(len(line) < 40_000 for line in text.splitlines())
    own = task_records(records, task_id)
    for r in (x for x in own if action(x) in ("task-published", "task-received")):
        task = r["celery"]["task"]
        assert len(task["args"]) <= 2048
        assert task["args"].startswith("('bob', 'xxxx") or task["args"].startswith("['bob', 'xxxx")
        assert task["args"].endswith("...[truncated]")
        assert task["kwargs"] == (
            "{'password': '[REDACTED]', 'options': {'nested': {'api_key': '[REDACTED]', 'region': 'eu'}}}"
        )


def test_user_lines_carry_task_context(lifecycle_worker: LifecycleWorker) -> None:
    """stdlib, get_task_logger and structlog lines inside a task carry its id, name, trace id and labels."""
    lifecycle_worker.install_producer()
    with celery_logs.trace_context("trace-ctx-7"):
        task_id = lifecycle_worker.send("lifecycle.logs", "acme")
    records = wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-succeeded"))
    lines = {
        r["message"]: r for r in records
        if task_id_of(r) == task_id and r["event"]["dataset"] == "celery.app"
    }
    wanted = {
        "stdlib line for acme": ("lifecycle_app.tasks", "info"),
        "task logger line": ("tests.worker.apps.lifecycle_app", "warning"),
        "structlog line": ("lifecycle_app.struct", "info"),
        "handled error": ("lifecycle_app.tasks", "error"),
    }
    for message, (logger, level) in wanted.items():
        line = lines[message]
        assert line["log"] == {"logger": logger}
        assert line["log.level"] == level
        assert line["celery"]["task"]["id"] == task_id
        assert line["celery"]["task"]["name"] == "lifecycle.logs"
        assert line["trace"] == {"id": "trace-ctx-7"}
        assert line["labels"] == {"tenant": "acme"}
        assert "action" not in line["event"]
    assert lines["structlog line"]["order_id"] == 42
    assert lines["structlog line"]["api_token"] == "[REDACTED]"
    assert lines["handled error"]["error"]["type"] == "KeyError"
    assert lines["handled error"]["error"]["stack_trace"].rstrip().endswith("KeyError: 'missing'")


def test_no_torn_lines_under_load(lifecycle_worker: LifecycleWorker) -> None:
    """200 tasks on 4 children: every line of every file is one whole record and event ids are unique."""
    lifecycle_worker.install_producer()
    ids = [lifecycle_worker.send("lifecycle.logs" if i % 4 == 0 else "lifecycle.add", *(
        (f"t{i}\n{{\"forged\": true}}",) if i % 4 == 0 else (i, i))) for i in range(200)]
    wanted = set(ids)

    def all_done(records: list[dict[str, Any]]) -> bool:
        done = {task_id_of(r) for r in records if action(r) == "task-succeeded"}
        return wanted <= done

    records = wait_records(lifecycle_worker.log_dir, all_done, timeout=120)
    event_ids = [r["event"]["id"] for r in records]
    assert len(event_ids) == len(set(event_ids))
    pids = {r["process"]["pid"] for r in records if task_id_of(r) in wanted and action(r) == "task-started"}
    assert len(pids) >= 2  # several children wrote at once, each to its own file
    for r in records:
        assert r["_file"] == f"{r['service']['name']}.{r['process']['pid']}.jsonl"
    # A newline and a JSON fragment inside a value stay inside that value.
    forged = [r for r in records if r.get("labels", {}).get("tenant", "").startswith("t0\n")]
    assert forged and all("forged" not in r for r in forged)


def test_unknown_task_is_recorded(lifecycle_worker: LifecycleWorker) -> None:
    """A message for a task the worker does not know gives task-unknown from the main process."""
    lifecycle_worker.install_producer()
    task_id = lifecycle_worker.send("lifecycle.not_registered", 1)
    records = wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-unknown"))
    (unknown,) = [r for r in task_records(records, task_id) if action(r) == "task-unknown"]
    assert unknown["celery"]["task"]["name"] == "lifecycle.not_registered"
    assert unknown["log.level"] == "error"
    assert unknown["process"]["pid"] == lifecycle_worker.worker.proc.pid
    assert unknown["message"] == "unknown task: lifecycle.not_registered"


def test_message_that_is_no_task_is_rejected(lifecycle_worker: LifecycleWorker) -> None:
    """A message Celery cannot read as a task gives task-rejected from the main process."""
    from kombu import Connection

    with Connection(lifecycle_worker.broker_url) as conn:
        conn.Producer(serializer="json").publish({"not": "a task"}, exchange="", routing_key=lifecycle_worker.queue)
    records = wait_records(lifecycle_worker.log_dir, lambda rs: any(action(r) == "task-rejected" for r in rs))
    (rejected,) = [r for r in records if action(r) == "task-rejected"]
    assert rejected["message"] == "message rejected: not a task message"
    assert rejected["celery"]["task"] == {"state": "REJECTED"}
    assert rejected["event"]["outcome"] == "failure"
    assert rejected["process"]["pid"] == lifecycle_worker.worker.proc.pid


def test_expired_task_is_revoked_as_expired(lifecycle_worker: LifecycleWorker) -> None:
    """A task whose expiry passed before it ran is revoked with expired=true."""
    from datetime import datetime, timedelta, timezone

    lifecycle_worker.install_producer()
    task_id = lifecycle_worker.send("lifecycle.add", 1, 1, expires=datetime.now(timezone.utc) - timedelta(seconds=5))
    records = wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-revoked"))
    revoked = task_records(records, task_id)[-1]
    assert action(revoked) == "task-revoked"
    assert revoked["celery"]["revoke"] == {"terminated": False, "expired": True}
    assert re.fullmatch(r"task revoked: lifecycle\.add \(expired\)", revoked["message"])


def test_every_lifecycle_field_is_in_the_schema(lifecycle_worker: LifecycleWorker) -> None:
    """Each field of every task and worker record written so far is a row of the schema (labels aside)."""
    from celery_logs._schema import ACTIONS, FIELDS_BY_NAME

    def flatten(node: dict[str, Any], prefix: str = "") -> list[str]:
        names: list[str] = []
        for key, value in node.items():
            if isinstance(value, dict):
                names += flatten(value, f"{prefix}{key}.")
            else:
                names.append(prefix + key)
        return names

    lifecycle_worker.install_producer()
    ids = [lifecycle_worker.send("lifecycle.add", 1, 2), lifecycle_worker.send("lifecycle.fail_chained", "a"),
           lifecycle_worker.send("lifecycle.flaky", 1), lifecycle_worker.send("lifecycle.not_registered")]
    ends = ("task-succeeded", "task-failed", "task-succeeded", "task-unknown")
    records = wait_records(
        lifecycle_worker.log_dir,
        lambda rs: all(has_action(i, end)(rs) for i, end in zip(ids, ends, strict=True))
        and any(action(r) == "worker-heartbeat" for r in rs),
    )
    records = [r for r in records if r["event"]["dataset"] != "celery.app"]
    assert {action(r) for r in records} >= {"task-published", "task-received", "task-started", "task-succeeded",
                                             "task-failed", "task-retried", "task-unknown", "worker-online",
                                             "worker-heartbeat"}
    for r in records:
        del r["_file"]
        assert action(r) in ACTIONS
        unknown = [n for n in flatten(r) if n not in FIELDS_BY_NAME and not n.startswith("labels.")]
        assert unknown == [], (action(r), unknown)


def test_worker_online_heartbeat_offline(lifecycle_worker: LifecycleWorker) -> None:
    """The main process writes worker-online, a heartbeat every second with stats, worker-shutting-down on
    TERM, and worker-offline."""
    records = wait_records(
        lifecycle_worker.log_dir, lambda rs: sum(action(r) == "worker-heartbeat" for r in rs) >= 2
    )
    assert lifecycle_worker.worker.stop() == 0
    records = read_records(lifecycle_worker.log_dir)
    main = [r for r in records if r["process"]["pid"] == lifecycle_worker.worker.proc.pid]
    worker_records = sorted((r for r in main if r["event"]["dataset"] == "celery.worker"
                             and action(r) != "worker-queue-depth"), key=lambda r: r["event"]["id"])
    # Each heartbeat also samples the depth of the queue the worker consumes (tests/periodic checks values).
    depths = [r for r in main if action(r) == "worker-queue-depth"]
    assert {r["celery"]["queue"] for r in depths} == {lifecycle_worker.queue}
    actions = [action(r) for r in worker_records]
    assert actions[0] == "worker-online"
    assert actions[-1] == "worker-offline"
    down = actions.index("worker-shutting-down")
    assert set(actions[1:down]) == {"worker-heartbeat"}
    assert set(actions[down:-1]) <= {"worker-shutting-down", "worker-heartbeat"}  # beats go on while it drains
    for r in worker_records:
        assert r["celery"]["worker"] == lifecycle_worker.worker.nodename
        if action(r) == "worker-shutting-down":
            assert r["celery"]["shutdown"]["how"] == "warm"
            continue
        if action(r) != "worker-offline":
            assert r["celery"]["worker_stats"]["heartbeat_interval"] == 1.0
        stats = r["celery"]["worker_stats"]
        assert stats["pool_size"] == 4
        assert isinstance(stats["active"], int)
        assert isinstance(stats["processed"], int)
        assert stats["rss_bytes"] > 10_000_000
    # Celery's own lines are records too, and its console keeps its own format beside them.
    assert any(r["log"]["logger"].startswith("celery.") and r["event"]["dataset"] == "celery.app" for r in main)
    assert "INFO/MainProcess] Connected to redis://" in lifecycle_worker.worker.console_tail(10_000)
    beats = [r for r in worker_records if action(r) == "worker-heartbeat"]
    assert beats[-1]["celery"]["worker_stats"]["processed"] > 0


def test_every_line_of_the_worker_follows_the_ecs_logging_spec(lifecycle_worker: LifecycleWorker) -> None:
    """Every line the real worker (main process and children) and the producer wrote so far passes the spec's
    rules: field order, top-level dotted log.level / ecs.version, label keys, ECS 8.11 field types."""
    import json

    from tests.worker.test_ecs_logging import check_spec

    lines = [line for path in sorted(lifecycle_worker.log_dir.glob("*.jsonl*"))
             for line in path.read_text().splitlines()]
    assert len(lines) > 50
    for line in lines:
        check_spec(line, json.loads(line))
