"""The synthetic histories are schema-true, deterministic and load into the real cluster."""

from __future__ import annotations

from elasticsearch import Elasticsearch

from celery_logs import _schema
from pipelines.dev import synth as _synth


def _walk(prefix: str, node: object) -> set[str]:
    if not isinstance(node, dict):
        return {prefix}
    out: set[str] = set()
    for k, v in node.items():
        out |= _walk(f"{prefix}.{k}" if prefix else k, v)
    return out


def test_records_use_only_schema_fields() -> None:
    """Every generated field is declared in the schema (labels.* aside)."""
    hist = _synth.generate(tasks=300, seed=1)
    fields = set().union(*(_walk("", r) for r in hist.records))
    assert {f for f in fields if not f.startswith("labels.")} <= set(_schema.FIELDS_BY_NAME)


def test_same_seed_same_history() -> None:
    """Generation is deterministic for a seed."""
    a = _synth.generate(tasks=50, seed=3)
    b = _synth.generate(tasks=50, seed=3)
    assert a.records == b.records


def test_loads_into_elasticsearch_with_exact_counts(es: Elasticsearch, index_prefix: str) -> None:
    """Loaded records and entity documents match what was generated."""
    hist = _synth.generate(tasks=200, seed=5, lost_tasks=2)
    tasks_index = f"{index_prefix}-entity"
    _synth.load(es, hist, prefix=index_prefix, tasks_index=tasks_index)
    assert es.count(index=f"{index_prefix}-2*")["count"] == len(hist.records)
    assert es.count(index=tasks_index)["count"] == 202
    failed = sum(1 for t in hist.tasks if t.outcome == "failure")
    assert es.count(index=f"{index_prefix}-2*", query={"term": {"event.action": "task-failed"}})["count"] == failed
    open_tasks = es.count(index=tasks_index, query={"bool": {"must_not": {"exists": {"field": "ended_at"}}}})
    assert open_tasks["count"] == 2
