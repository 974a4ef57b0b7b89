"""A focused part of Celery's own integration suite, as released and with celery-logs: the same outcomes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.dev.stack import LocalRedis
from tests.celery_suite.harness import compare, differences

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: test_basic_task first: it starts the suite's session worker (prefork), which the later tests rely on.
FOCUSED = (
    "t/integration/test_tasks.py::test_tasks::test_basic_task",
    "t/integration/test_tasks.py::test_tasks::test_fail",
    "t/integration/test_tasks.py::test_tasks::test_reject_without_requeue_stores_failure",
    "t/integration/test_tasks.py::test_trace_log_arguments",
    "t/integration/test_canvas.py::test_chain::test_simple_chain",
)


def test_focused_part_of_celerys_suite_gives_the_same_outcomes(redis_server: LocalRedis, tmp_path: Path) -> None:
    """Celery's trace-log, failure, Reject and chain tests pass as released and pass with celery-logs, which
    meanwhile wrote the records of the tasks they ran (a Reject's task-failed included) without a fault."""
    released, with_logs = compare(FOCUSED, workdir=tmp_path, redis=redis_server)
    assert differences(released.outcomes, with_logs.outcomes) == []
    assert sorted(set(released.outcomes.values())) == ["passed"], (tmp_path / "released.out").read_text()[-3000:]
    assert len(released.outcomes) == 6
    assert with_logs.log_dir is not None
    records = [json.loads(line) for path in with_logs.log_dir.glob("*.jsonl") for line in path.read_text().splitlines()]
    failed = {r["celery"]["task"]["name"] for r in records if r["event"].get("action") == "task-failed"}
    assert {"t.integration.tasks.fail", "t.integration.tasks.reject_without_requeue"} <= failed
    succeeded = {r["celery"]["task"]["name"] for r in records if r["event"].get("action") == "task-succeeded"}
    assert "t.integration.tasks.add" in succeeded
    assert "celery-logs: logging fault" not in (tmp_path / "celery-logs.out").read_text()
