"""The schema module generates consistent mappings and docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from celery_logs import _schema

ROOT = Path(__file__).resolve().parents[2]


def test_docs_schema_md_is_current() -> None:
    """docs/schema.md is exactly what the schema module renders."""
    assert (ROOT / "docs" / "schema.md").read_text(encoding="utf-8") == _schema.render_markdown()


def test_field_names_are_unique_and_types_known() -> None:
    """No field is declared twice and every type is one the server-core build supports."""
    names = [f.name for f in _schema.FIELDS]
    assert len(names) == len(set(names))
    assert {f.type for f in _schema.FIELDS} <= {"keyword", "text", "date", "long", "integer", "boolean", "float"}


def test_task_field_sources_name_declared_fields() -> None:
    """Every entity field the table writes is declared, and every source is a record field."""
    entity = {f.name for f in _schema.TASK_FIELDS}
    for action, mapping in _schema.TASK_FIELD_SOURCES.items():
        assert action == "*" or action in _schema.ACTIONS
        for target, source in mapping.items():
            assert target in entity, target
            assert source in _schema.FIELDS_BY_NAME, source


@pytest.mark.parametrize(
    ("timestamp", "index"),
    [("2026-11-22T23:59:59.999999Z", "p-2026.11.22"), ("2027-01-01T00:00:00.000000Z", "p-2027.01.01")],
)
def test_daily_index_from_record_timestamp(timestamp: str, index: str) -> None:
    """A record's index comes from its own UTC date."""
    assert _schema.daily_index("p", timestamp) == index


def test_daily_index_rejects_garbage() -> None:
    """A value that is not an ISO date is refused with the value named."""
    with pytest.raises(ValueError, match="not an ISO-8601 timestamp: 'yesterday'"):
        _schema.daily_index("p", "yesterday")


def test_task_entity_update_takes_only_the_actions_fields() -> None:
    """A failed record writes identity, end and error fields, nothing of other actions, nothing absent."""
    record = {
        "@timestamp": "2026-11-22T10:00:01.000000Z",
        "event": {"action": "task-failed", "outcome": "failure", "duration": 132_000_000},
        "celery": {
            "task": {"id": "t1", "name": "billing.charge", "root_id": "t1", "state": "FAILURE"},
            "worker": "celery@h",
            "queue": "default",
        },
        "error": {"type": "builtins.KeyError", "grouping_key": "abc"},
        "service": {"name": "billing"},
    }
    assert _schema.task_entity_update(record) == (
        "t1",
        {
            "task_id": "t1",
            "name": "billing.charge",
            "root_id": "t1",
            "service": "billing",
            "ended_at": "2026-11-22T10:00:01.000000Z",
            "end_action": "task-failed",
            "state": "FAILURE",
            "outcome": "failure",
            "duration": 132_000_000,
            "error_type": "builtins.KeyError",
            "grouping_key": "abc",
        },
    )


def test_task_entity_update_ignores_worker_and_app_records() -> None:
    """Worker heartbeats and the user's own lines do not touch the entity index."""
    assert _schema.task_entity_update({"event": {"action": "worker-heartbeat"}}) is None
    assert _schema.task_entity_update({"event": {"dataset": "celery.app"}, "celery": {"task": {"id": "t"}}}) is None
