"""Lost-task detection: exactly the tasks in flight on a worker that went away, and marking them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from elasticsearch import Elasticsearch

from celery_logs import _schema
from pipelines import _synth
from pipelines._lost import (
    REASON_OFFLINE,
    REASON_RESTARTED,
    REASON_SILENT,
    find_lost_tasks,
    mark_lost_tasks,
)

from .conftest import START, WINDOW, Loaded

pytestmark = pytest.mark.integration

KILLED = "celery@worker-3"


def test_finds_exactly_the_lost_tasks(loaded: Loaded) -> None:
    """At the window's end the two tasks started on the killed worker are lost, and nothing else."""
    lost = find_lost_tasks(
        loaded.es,
        prefix=loaded.prefix,
        tasks_index=loaded.tasks_index,
        now=WINDOW.end,
        heartbeat_timeout=timedelta(minutes=5),
    )
    truth = sorted((t for t in loaded.current.tasks if t.lost), key=lambda t: t.started_at or START)
    assert [t.task_id for t in lost] == [t.task_id for t in truth]
    assert {t.reason for t in lost} == {REASON_SILENT}
    assert {t.worker for t in lost} == {KILLED}
    assert [t.name for t in lost] == [t.name for t in truth]


def test_not_lost_while_the_worker_is_recent(loaded: Loaded) -> None:
    """A minute after the kill, within the heartbeat timeout, nothing is lost yet."""
    killed_at = loaded.current.workers_gone[KILLED]
    lost = find_lost_tasks(
        loaded.es,
        prefix=loaded.prefix,
        tasks_index=loaded.tasks_index,
        now=killed_at + timedelta(minutes=1),
        heartbeat_timeout=timedelta(minutes=5),
    )
    assert lost == []


@pytest.fixture
def small(es: Elasticsearch, index_prefix: str) -> tuple[_synth.SynthHistory, str]:
    """A small history of its own, for tests that write to the entity index."""
    hist = _synth.generate(tasks=40, seed=3, start=START, lost_tasks=2)
    tasks_index = f"{index_prefix}-entity"
    _synth.load(es, hist, prefix=index_prefix, tasks_index=tasks_index)
    return hist, tasks_index


def _worker_record(action: str, when: str) -> dict[str, object]:
    return {
        "@timestamp": when,
        "message": f"{action}: {KILLED}",
        "event": {"id": f"test-{action}-{when}", "kind": "event", "dataset": "celery.worker", "action": action},
        "celery": {"worker": KILLED},
    }


@pytest.mark.parametrize(
    ("action", "reason"), [("worker-online", REASON_RESTARTED), ("worker-offline", REASON_OFFLINE)]
)
def test_restart_and_offline_reasons(
    es: Elasticsearch, index_prefix: str, small: tuple[_synth.SynthHistory, str], action: str, reason: str
) -> None:
    """A worker that came back online, or said goodbye, after the task arrived has lost it, at once."""
    hist, tasks_index = small
    killed_at = hist.workers_gone[KILLED]
    when = _synth._ts(killed_at + timedelta(seconds=30))
    es.index(index=_schema.daily_index(index_prefix, when), document=_worker_record(action, when), refresh=True)
    lost = find_lost_tasks(
        es,
        prefix=index_prefix,
        tasks_index=tasks_index,
        now=killed_at + timedelta(minutes=1),
        heartbeat_timeout=timedelta(minutes=5),
    )
    assert sorted(t.task_id for t in lost) == sorted(t.task_id for t in hist.tasks if t.lost)
    assert {t.reason for t in lost} == {reason}


def test_mark_is_idempotent_and_clears_tasks_that_ended(
    es: Elasticsearch, index_prefix: str, small: tuple[_synth.SynthHistory, str]
) -> None:
    """Marking writes lost:true once; a marked task that later ends is cleared back to lost:false."""
    hist, tasks_index = small
    now = START + timedelta(hours=6)
    first = mark_lost_tasks(es, prefix=index_prefix, tasks_index=tasks_index, now=now, refresh=True)
    assert (first.newly_marked, first.cleared) == (2, 0)
    marked = es.search(index=tasks_index, query={"term": {"lost": True}}, size=10)["hits"]["hits"]
    assert sorted(h["_id"] for h in marked) == sorted(t.task_id for t in hist.tasks if t.lost)
    assert {h["_source"]["lost_reason"] for h in marked} == {REASON_SILENT}
    assert {h["_source"]["lost_detected_at"] for h in marked} == {"2026-11-22T12:00:00.000Z"}

    again = mark_lost_tasks(es, prefix=index_prefix, tasks_index=tasks_index, now=now, refresh=True)
    assert (again.newly_marked, again.cleared, len(again.lost)) == (0, 0, 2)

    late = marked[0]["_id"]
    es.update(index=tasks_index, id=late, doc={"ended_at": "2026-11-22T12:00:01.000Z"}, refresh=True)
    third = mark_lost_tasks(es, prefix=index_prefix, tasks_index=tasks_index, now=now, refresh=True)
    assert (third.newly_marked, third.cleared, len(third.lost)) == (0, 1, 1)
    assert es.get(index=tasks_index, id=late)["_source"]["lost"] is False
    assert es.count(index=tasks_index, query={"term": {"lost": True}})["count"] == 1
