"""Lost tasks: in flight on a worker that went away.

A task is *in flight* when its entity document (``celery-tasks``) has ``started_at`` or
``received_at`` and no ``ended_at``, and it is not waiting in the broker for a retry (a retry newer
than its last receipt or start). It is *lost* when the worker that holds it, after the task arrived:

- sent ``worker-offline`` (reason ``worker-offline``), or
- sent ``worker-online`` again, so it restarted and forgot it (``worker-restarted``), or
- has sent no record at all within ``heartbeat_timeout`` before ``now`` (``heartbeat-timeout``).

A task whose pool child died under it (killed, out of memory) is lost too, although it has ended: the
worker lives on and Celery's parent process fails it with ``WorkerLostError`` (``worker-lost-error``).

Both questions are answered by queries, not by reading records: in-flight tasks come from the entity
index (few at any time), and each of their workers' last online / offline / any-record times from one
aggregation over the record indices (workers are few too).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final

from celery_logs import _schema
from pipelines.analytics.query import check_shards, record_indices
from pipelines.analytics.timeparse import iso

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: A child of the shipper's logger: the sweeper runs inside `celery-logs ship`.
_log = logging.getLogger("celery_logs.shipper.lost")

REASON_OFFLINE: Final = "worker-offline"
REASON_RESTARTED: Final = "worker-restarted"
REASON_SILENT: Final = "heartbeat-timeout"
REASON_CHILD_DIED: Final = "worker-lost-error"
#: ``error.type`` values Celery gives a task whose pool process died mid-task.
WORKER_LOST_ERROR_TYPES: Final = (
    "billiard.exceptions.WorkerLostError",
    "celery.exceptions.WorkerLostError",
    "WorkerLostError",
)
DEFAULT_HEARTBEAT_TIMEOUT: Final = timedelta(minutes=5)
_PAGE: Final = 1000
_IN_FLIGHT_FIELDS: Final = (
    "task_id",
    "name",
    "root_id",
    "worker",
    "queue",
    "service",
    "environment",
    "received_at",
    "started_at",
    "retried_at",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerSeen:
    """What the record indices say about one worker."""

    worker: str
    last_record: datetime | None
    last_online: datetime | None
    last_offline: datetime | None


@dataclass(frozen=True, kw_only=True, slots=True)
class LostTask:
    task_id: str
    name: str
    worker: str
    queue: str
    service: str
    environment: str
    root_id: str
    received_at: datetime | None
    started_at: datetime | None
    reason: str
    #: When the worker went away (offline / online record, or its last record of any kind).
    worker_gone_at: datetime | None

    @property
    def since(self) -> datetime:
        """When the task reached the worker: its last start, else its last receipt."""
        when = self.started_at or self.received_at
        if when is None:  # pragma: no cover - in-flight tasks have one of the two by definition
            raise ValueError("an in-flight task has neither started_at nor received_at")
        return when


def _dt(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)


_IN_FLIGHT_QUERY: Final = {
    "bool": {
        "should": [{"exists": {"field": "started_at"}}, {"exists": {"field": "received_at"}}],
        "minimum_should_match": 1,
        "must_not": [{"exists": {"field": "ended_at"}}],
    }
}
_CHILD_DIED_QUERY: Final = {"terms": {"error_type": list(WORKER_LOST_ERROR_TYPES)}}


def _entities(es: Elasticsearch, tasks_index: str, query: dict[str, Any]) -> Iterator[dict[str, Any]]:
    # A scroll in index order: it needs no sort field, so task_id (the _id) keeps no doc values.
    resp = es.search(
        index=tasks_index,
        query=query,
        size=_PAGE,
        sort=["_doc"],
        source_includes=[*_IN_FLIGHT_FIELDS, "ended_at"],
        scroll="2m",
    )
    scroll_id = resp.get("_scroll_id")
    try:
        while True:
            hits = check_shards(resp)["hits"]["hits"]
            for hit in hits:
                yield dict(hit["_source"], task_id=hit["_source"].get("task_id") or hit["_id"])
            if len(hits) < _PAGE:
                return
            resp = es.scroll(scroll_id=scroll_id, scroll="2m")
            scroll_id = resp.get("_scroll_id", scroll_id)
    finally:
        if scroll_id:
            es.options(ignore_status=404).clear_scroll(scroll_id=scroll_id)


def workers_seen(es: Elasticsearch, *, prefix: str, workers: Iterable[str], now: datetime) -> dict[str, WorkerSeen]:
    """Last record, last ``worker-online`` and last ``worker-offline`` of each worker, up to ``now``."""
    names = sorted(set(workers))
    if not names:
        return {}
    aggs = {
        "w": {
            "terms": {"field": "celery.worker", "size": len(names)},
            "aggs": {
                "last": {"max": {"field": "@timestamp"}},
                "online": {
                    "filter": {"term": {"event.action": "worker-online"}},
                    "aggs": {"t": {"max": {"field": "@timestamp"}}},
                },
                "offline": {
                    "filter": {"term": {"event.action": "worker-offline"}},
                    "aggs": {"t": {"max": {"field": "@timestamp"}}},
                },
            },
        }
    }
    query = {
        "bool": {
            "filter": [
                {"terms": {"celery.worker": names}},
                {"range": {"@timestamp": {"lte": iso(now)}}},
            ]
        }
    }
    resp = check_shards(es.search(index=record_indices(prefix), size=0, query=query, aggs=aggs, track_total_hits=False))
    seen = {}
    for b in resp["aggregations"]["w"]["buckets"]:
        seen[b["key"]] = WorkerSeen(
            worker=b["key"],
            last_record=_dt(b["last"]["value"]),
            last_online=_dt(b["online"]["t"]["value"]),
            last_offline=_dt(b["offline"]["t"]["value"]),
        )
    return seen


def _reason(since: datetime, seen: WorkerSeen | None, now: datetime, timeout: timedelta) -> tuple[str, datetime | None]:
    if seen is None:
        return REASON_SILENT, None
    # The first way the worker went away after the task arrived is what lost it: a restart followed by a
    # shutdown lost the task at the restart. Only the last of each kind is known (one aggregation for all
    # workers), so a restart, a shutdown and another restart all after the task read as the shutdown.
    gone: list[tuple[datetime, str]] = []
    if seen.last_offline is not None and seen.last_offline >= since:
        gone.append((seen.last_offline, REASON_OFFLINE))
    if seen.last_online is not None and seen.last_online > since:  # an online at `since` is the start it came to
        gone.append((seen.last_online, REASON_RESTARTED))
    if gone:
        when, reason = min(gone)
        return reason, when
    if seen.last_record is None or seen.last_record < now - timeout:
        return REASON_SILENT, seen.last_record
    return "", None


def find_lost_tasks(
    es: Elasticsearch,
    *,
    prefix: str = _schema.DEFAULT_INDEX_PREFIX,
    tasks_index: str = _schema.DEFAULT_TASKS_INDEX,
    now: datetime,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
) -> list[LostTask]:
    """Tasks in flight on a worker that went away (see the module's docstring), oldest first."""
    candidates = []
    for doc in _entities(es, tasks_index, _IN_FLIGHT_QUERY):
        received, started, retried = (_dt(doc.get(k)) for k in ("received_at", "started_at", "retried_at"))
        arrived = max(t for t in (received, started) if t is not None)
        if retried is not None and retried >= arrived:
            continue  # back in the broker waiting for its retry, not on a worker
        if arrived > now or not doc.get("worker"):
            continue
        candidates.append((doc, received, started, arrived))
    seen = workers_seen(es, prefix=prefix, workers=(str(d["worker"]) for d, *_ in candidates), now=now)
    lost = []
    for doc, received, started, arrived in candidates:
        worker = str(doc["worker"])
        reason, gone = _reason(arrived, seen.get(worker), now, heartbeat_timeout)
        if not reason:
            continue
        lost.append(
            LostTask(
                task_id=str(doc["task_id"]),
                name=str(doc.get("name") or ""),
                worker=worker,
                queue=str(doc.get("queue") or ""),
                service=str(doc.get("service") or ""),
                environment=str(doc.get("environment") or ""),
                root_id=str(doc.get("root_id") or ""),
                received_at=received,
                started_at=started,
                reason=reason,
                worker_gone_at=gone,
            )
        )
    for doc in _entities(es, tasks_index, _CHILD_DIED_QUERY):
        received, started = _dt(doc.get("received_at")), _dt(doc.get("started_at"))
        arrived_at = started or received
        if arrived_at is None or arrived_at > now:
            continue
        lost.append(
            LostTask(
                task_id=str(doc["task_id"]),
                name=str(doc.get("name") or ""),
                worker=str(doc.get("worker") or ""),
                queue=str(doc.get("queue") or ""),
                service=str(doc.get("service") or ""),
                environment=str(doc.get("environment") or ""),
                root_id=str(doc.get("root_id") or ""),
                received_at=received,
                started_at=started,
                reason=REASON_CHILD_DIED,
                worker_gone_at=_dt(doc.get("ended_at")),
            )
        )
    lost.sort(key=lambda t: (t.since, t.task_id))
    return lost


@dataclass(frozen=True, kw_only=True, slots=True)
class MarkResult:
    """What :func:`mark_lost_tasks` changed in the entity index."""

    lost: tuple[LostTask, ...]
    newly_marked: int
    cleared: int


def mark_lost_tasks(
    es: Elasticsearch,
    *,
    prefix: str = _schema.DEFAULT_INDEX_PREFIX,
    tasks_index: str = _schema.DEFAULT_TASKS_INDEX,
    now: datetime,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
    refresh: bool = False,
) -> MarkResult:
    """Find lost tasks and write ``lost``/``lost_reason``/``lost_detected_at`` into their entity documents.

    Safe to call periodically (the shipper does): a task already marked with the same reason is left
    alone, and a task marked lost that has since ended normally (its worker was only slow) gets
    ``lost: false``.
    """
    from elasticsearch import helpers

    lost = find_lost_tasks(es, prefix=prefix, tasks_index=tasks_index, now=now, heartbeat_timeout=heartbeat_timeout)
    already = _already_marked(es, tasks_index, [t.task_id for t in lost])
    actions: list[dict[str, Any]] = [
        {
            "_op_type": "update",
            "_index": tasks_index,
            "_id": t.task_id,
            "doc": {"lost": True, "lost_reason": t.reason, "lost_detected_at": iso(now)},
        }
        for t in lost
        if already.get(t.task_id) != t.reason
    ]
    newly = len(actions)
    resp = es.search(
        index=tasks_index,
        query={
            "bool": {
                "filter": [{"term": {"lost": True}}, {"exists": {"field": "ended_at"}}],
                "must_not": [_CHILD_DIED_QUERY],
            }
        },
        size=_PAGE,
        source=False,
        track_total_hits=False,
    )
    ended = [hit["_id"] for hit in resp["hits"]["hits"]]
    actions += [{"_op_type": "update", "_index": tasks_index, "_id": i, "doc": {"lost": False}} for i in ended]
    if actions:
        # Errors raise BulkIndexError: a partial mark must not pass silently.
        helpers.bulk(es, actions, refresh=refresh)
    return MarkResult(lost=tuple(lost), newly_marked=newly, cleared=len(ended))


def _already_marked(es: Elasticsearch, tasks_index: str, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    resp = es.mget(index=tasks_index, ids=ids, source_includes=["lost", "lost_reason"])
    return {
        d["_id"]: str(d["_source"].get("lost_reason"))
        for d in resp["docs"]
        if d.get("found") and d["_source"].get("lost") is True
    }


class LostTaskSweeper:
    """Runs :func:`mark_lost_tasks` every ``interval`` seconds in a thread, beside a following shipper.

    The shipper is the process that sees records as they arrive, so it is the natural place to keep the
    ``lost`` flags that Kibana's "lost tasks" search reads current. A failed sweep is logged and tried
    again at the next interval; it never stops the shipping.
    """

    def __init__(
        self,
        es: Elasticsearch,
        *,
        prefix: str = _schema.DEFAULT_INDEX_PREFIX,
        tasks_index: str = _schema.DEFAULT_TASKS_INDEX,
        interval: float = 30.0,
        heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
    ) -> None:
        self.es = es
        self.prefix = prefix
        self.tasks_index = tasks_index
        self.interval = interval
        self.heartbeat_timeout = heartbeat_timeout
        self.sweeps = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lost-task-sweeper", daemon=True)

    def start(self) -> LostTaskSweeper:
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def sweep(self) -> MarkResult | None:
        """One pass; ``None`` when it failed (logged with the reason)."""
        try:
            result = mark_lost_tasks(
                self.es, prefix=self.prefix, tasks_index=self.tasks_index,
                now=datetime.now(timezone.utc), heartbeat_timeout=self.heartbeat_timeout,
            )  # fmt: skip
        except Exception as exc:
            self.failures += 1
            _log.warning("lost-task sweep failed; trying again in %.0f s: %s", self.interval, exc)
            return None
        self.sweeps += 1
        if result.newly_marked:
            _log.warning("marked %d task(s) lost", result.newly_marked)
        return result

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sweep()
