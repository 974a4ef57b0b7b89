"""`celery-logs kibana import --rules` against the local stand-in that checks Kibana's alerting API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from celery_logs import _schema
from pipelines._setup import install
from pipelines.alerting import RULES, AlertSettings, elastalert_only, kibana_rules, rule_by_id
from pipelines.cli import main
from tests.alerting.histories import aligned_start, build
from tests.kibana.fake_kibana import FakeKibana, running

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

LOST = "celery-logs-lost-tasks"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection settings leak in from the developer's environment."""
    for name in (
        "CELERY_LOGS_KIBANA_URL", "CELERY_LOGS_KIBANA_SPACE", "CELERY_LOGS_KIBANA_API_KEY",
        "CELERY_LOGS_KIBANA_USERNAME", "CELERY_LOGS_KIBANA_PASSWORD", "CELERY_LOGS_KIBANA_CA_CERTS",
        "CELERY_LOGS_ES_API_KEY", "CELERY_LOGS_ES_USERNAME", "CELERY_LOGS_ES_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def kibana() -> Iterator[FakeKibana]:
    with running(FakeKibana()) as server:
        yield server


def test_rules_are_created_then_updated_in_place(kibana: FakeKibana, capsys: pytest.CaptureFixture[str]) -> None:
    """The first import creates the lost-task rule by id; the second updates the same rule (idempotent)."""
    assert main(["kibana", "import", "--rules", "--kibana", kibana.url]) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0] == f"created      rule {LOST}  Celery: lost tasks"
    assert first[-1] == f"Kibana at {kibana.url}: rules 1 created, 0 updated, 6 ElastAlert only"
    assert set(kibana.rules["default"]) == {LOST}
    stored = kibana.rules["default"][LOST]
    assert (stored["rule_type_id"], stored["consumer"], stored["enabled"]) == (".es-query", "stackAlerts", True)
    assert main(["kibana", "import", "--rules", "--kibana", kibana.url]) == 0
    second = capsys.readouterr().out.splitlines()
    assert second[0] == f"updated      rule {LOST}  Celery: lost tasks"
    assert second[-1] == f"Kibana at {kibana.url}: rules 0 created, 1 updated, 6 ElastAlert only"
    assert set(kibana.rules["default"]) == {LOST}
    assert kibana.rules["default"][LOST]["revision"] == 1


def test_rule_requests_are_what_kibanas_api_defines(kibana: FakeKibana) -> None:
    """GET by id, then POST the create body (JSON, kbn-xsrf); then GET and PUT the update body."""
    assert main(["kibana", "import", "--rules", "--kibana", kibana.url]) == 0
    assert main(["kibana", "import", "--rules", "--kibana", kibana.url]) == 0
    path = f"/api/alerting/rule/{LOST}"
    calls = [(r.method, r.path) for r in kibana.requests]
    assert calls == [("GET", path), ("POST", path), ("GET", path), ("PUT", path)]
    (rule,) = kibana_rules()
    post, put = kibana.requests[1], kibana.requests[3]
    for req in (post, put):
        assert req.headers["kbn-xsrf"] and req.headers["content-type"] == "application/json"
    assert json.loads(post.body) == rule.create
    assert json.loads(put.body) == rule.update
    params = rule.create["params"]
    assert json.loads(params["esQuery"]) == {"query": {"bool": {"filter": list(rule_by_id(LOST).filter)}}}
    where = (params["index"], params["timeField"], params["termField"])
    assert where == (["celery-tasks"], "lost_detected_at", "name")
    assert (params["threshold"], params["thresholdComparator"], params["timeWindowSize"]) == ([0], ">", 15)


def test_dry_run_only_reads(kibana: FakeKibana, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run makes only GETs and says what would change; nothing is stored."""
    assert main(["kibana", "import", "--rules", "--dry-run", "--kibana", kibana.url]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"would create rule {LOST}  Celery: lost tasks"
    assert out[-1] == f"Kibana at {kibana.url}: rules 1 would create, 0 would update, 6 ElastAlert only"
    assert [r.method for r in kibana.requests] == ["GET"]
    assert kibana.rules.get("default", {}) == {}
    assert main(["kibana", "import", "--rules", "--kibana", kibana.url]) == 0
    stored = json.dumps(kibana.rules["default"][LOST], sort_keys=True)
    assert main(["kibana", "import", "--rules", "--dry-run", "--kibana", kibana.url]) == 0
    assert capsys.readouterr().out.splitlines()[-2 - len(elastalert_only())].startswith("would update")
    assert json.dumps(kibana.rules["default"][LOST], sort_keys=True) == stored


def test_an_update_keeps_the_connectors_users_added(kibana: FakeKibana) -> None:
    """Actions added in Kibana survive a re-import (Kibana's answer adds connector_type_id; it is not sent back)."""
    assert main(["kibana", "import", "--rules", "--kibana", kibana.url]) == 0
    action = {"group": "query matched", "id": "slack-ops", "params": {"message": "{{context.message}}"}}
    kibana.rules["default"][LOST]["actions"] = [{**action, "connector_type_id": ".slack"}]
    assert main(["kibana", "import", "--rules", "--kibana", kibana.url]) == 0
    assert json.loads(kibana.requests[-1].body)["actions"] == [action]
    assert kibana.rules["default"][LOST]["actions"] == [{**action, "connector_type_id": ".webhook"}]


def test_rules_in_a_space_with_settings(kibana: FakeKibana, monkeypatch: pytest.MonkeyPatch) -> None:
    """--space puts the rule under /s/<space>; --tasks-index, --window and --run-every reach the body."""
    kibana.spaces.add("ops")
    kibana.authorization = "ApiKey a2V5OnNlY3JldA=="
    monkeypatch.setenv("CELERY_LOGS_KIBANA_API_KEY", "a2V5OnNlY3JldA==")
    argv = ["kibana", "import", "--rules", "--kibana", kibana.url, "--space", "ops", "--tasks-index", "prod-tasks",
            "--window", "30", "--run-every", "5"]  # fmt: skip
    assert main(argv) == 0
    rule = kibana.rules["ops"][LOST]
    assert (rule["params"]["index"], rule["params"]["timeWindowSize"]) == (["prod-tasks"], 30)
    assert rule["schedule"] == {"interval": "5m"}
    assert kibana.requests[-1].path == f"/s/ops/api/alerting/rule/{LOST}"


def test_wrong_combinations_are_one_line_usage_errors(kibana: FakeKibana, capsys: pytest.CaptureFixture[str]) -> None:
    """--dry-run without --rules, --rules with --file, and a window that is no multiple of run-every: exit 2."""
    assert main(["kibana", "import", "--dry-run", "--kibana", kibana.url]) == 2
    assert main(["kibana", "import", "--rules", "--file", "x.ndjson", "--kibana", kibana.url]) == 2
    assert main(["kibana", "import", "--rules", "--window", "7", "--run-every", "2", "--kibana", kibana.url]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "celery-logs kibana: --dry-run goes with --rules (an object import is already safe to repeat)",
        "celery-logs kibana: --rules imports the rules celery-logs makes: no --file or --no-overwrite",
        "celery-logs kibana: window (7 min) must be a multiple of run-every (2 min)",
    ]
    assert kibana.requests == []


def test_every_rule_is_in_kibana_or_says_why_not() -> None:
    """Only the lost-task rule means the same as an Elasticsearch query rule; the others carry a reason."""
    assert [r.id for r in kibana_rules(AlertSettings())] == [LOST]
    assert {i for i, _ in elastalert_only()} | {LOST} == {r.id for r in RULES}
    assert all(why for _, why in elastalert_only())


@pytest.mark.integration
def test_the_kibana_rules_query_counts_the_lost_tasks_on_the_real_node(es: Elasticsearch, index_prefix: str) -> None:
    """The search Kibana's .es-query rule sends (query, time window, terms per name) counts each name's lost tasks."""
    history = build(start=aligned_start(), breaches=True)
    tasks_index = f"{index_prefix}.tasks"
    (rule,) = kibana_rules(AlertSettings(tasks_index=tasks_index))
    params = rule.create["params"]
    try:
        install(es, index_prefix=index_prefix, tasks_index=tasks_index)
        if "lost_class" not in {f.name for f in _schema.TASK_FIELDS}:
            es.indices.put_mapping(index=tasks_index, body={"properties": {"lost_class": {"type": "keyword"}}})
        for doc in history.tasks:
            es.index(index=tasks_index, id=doc["task_id"], document=doc)
        es.indices.refresh(index=tasks_index)

        def groups(end: datetime) -> dict[str, int]:
            # What Kibana's executor sends: the rule's query, a range on timeField over the window, and a
            # terms aggregation on termField of termSize (x-pack/.../es_query/lib/fetch_es_query.ts).
            start = end - timedelta(minutes=params["timeWindowSize"])
            query = json.loads(params["esQuery"])["query"]
            window = {"range": {params["timeField"]: {"gte": start.isoformat(), "lte": end.isoformat(),
                                                      "format": "strict_date_optional_time"}}}  # fmt: skip
            terms = {"field": params["termField"], "size": params["termSize"]}
            body = {"query": {"bool": {"filter": [query, window]}}, "size": 0, "aggs": {"groupAgg": {"terms": terms}}}
            answer = es.search(index=params["index"], body=body)
            return {b["key"]: b["doc_count"] for b in answer["aggregations"]["groupAgg"]["buckets"]}

        at = history.start + timedelta(minutes=75)
        assert groups(at) == {"billing.charge": 3, "mail.send": 1}
        assert groups(history.start + timedelta(minutes=135)) == {"reports.build": 1}
        assert groups(history.start + timedelta(minutes=60)) == {}
    finally:
        es.options(ignore_status=404).indices.delete(index=tasks_index)
