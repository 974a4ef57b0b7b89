"""Every way Celery reports a failure leaves its record, and no logging fault, on a real prefork worker."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kombu import Connection

from .conftest import LifecycleWorker, action, has_action, task_records, wait_records

pytestmark = pytest.mark.integration

FAULT = "celery-logs: logging fault"


def _no_fault(lifecycle_worker: LifecycleWorker) -> None:
    # A worker process reports its first fault on stderr (fault_count() lives in the worker's processes).
    assert FAULT not in lifecycle_worker.worker.console_tail(100_000)


def _publish(lifecycle_worker: LifecycleWorker, body: Any, **options: Any) -> str:
    """A raw task message (protocol 2 headers) on the worker's queue; returns its task id."""
    task_id = str(uuid.uuid4())
    headers = {"id": task_id, "task": "lifecycle.add", "lang": "py", "root_id": task_id}
    with Connection(lifecycle_worker.broker_url) as conn:
        conn.Producer().publish(body, exchange="", routing_key=lifecycle_worker.queue, headers=headers, **options)
    return task_id


def test_exception_raised_in_the_task(lifecycle_worker: LifecycleWorker) -> None:
    """An exception in the task: task-failed from the child that ran it, with its traceback."""
    lifecycle_worker.install_producer()
    task_id = lifecycle_worker.send("lifecycle.fail_chained", "acct-9")
    own = task_records(wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-failed")), task_id)
    assert [action(r) for r in own] == ["task-published", "task-received", "task-started", "task-failed"]
    failed = own[-1]
    assert failed["process"]["pid"] != lifecycle_worker.worker.proc.pid
    assert failed["error"]["type"] == "tests.worker.apps.lifecycle_app.ChargeError"
    assert failed["error"]["message"] == "cannot charge account acct-9"
    _no_fault(lifecycle_worker)


def test_reject_without_requeue_is_reported_by_the_main_process_with_a_text_traceback(
    lifecycle_worker: LifecycleWorker,
) -> None:
    """Reject(requeue=False): Celery's main process sends task_failure with the traceback as a string; the
    record is written with that text as its stack trace."""
    lifecycle_worker.install_producer()
    task_id = lifecycle_worker.send("lifecycle.reject")
    own = task_records(wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-failed")), task_id)
    assert [action(r) for r in own] == ["task-published", "task-received", "task-started", "task-failed"]
    failed = own[-1]
    assert failed["process"]["pid"] == lifecycle_worker.worker.proc.pid
    assert failed["error"]["type"] == "celery.exceptions.Reject"
    assert failed["error"]["stack_trace"].startswith("Traceback (most recent call last):\n")
    assert 'raise Reject("not for this worker", requeue=False)' in failed["error"]["stack_trace"]
    assert failed["error"]["stack_trace"].endswith("celery.exceptions.Reject: ('not for this worker', False)\n")
    assert len(failed["error"]["grouping_key"]) == 32
    assert failed["event"]["outcome"] == "failure"
    _no_fault(lifecycle_worker)


def test_soft_time_limit(lifecycle_worker: LifecycleWorker) -> None:
    """A soft time limit raises in the task: task-failed from the child with SoftTimeLimitExceeded."""
    lifecycle_worker.install_producer()
    task_id = lifecycle_worker.send("lifecycle.soft_limit")
    own = task_records(wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-failed")), task_id)
    assert [action(r) for r in own] == ["task-published", "task-received", "task-started", "task-failed"]
    assert own[-1]["error"]["type"] == "billiard.exceptions.SoftTimeLimitExceeded"
    assert 500_000_000 <= own[-1]["event"]["duration"] < 30_000_000_000
    _no_fault(lifecycle_worker)


def test_message_of_a_refused_serializer_is_rejected(lifecycle_worker: LifecycleWorker) -> None:
    """A pickled task message to a JSON-only worker (kombu's ContentDisallowed, the security check on
    content types): task-rejected from the main process, naming the task."""
    task_id = _publish(lifecycle_worker, ((1, 2), {}, {}), serializer="pickle")
    (rejected,) = task_records(wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-rejected")), task_id)
    assert rejected["message"].startswith("message rejected: ContentDisallowed('Refusing to deserialize untrusted")
    assert rejected["celery"]["task"] == {"id": task_id, "name": "lifecycle.add", "state": "REJECTED"}
    assert rejected["process"]["pid"] == lifecycle_worker.worker.proc.pid
    _no_fault(lifecycle_worker)


def test_undecodable_message_is_rejected(lifecycle_worker: LifecycleWorker) -> None:
    """A body that is not the JSON it claims to be (Celery only logs it, no signal): task-rejected with the
    decode error, from the main process."""
    task_id = _publish(lifecycle_worker, b"\x00not json", content_type="application/json", content_encoding="utf-8")
    (rejected,) = task_records(wait_records(lifecycle_worker.log_dir, has_action(task_id, "task-rejected")), task_id)
    assert rejected["message"] == "message rejected: cannot decode its body (DecodeError)"
    assert rejected["celery"]["task"] == {"id": task_id, "name": "lifecycle.add", "state": "REJECTED"}
    assert rejected["error"]["type"] == "kombu.exceptions.DecodeError"
    assert rejected["error"]["stack_trace"].endswith("kombu.exceptions.DecodeError: Expecting value: line 1 column 1 "
                                                     "(char 0)\n")
    assert rejected["event"]["outcome"] == "failure"
    assert rejected["process"]["pid"] == lifecycle_worker.worker.proc.pid
    _no_fault(lifecycle_worker)
