"""`prune` and the entity index: a task's document goes when every record of the task is in a deleted day."""

from __future__ import annotations

import sys
from datetime import date, datetime, timedelta, timezone
from typing import Any

from elasticsearch import Elasticsearch

from celery_logs._schema import task_entity_update
from pipelines import install
from pipelines._prune import RECORD_TIMES, delete_tasks, is_stale, prune_tasks, stale_tasks
from tests.ship.helpers import run_cli

TODAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
OLD = TODAY - timedelta(days=40)
CUTOFF = (TODAY - timedelta(days=30)).date()


def _at(day: datetime, seconds: int = 0) -> str:
    return (day + timedelta(hours=6, seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def _record(task_id: str, action: str, when: str, **celery: Any) -> dict[str, Any]:
    return {
        "@timestamp": when,
        "event": {"action": action, "outcome": "success" if action == "task-succeeded" else "unknown"},
        "service": {"name": "shop"},
        "celery": {"task": {"id": task_id, "name": "shop.work", "state": "SUCCESS"}, "worker": "celery@w1",
                   "queue": "celery", **celery},
    }  # fmt: skip


#: task id -> its records, and whether `prune --keep 30d` must delete its entity document.
HISTORIES: dict[str, tuple[list[dict[str, Any]], bool]] = {
    "old-done": ([_record("old-done", a, _at(OLD, i)) for i, a in enumerate(
        ("task-published", "task-received", "task-started", "task-succeeded"))], True),
    # published_at is neither indexed nor given doc values: only its _source tells its age.
    "old-published-only": ([_record("old-published-only", "task-published", _at(OLD))], True),
    "old-beat": ([_record("old-beat", "beat-sent", _at(OLD), beat={"entry": "nightly", "next_due": _at(TODAY)})], True),
    "spans-the-cutoff": ([_record("spans-the-cutoff", "task-received", _at(OLD)),
                          _record("spans-the-cutoff", "task-succeeded", _at(TODAY))], False),
    "retried-recently": ([_record("retried-recently", "task-received", _at(OLD)),
                          _record("retried-recently", "task-retried", _at(TODAY))], False),
    "published-old-received-now": ([_record("published-old-received-now", "task-published", _at(OLD)),
                                    _record("published-old-received-now", "task-received", _at(TODAY))], False),
    "new": ([_record("new", "task-received", _at(TODAY))], False),
}  # fmt: skip


def _load(es: Elasticsearch, index_prefix: str, tasks_index: str) -> None:
    install(es, index_prefix=index_prefix, tasks_index=tasks_index, replicas=0)
    operations: list[dict[str, Any]] = []
    for records, _ in HISTORIES.values():
        for rec in records:
            upd = task_entity_update(rec)
            assert upd is not None
            operations += [{"update": {"_index": tasks_index, "_id": upd[0]}}, {"doc": upd[1], "doc_as_upsert": True}]
    # A lost mark is detection's time, not a record's: it does not keep an old task.
    operations += [{"update": {"_index": tasks_index, "_id": "old-done"}},
                   {"doc": {"lost_detected_at": _at(TODAY)}}]  # fmt: skip
    resp = es.bulk(operations=operations, refresh=True)
    assert not resp["errors"], resp


def _ids(es: Elasticsearch, tasks_index: str) -> set[str]:
    es.indices.refresh(index=tasks_index)
    return {h["_id"] for h in es.search(index=tasks_index, size=100, query={"match_all": {}})["hits"]["hits"]}


def test_record_times_are_the_fields_fed_from_timestamp() -> None:
    """The times that decide a task's age are exactly the entity fields a record's @timestamp writes."""
    assert RECORD_TIMES == ("ended_at", "published_at", "received_at", "retried_at", "sent_at", "started_at")


def test_is_stale_needs_every_record_time_before_the_cutoff() -> None:
    """Stale: at least one record time, all before the cutoff; an unreadable time keeps the document."""
    cutoff = datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert is_stale({"received_at": "2026-10-31T23:59:59.999999Z", "ended_at": "2026-10-31T10:00:00Z"}, cutoff)
    assert is_stale({"published_at": 1793491199000}, cutoff)  # epoch millis, 2026-10-31T23:59:59Z
    assert not is_stale({"received_at": "2026-10-31T10:00:00Z", "ended_at": "2026-11-01T00:00:00.000000Z"}, cutoff)
    assert not is_stale({"received_at": "2026-10-31T10:00:00Z", "retried_at": "yesterday"}, cutoff)
    assert not is_stale({"lost_detected_at": "2026-10-01T00:00:00Z"}, cutoff)
    assert not is_stale({}, cutoff)


def test_prune_deletes_the_entity_documents_of_tasks_whose_records_all_go(
    es: Elasticsearch, es_url: str, index_prefix: str, tasks_index: str
) -> None:
    """`prune --keep 30d` names the count, deletes exactly the old tasks' documents with --apply, keeps the rest."""
    _load(es, index_prefix, tasks_index)
    base = [sys.executable, "-m", "pipelines.cli", "prune", "--es", es_url, "--index-prefix", index_prefix,
            "--tasks-index", tasks_index, "--keep", "30d"]  # fmt: skip
    line = f"entity index {tasks_index}: 3 task documents %s (every record of the task before {CUTOFF.isoformat()})"
    dry = run_cli(base)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0] == line % "to delete"
    assert _ids(es, tasks_index) == set(HISTORIES)
    applied = run_cli([*base, "--apply"])
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines()[0] == line % "deleted"
    assert _ids(es, tasks_index) == {tid for tid, (_, stale) in HISTORIES.items() if not stale}
    again = run_cli([*base, "--apply"])
    assert again.stdout.splitlines()[0] == line.replace("3 task", "0 task") % "deleted"


def test_a_document_written_again_while_pruning_is_kept(
    es: Elasticsearch, index_prefix: str, tasks_index: str
) -> None:
    """A late record between the scan and the delete wins: the delete is refused at the old version."""
    _load(es, index_prefix, tasks_index)
    found = sorted(stale_tasks(es, tasks_index=tasks_index, cutoff=CUTOFF), key=lambda t: t.id)
    assert [t.id for t in found] == ["old-beat", "old-done", "old-published-only"]
    late = _record("old-published-only", "task-received", _at(TODAY))
    tid, doc = task_entity_update(late)  # type: ignore[misc]
    es.update(index=tasks_index, id=tid, doc=doc, refresh=True)
    assert delete_tasks(es, tasks_index=tasks_index, tasks=found) == (2, 1)
    assert _ids(es, tasks_index) == {tid for tid, (_, stale) in HISTORIES.items() if not stale} | {"old-published-only"}


def test_prune_leaves_the_entity_index_alone_when_told(
    es: Elasticsearch, es_url: str, index_prefix: str, tasks_index: str
) -> None:
    """--no-tasks-index keeps every task document; an entity index that does not exist is said so."""
    _load(es, index_prefix, tasks_index)
    base = [sys.executable, "-m", "pipelines.cli", "prune", "--es", es_url, "--index-prefix", index_prefix,
            "--keep", "30d", "--apply"]  # fmt: skip
    alone = run_cli([*base, "--no-tasks-index"])
    assert alone.returncode == 0, alone.stderr
    assert not alone.stdout.startswith("entity index")
    assert _ids(es, tasks_index) == set(HISTORIES)
    missing = run_cli([*base, "--tasks-index", f"{index_prefix}.nothing"])
    assert missing.stdout.splitlines()[0] == f"entity index {index_prefix}.nothing: does not exist, nothing to prune"
    result = prune_tasks(es, tasks_index=tasks_index, cutoff=date(2000, 1, 1))
    assert (result.stale, result.deleted, result.changed) == (0, 0, 0)
