"""The storage decisions of the generated mappings, pinned: which fields are indexed and which keep doc values.

Each exception to "indexed, with doc values" was measured (benchmarks/storage.py) and checked against every
query of pipelines/analytics and every Kibana object; changing one is a decision, so it must change here too.
"""

from __future__ import annotations

from typing import Any

from celery_logs import _schema


def _flatten(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, prop in properties.items():
        if "properties" in prop:
            out.update(_flatten(prop["properties"], f"{prefix}{name}."))
        elif "type" in prop:
            out[f"{prefix}{name}"] = prop
    return out


def _decisions(properties: dict[str, Any]) -> dict[str, tuple[bool, bool]]:
    """``field -> (indexed, doc values)`` for every field that is not both (text has no doc values)."""
    out = {}
    for name, prop in _flatten(properties).items():
        indexed = prop.get("index", True)
        doc_values = prop.get("doc_values", prop["type"] != "text")
        if not indexed or (not doc_values and prop["type"] != "text"):
            out[name] = (indexed, doc_values)
    return out


def test_record_fields_indexed_and_doc_values() -> None:
    """Records: event.id is the _id and _source only; ids only looked up have no doc values."""
    assert _decisions(_schema.record_mappings()["properties"]) == {
        # Lookups go by _id; search/timeline/--follow order ties within a millisecond from _source.
        "event.id": (False, False),
        # searched (search's default fields, the timeline's workflow filter), never aggregated or sorted.
        "trace.id": (True, False),
        "celery.task.root_id": (True, False),
        "celery.task.parent_id": (True, False),
        "celery.task.group_id": (True, False),
        # _source only.
        "celery.task.args": (False, False),
        "celery.task.kwargs": (False, False),
        "celery.task.result": (False, False),
    }


def test_celery_task_id_stays_aggregatable() -> None:
    """The timeline aggregates (terms, cardinality) and filters on celery.task.id: both stay."""
    prop = _flatten(_schema.record_mappings()["properties"])["celery.task.id"]
    assert (prop.get("index", True), prop.get("doc_values", True)) == (True, True)


def test_entity_fields_indexed_and_doc_values() -> None:
    """Entity index: the _id serves task_id lookups; shown-only fields are _source; exists-only ones doc values."""
    assert _decisions(_schema.tasks_index_body()["mappings"]["properties"]) == {
        "task_id": (False, False),
        "root_id": (False, False),
        "parent_id": (False, False),
        "published_at": (False, False),
        # exists (in flight, not started), max (latest success), Kibana's column sort: doc values do all.
        "started_at": (False, True),
        "ended_at": (False, True),
        # range only (a periodic run that waited past the stuck bound), never aggregated.
        "queue_wait": (True, False),
        "retried_at": (False, False),
        "duration": (False, False),
        "retries": (False, False),
    }


def test_index_settings_compress_without_sorting() -> None:
    """Both indices use best_compression; no index sorting (measured larger, and slower to write)."""
    records = _schema.index_template()["template"]["settings"]["index"]
    assert records["codec"] == "best_compression"
    assert "sort" not in records
    assert _schema.tasks_index_body()["settings"]["index"]["codec"] == "best_compression"
