"""The shipper takes records in the ecs-logging shape (ours now, ecs-logging-python's) and in the older nested one."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import ecs_logging
import pytest
from celery import Celery
from elasticsearch import Elasticsearch

import celery_logs
from pipelines import Shipper, ShipperConfig, install
from tests.ship import records

pytestmark = pytest.mark.integration


def _ship(es: Elasticsearch, tmp_path: Path, prefix: str) -> None:
    install(es, index_prefix=prefix, tasks_index=f"{prefix}.tasks")
    config = ShipperConfig(paths=(str(tmp_path / "logs" / "*.jsonl"),), state_dir=tmp_path / "state",
                           index_prefix=prefix, follow=False, tasks_index=f"{prefix}.tasks")
    stats = Shipper(config, client=es).run_once()
    assert stats.dead_lettered == 0
    es.indices.refresh(index=f"{prefix}-*,{prefix}.tasks")


def _ecs_logging_python_lines() -> str:
    """Two lines from ecs-logging-python's own formatter: a task's record (its fields as extras) and a failure."""
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(ecs_logging.StdlibFormatter())
    logger = logging.Logger("shop.tasks")
    logger.addHandler(handler)
    logger.error("task failed: shop.pay (KeyError)", extra={
        "event.id": "ecs-py-1", "event.action": "task-failed", "event.outcome": "failure",
        "celery.task.id": "ecs-py-task", "celery.task.name": "shop.pay", "celery.task.state": "FAILURE",
        "service.name": "shop", "error.grouping_key": "g" * 32,
    })
    try:
        {}["missing"]
    except KeyError:
        logger.exception("handled")
    return buf.getvalue()


def test_our_ecs_logging_records_python_ecs_logging_lines_and_old_records_all_ship(
    es: Elasticsearch, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path
) -> None:
    """Lines of celery-logs (the ecs-logging shape), of ecs-logging-python, and of the older nested shape are
    indexed, searchable by log.level, and build their task documents."""
    buf = io.StringIO()
    app = Celery("shapes", broker="memory://")
    celery_logs.install(app, service="shop", stream=buf)

    @app.task(name="shop.ok")
    def ok() -> int:
        return 1

    ours_task = ok.apply().id
    celery_logs.reset()
    app.close()
    (logs / "ours.jsonl").write_text(buf.getvalue())
    assert buf.getvalue().startswith('{"@timestamp":')
    (logs / "ecs_py.jsonl").write_text(_ecs_logging_python_lines())
    records.write(logs / "old.jsonl", 0, 5)
    _ship(es, tmp_path, index_prefix)

    hits = es.search(index=f"{index_prefix}-*", size=100)["hits"]["hits"]
    assert len(hits) == 2 + 2 + 5
    errors = es.search(index=f"{index_prefix}-*", query={"term": {"log.level": "error"}}, size=10)["hits"]["hits"]
    assert sorted(h["_source"]["message"] for h in errors) == ["handled", "task failed: shop.pay (KeyError)"]
    by_ecs = es.search(index=f"{index_prefix}-*", query={"term": {"ecs.version": "8.11.0"}}, size=0)
    assert by_ecs["hits"]["total"]["value"] == 2
    ours = es.get(index=tasks_index, id=ours_task)["_source"]
    assert (ours["name"], ours["end_action"], ours["outcome"], ours["service"]) == (
        "shop.ok", "task-succeeded", "success", "shop")
    theirs = es.get(index=tasks_index, id="ecs-py-task")["_source"]
    assert theirs == {"task_id": "ecs-py-task", "name": "shop.pay", "service": "shop",
                      "ended_at": theirs["ended_at"], "end_action": "task-failed", "state": "FAILURE",
                      "outcome": "failure", "grouping_key": "g" * 32}
    assert es.get(index=tasks_index, id="r-t0")["_source"]["name"] == "billing.charge"


def test_setup_maps_the_stack_trace_as_the_server_allows_and_says_which(
    es: Elasticsearch, es_url: str, index_prefix: str, tasks_index: str, engine: str
) -> None:
    """setup tries ECS's `wildcard` (with `.text`); this ES build lacks the type (text), OpenSearch has it."""
    from celery_logs import _schema
    from tests.ship.helpers import run_cli

    wanted = _schema.index_template(prefix=index_prefix, wildcard=True)["template"]["mappings"]
    ecs = {"type": "wildcard", "fields": {"text": {"type": "match_only_text"}}}
    assert wanted["properties"]["error"]["properties"]["stack_trace"] == ecs
    used = "wildcard" if engine == "opensearch" else "text"
    result = install(es, index_prefix=index_prefix, tasks_index=tasks_index)
    assert result.stack_trace_type == used
    template = es.indices.get_index_template(name=index_prefix)["index_templates"][0]["index_template"]
    assert template["template"]["mappings"]["properties"]["error"]["properties"]["stack_trace"] == (
        ecs if used == "wildcard" else {"type": "text"})
    proc = run_cli([sys.executable, "-m", "pipelines.cli", "setup", "--es", es_url, "--index-prefix", index_prefix,
                    "--tasks-index", tasks_index])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (f"index template {index_prefix} installed for {index_prefix}-* (error.stack_trace as "
                           f"{used}); entity index {tasks_index} up to date\n"
                           "replicas 0 (default for 1 data node; choose with --replicas), shards 1\n")
