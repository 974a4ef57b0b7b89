"""Lost-task detection: exactly the tasks in flight on a worker that went away, and marking them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from elasticsearch import Elasticsearch

from celery_logs import _schema
from pipelines.analytics.lost import (
    REASON_CHILD_DIED,
    REASON_OFFLINE,
    REASON_RESTARTED,
    REASON_SILENT,
    find_lost_tasks,
    mark_lost_tasks,
)
from pipelines.dev import synth as _synth

from .conftest import START, WINDOW, Loaded

pytestmark = pytest.mark.integration

KILLED = "celery@worker-3"


def test_finds_exactly_the_lost_tasks(loaded: Loaded) -> None:
    """At the window's end the two tasks on the killed worker and the one whose child died are lost, nothing else."""
    lost = find_lost_tasks(
        loaded.es,
        prefix=loaded.prefix,
        tasks_index=loaded.tasks_index,
        now=WINDOW.end,
        heartbeat_timeout=timedelta(minutes=5),
    )
    truth = sorted((t for t in loaded.current.tasks if t.lost), key=lambda t: t.started_at or START)
    assert [t.task_id for t in lost] == [t.task_id for t in truth]
    assert [t.name for t in lost] == [t.name for t in truth]
    reasons = {t.task_id: (t.reason, t.worker) for t in lost}
    for t in truth:
        want = (REASON_CHILD_DIED, "celery@worker-1") if t.outcome == "failure" else (REASON_SILENT, KILLED)
        assert reasons[t.task_id] == want


def test_not_lost_while_the_worker_is_recent(loaded: Loaded) -> None:
    """A minute after the kill, within the heartbeat timeout, only the task whose child died is lost."""
    killed_at = loaded.current.workers_gone[KILLED]
    lost = find_lost_tasks(
        loaded.es,
        prefix=loaded.prefix,
        tasks_index=loaded.tasks_index,
        now=killed_at + timedelta(minutes=1),
        heartbeat_timeout=timedelta(minutes=5),
    )
    assert [(t.task_id, t.reason) for t in lost] == [
        (t.task_id, REASON_CHILD_DIED) for t in loaded.current.tasks if t.lost and t.outcome == "failure"
    ]


@pytest.fixture
def small(es: Elasticsearch, index_prefix: str) -> Iterator[tuple[_synth.SynthHistory, str]]:
    """A small history of its own, for tests that write to the entity index."""
    hist = _synth.generate(tasks=40, seed=3, start=START, lost_tasks=2, worker_lost_tasks=1)
    # Outside the record pattern, as in production: OpenSearch would apply the record template to it too.
    tasks_index = f"{index_prefix}.entity"
    _synth.load(es, hist, prefix=index_prefix, tasks_index=tasks_index)
    yield hist, tasks_index
    es.options(ignore_status=404).indices.delete(index=tasks_index)


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
    on_killed = [t for t in lost if t.worker == KILLED]
    assert sorted(t.task_id for t in on_killed) == sorted(
        t.task_id for t in hist.tasks if t.lost and t.worker == KILLED
    )
    assert {t.reason for t in on_killed} == {reason}


def test_a_restart_then_a_shutdown_then_a_restart_is_judged_by_the_first_restart(
    es: Elasticsearch, index_prefix: str, small: tuple[_synth.SynthHistory, str]
) -> None:
    """Killed and restarted, then shut down by a deploy and started again: the first restart lost the tasks."""
    hist, tasks_index = small
    killed_at = hist.workers_gone[KILLED]
    times: dict[str, list[str]] = {"worker-online": [], "worker-offline": []}
    for seconds, action in ((20, "worker-online"), (40, "worker-offline"), (50, "worker-online")):
        when = _synth._ts(killed_at + timedelta(seconds=seconds))
        times[action].append(when)
        es.index(index=_schema.daily_index(index_prefix, when), document=_worker_record(action, when))
    es.indices.refresh(index=f"{index_prefix}-*")
    lost = find_lost_tasks(
        es, prefix=index_prefix, tasks_index=tasks_index, now=killed_at + timedelta(minutes=1),
        heartbeat_timeout=timedelta(minutes=5),
    )  # fmt: skip
    on_killed = [t for t in lost if t.worker == KILLED]
    assert sorted(t.task_id for t in on_killed) == sorted(
        t.task_id for t in hist.tasks if t.lost and t.worker == KILLED
    )
    first_restart = datetime.fromisoformat(times["worker-online"][0])
    assert {(t.reason, t.worker_gone_at) for t in on_killed} == {(REASON_RESTARTED, first_restart)}


def test_mark_is_idempotent_and_clears_tasks_that_ended(
    es: Elasticsearch, index_prefix: str, small: tuple[_synth.SynthHistory, str]
) -> None:
    """Marking writes lost:true once; a silent task that later ends is cleared back to lost:false."""
    hist, tasks_index = small
    now = START + timedelta(hours=6)
    first = mark_lost_tasks(es, prefix=index_prefix, tasks_index=tasks_index, now=now, refresh=True)
    assert (first.newly_marked, first.cleared) == (3, 0)
    marked = es.search(index=tasks_index, query={"term": {"lost": True}}, size=10)["hits"]["hits"]
    assert sorted(h["_id"] for h in marked) == sorted(t.task_id for t in hist.tasks if t.lost)
    assert sorted(h["_source"]["lost_reason"] for h in marked) == [REASON_SILENT, REASON_SILENT, REASON_CHILD_DIED]
    assert {h["_source"]["lost_detected_at"] for h in marked} == {"2026-11-22T12:00:00.000Z"}

    again = mark_lost_tasks(es, prefix=index_prefix, tasks_index=tasks_index, now=now, refresh=True)
    assert (again.newly_marked, again.cleared, len(again.lost)) == (0, 0, 3)

    # A silent task that ends after all is cleared; the one whose child died stays lost although ended.
    late = next(h["_id"] for h in marked if h["_source"]["lost_reason"] == REASON_SILENT)
    es.update(index=tasks_index, id=late, doc={"ended_at": "2026-11-22T12:00:01.000Z"}, refresh=True)
    third = mark_lost_tasks(es, prefix=index_prefix, tasks_index=tasks_index, now=now, refresh=True)
    assert (third.newly_marked, third.cleared, len(third.lost)) == (0, 1, 2)
    assert es.get(index=tasks_index, id=late)["_source"]["lost"] is False
    assert es.count(index=tasks_index, query={"term": {"lost": True}})["count"] == 2


@pytest.mark.parametrize(
    ("offline", "online", "last", "expected"),
    [
        (90, None, 90, REASON_OFFLINE),  # said goodbye after the task arrived
        (None, 90, 95, REASON_RESTARTED),  # came back: it forgot the task
        (None, None, 200, REASON_SILENT),  # last record 200 s before now, timeout 60 s
        (None, None, 30, ""),  # beating recently: still running
        (10, 5, 30, ""),  # offline and online before the task arrived: that was an earlier life
        (120, 90, 200, REASON_RESTARTED),  # restarted, then shut down: the restart lost it
        (90, 120, 100, REASON_OFFLINE),  # shut down, then started again: the shutdown lost it
    ],
)
def test_reason_rules(offline: int | None, online: int | None, last: int, expected: str) -> None:
    """The three rules, each judged against the time the task reached its worker; the first event after it wins."""
    from datetime import datetime, timezone

    from pipelines.analytics.lost import WorkerSeen, _reason

    base = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    now = base + timedelta(seconds=300)
    since = base + timedelta(seconds=60)

    def at(seconds: int | None) -> datetime | None:
        return None if seconds is None else base + timedelta(seconds=seconds)

    # ``last`` is counted back from now, the other two forward from base.
    seen = WorkerSeen(
        worker=KILLED, last_record=now - timedelta(seconds=last), last_online=at(online), last_offline=at(offline)
    )
    assert _reason(since, seen, now, timedelta(seconds=60))[0] == expected


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        ([(90, "worker-online"), (120, "worker-offline"), (150, "worker-online")], (REASON_RESTARTED, 90)),
        ([(30, "worker-online"), (90, "worker-offline"), (150, "worker-online")], (REASON_OFFLINE, 90)),
        ([(60, "worker-online"), (70, "worker-offline")], (REASON_OFFLINE, 70)),  # online at `since`: its start
        ([(60, "worker-offline"), (70, "worker-online")], (REASON_OFFLINE, 60)),
    ],
)
def test_the_first_departure_after_the_task_arrived_wins(
    events: list[tuple[int, str]], expected: tuple[str, int]
) -> None:
    """With every online and offline known, the first after the task arrived decides, not the last of each kind."""
    from datetime import datetime, timezone

    from pipelines.analytics.lost import WorkerSeen, _reason

    base = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    since, now = base + timedelta(seconds=60), base + timedelta(seconds=300)
    comings = tuple((base + timedelta(seconds=s), a) for s, a in events)
    seen = WorkerSeen(
        worker=KILLED, last_record=now, comings_and_goings=comings,
        last_online=max(t for t, a in comings if a == "worker-online"),
        last_offline=max(t for t, a in comings if a == "worker-offline"),
    )  # fmt: skip
    assert _reason(since, seen, now, timedelta(seconds=60)) == (expected[0], base + timedelta(seconds=expected[1]))


@pytest.mark.parametrize(
    ("interval", "shutting_down", "silent", "expected"),
    [
        (5.0, False, 12.0, ""),  # 2 beats of 5 s and the 3 s grace: not yet
        (5.0, False, 14.0, "heartbeat-timeout"),
        (1.0, True, 4.0, ""),  # shutting down: it writes every second
        (1.0, True, 6.0, "killed-while-shutting-down"),
        (None, False, 200.0, ""),  # announced nothing: judged against the 5-minute fallback
        (None, False, 301.0, "heartbeat-timeout"),
    ],
)
def test_silence_is_judged_against_the_announced_interval(
    interval: float | None, shutting_down: bool, silent: float, expected: str
) -> None:
    """A worker is taken for gone after 2 of its own intervals plus the grace, not after a fixed 5 minutes."""
    from datetime import datetime, timezone

    from pipelines.analytics.lost import WorkerSeen, _reason

    now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    online = now - timedelta(minutes=30)
    seen = WorkerSeen(
        worker=KILLED, last_record=now - timedelta(seconds=silent), last_online=online, last_offline=None,
        last_shutting_down=now - timedelta(seconds=silent) if shutting_down else None, interval=interval,
    )  # fmt: skip
    assert _reason(online + timedelta(minutes=1), seen, now, timedelta(minutes=5))[0] == expected


@pytest.mark.parametrize(
    ("reason", "started", "acks_late", "expected"),
    [
        ("worker-offline", True, False, "lost"),  # cold shutdown: acked at the start, terminated
        ("worker-offline", False, False, "requeued"),  # prefetched, given back on the warm shutdown
        ("worker-offline", True, True, "requeued"),  # unacked: the closed connection gave it back
        ("killed-while-shutting-down", True, False, "lost"),
        ("killed-while-shutting-down", False, False, "redelivery-pending"),  # left in Redis's unacked set
        ("heartbeat-timeout", True, True, "redelivery-pending"),  # acks_late: the broker has it still
        ("worker-restarted", False, False, "redelivery-pending"),
        ("worker-lost-error", True, True, "lost"),
    ],
)
def test_classes(reason: str, started: bool, acks_late: bool, expected: str) -> None:
    """Started with early acks is lost; unacknowledged is requeued when the worker closed its connection,
    else pending redelivery."""
    from pipelines.analytics.lost import classify

    assert classify(reason, started=started, acks_late=acks_late) == expected


def test_offline_waits_for_the_childrens_records() -> None:
    """A worker-offline younger than the grace decides nothing yet: its children's last records may still be
    on their way; after the grace it does."""
    from datetime import datetime, timezone

    from pipelines.analytics.lost import SILENCE_GRACE, WorkerSeen, _reason

    now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    since = now - timedelta(minutes=1)
    offline = now - timedelta(seconds=1)
    seen = WorkerSeen(worker=KILLED, last_record=offline, last_online=since - timedelta(minutes=1),
                      last_offline=offline, interval=5.0)  # fmt: skip
    assert _reason(since, seen, now, timedelta(minutes=5)) == ("", None)
    assert _reason(since, seen, offline + SILENCE_GRACE, timedelta(minutes=5)) == ("worker-offline", offline)
