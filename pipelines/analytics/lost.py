"""Lost tasks: in flight on a worker that went away, and what became of their messages.

A task is *in flight* when its entity document (``celery-tasks``) has ``started_at`` or
``received_at`` and no ``ended_at``, and it is not waiting in the broker for a retry (a retry newer
than its last receipt or start). Its worker has *gone away* when, after the task arrived, it:

- sent ``worker-offline``: its shutdown completed and it closed its broker connection (``worker-offline``);
- sent ``worker-online`` again, so it was killed and restarted (``worker-restarted``);
- sent ``worker-shutting-down`` and then fell silent (``killed-while-shutting-down``); or
- fell silent (``heartbeat-timeout``).

Silence is judged against the interval the worker announced in its last record
(``celery.worker_stats.heartbeat_interval``; one second while shutting down): :data:`MISSED_BEATS` of them
plus :data:`SILENCE_GRACE` for the shipping. Workers that announce none are judged against
``heartbeat_timeout``.

Each task of a gone worker gets a class (see docs/lost-tasks.md):

- ``lost``: it had started and its message was acknowledged when it started (early acks, the default):
  the work will not run again;
- ``redelivery-pending``: its message is still unacknowledged in the broker (``acks_late``, or only
  prefetched) and the worker died without closing its connection: the broker delivers it again
  (Redis, SQS: after the visibility timeout);
- ``requeued``: unacknowledged, and the worker closed its connection (``worker-offline``): the message
  went back to the queue at once. Not an incident, never listed as lost.

A task whose pool child died under it (killed, out of memory) is lost too, although it has ended: the
worker lives on and Celery's parent process fails it with ``WorkerLostError`` (``worker-lost-error``).

Both questions are answered by queries, not by reading records: in-flight tasks come from the entity
index (few at any time), and each of their workers' last online / offline / shutting-down / any-record
times and announced interval from one aggregation over the record indices (workers are few too).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
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
REASON_KILLED: Final = "killed-while-shutting-down"
REASON_SILENT: Final = "heartbeat-timeout"
REASON_CHILD_DIED: Final = "worker-lost-error"
#: How many of a worker's latest online / offline records decide which came first after a task arrived.
COMINGS_KEPT: Final = 100

CLASS_LOST: Final = "lost"
CLASS_PENDING: Final = "redelivery-pending"
CLASS_REQUEUED: Final = "requeued"
#: Every class, worst first.
CLASSES: Final = (CLASS_LOST, CLASS_PENDING, CLASS_REQUEUED)
#: The classes listed by ``celery-logs lost`` and the report: requeued tasks are not an incident.
LISTED: Final = (CLASS_LOST, CLASS_PENDING)

#: ``error.type`` values Celery gives a task whose pool process died mid-task.
WORKER_LOST_ERROR_TYPES: Final = (
    "billiard.exceptions.WorkerLostError",
    "celery.exceptions.WorkerLostError",
    "WorkerLostError",
)
#: Silence of a worker that announced no interval (records of celery-logs before it did).
DEFAULT_HEARTBEAT_TIMEOUT: Final = timedelta(minutes=5)
#: A worker silent for this many of its announced intervals (plus the grace) has gone away. Two, not
#: three: its last record came up to one interval before it died, so two missed beats and the grace are
#: at most 3 intervals from its death (the figure benchmarks/lost_latency.py holds it to).
MISSED_BEATS: Final = 2
#: For the shipping: a record is searchable a batch wait (1 s) and a bulk request after it was written.
SILENCE_GRACE: Final = timedelta(seconds=3)
#: The worker actions whose arrival makes a following sweeper look again at once.
WORKER_EVIDENCE_ACTIONS: Final = ("worker-shutting-down", "worker-offline", "worker-online")
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
    "acks_late",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkerSeen:
    """What the record indices say about one worker."""

    worker: str
    last_record: datetime | None
    last_online: datetime | None
    last_offline: datetime | None
    last_shutting_down: datetime | None = None
    #: Seconds between its records, as it last announced them (``None``: it announced none).
    interval: float | None = None
    #: From its last ``worker-shutting-down``: ``warm`` / ``cold``, running and prefetched task ids.
    shutdown_how: str = ""
    shutdown_active: frozenset[str] = frozenset()
    shutdown_prefetched: frozenset[str] = frozenset()
    #: Its latest ``worker-online`` / ``worker-offline`` records, oldest first, to the microsecond of their
    #: ``@timestamp``: (time, action). Empty: only the last of each kind is known (``last_online``, ...).
    comings_and_goings: tuple[tuple[datetime, str], ...] = ()

    def departures(self) -> list[tuple[datetime, str]]:
        """The online / offline records as (time, action), oldest first."""
        if self.comings_and_goings:
            return list(self.comings_and_goings)
        known = ((self.last_offline, "worker-offline"), (self.last_online, "worker-online"))
        return sorted((when, action) for when, action in known if when is not None)

    @property
    def shutting_down(self) -> bool:
        """It said it is shutting down, and has not started again since."""
        return self.last_shutting_down is not None and (
            self.last_online is None or self.last_shutting_down >= self.last_online
        )


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
    #: ``lost``, ``redelivery-pending`` or ``requeued`` (see the module's docstring).
    lost_class: str = CLASS_LOST
    #: The task acknowledges its message after it runs (Celery's ``acks_late``).
    acks_late: bool = False

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
_MARKED_QUERY: Final = {
    "bool": {"should": [{"exists": {"field": "lost_class"}}, {"term": {"lost": True}}], "minimum_should_match": 1}
}


def _entities(es: Elasticsearch, tasks_index: str, query: Mapping[str, Any],
              fields: Iterable[str] = (*_IN_FLIGHT_FIELDS, "ended_at")) -> Iterator[dict[str, Any]]:
    # A scroll in index order: it needs no sort field, so task_id (the _id) keeps no doc values.
    resp = es.search(
        index=tasks_index,
        query=dict(query),
        size=_PAGE,
        sort=["_doc"],
        source_includes=list(fields),
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


def _last_hit(sort_field: str, includes: list[str]) -> dict[str, Any]:
    return {"top_hits": {"size": 1, "sort": [{sort_field: {"order": "desc"}}], "_source": {"includes": includes}}}


def _top_source(bucket: Mapping[str, Any]) -> Mapping[str, Any]:
    hits = bucket["last"]["hits"]["hits"]
    return hits[0]["_source"] if hits else {}


def _ids(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset((value,))
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset()


def workers_seen(es: Elasticsearch, *, prefix: str, workers: Iterable[str], now: datetime) -> dict[str, WorkerSeen]:
    """Last record, online, offline and shutting-down of each worker up to ``now``, and its announced interval."""
    names = sorted(set(workers))
    if not names:
        return {}
    interval_field = "celery.worker_stats.heartbeat_interval"
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
                "comings": {
                    "filter": {"terms": {"event.action": ["worker-online", "worker-offline"]}},
                    "aggs": {"last": {"top_hits": {
                        "size": COMINGS_KEPT, "sort": [{"@timestamp": {"order": "desc"}}],
                        "_source": {"includes": ["@timestamp", "event.action"]},
                    }}},
                },
                "shutting": {
                    "filter": {"term": {"event.action": "worker-shutting-down"}},
                    "aggs": {"last": _last_hit("@timestamp", ["@timestamp", "celery.shutdown.*", "celery.shutdown",
                                                              interval_field, "celery.worker_stats"])},
                },
                "beat": {
                    "filter": {"exists": {"field": interval_field}},
                    "aggs": {"last": _last_hit("@timestamp", [interval_field, "celery.worker_stats"])},
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
        shutdown = _top_source(b["shutting"])
        beat = _top_source(b["beat"])
        interval = _schema.get_path(beat, interval_field)
        last_shutting_down = _dt(_schema.get_path(shutdown, "@timestamp"))
        last_online = _dt(b["online"]["t"]["value"])
        if last_shutting_down is not None and (last_online is None or last_shutting_down >= last_online):
            # While it shuts down it writes more often than its heartbeat: judge it by that.
            interval = _schema.get_path(shutdown, interval_field) or interval
        seen[b["key"]] = WorkerSeen(
            worker=b["key"],
            last_record=_dt(b["last"]["value"]),
            last_online=last_online,
            last_offline=_dt(b["offline"]["t"]["value"]),
            last_shutting_down=last_shutting_down,
            interval=float(interval) if isinstance(interval, (int, float)) and interval > 0 else None,
            shutdown_how=str(_schema.get_path(shutdown, "celery.shutdown.how") or ""),
            shutdown_active=_ids(_schema.get_path(shutdown, "celery.shutdown.active_ids")),
            shutdown_prefetched=_ids(_schema.get_path(shutdown, "celery.shutdown.prefetched_ids")),
            comings_and_goings=_comings(b["comings"]),
        )
    return seen


def _comings(bucket: Mapping[str, Any]) -> tuple[tuple[datetime, str], ...]:
    out = []
    for hit in bucket["last"]["hits"]["hits"]:
        when = _dt(_schema.get_path(hit["_source"], "@timestamp"))
        action = _schema.get_path(hit["_source"], "event.action")
        if when is not None and isinstance(action, str):
            out.append((when, action))
    return tuple(sorted(out))


def _refresh(es: Elasticsearch, *indices: str) -> None:
    """Make what the shipper indexed searchable now: silence is judged in seconds, the refresh takes up to 5."""
    from elasticsearch import ApiError

    try:
        es.indices.refresh(index=",".join(indices), ignore_unavailable=True, allow_no_indices=True)
    except ApiError as exc:  # a key allowed to read but not to refresh: judge what is searchable
        _log.debug("cannot refresh %s before looking for lost tasks: %s", indices, exc)


def silence_limit(seen: WorkerSeen | None, fallback: timedelta) -> timedelta:
    """How long a worker may stay silent before it is taken for gone."""
    if seen is None or seen.interval is None:
        return fallback
    return MISSED_BEATS * timedelta(seconds=seen.interval) + SILENCE_GRACE


def _reason(since: datetime, seen: WorkerSeen | None, now: datetime, timeout: timedelta) -> tuple[str, datetime | None]:
    if seen is None:
        return REASON_SILENT, None
    # The first way the worker went away after the task arrived is what lost it: a restart followed by a
    # shutdown and another restart lost the task at the first restart (a supervisor restarting a killed
    # worker, then a deploy), and only that leaves the message to the broker's redelivery. The latest
    # COMINGS_KEPT onlines and offlines are known; a worker that came and went more often than that since
    # the task arrived is judged by the oldest of them.
    gone = [
        (when, REASON_OFFLINE if action == "worker-offline" else REASON_RESTARTED)
        for when, action in seen.departures()
        # An online at `since` is the start the task came to; an offline at `since` already ended it.
        if when > since or (when == since and action == "worker-offline")
    ]
    if gone:
        when, reason = gone[0]
        if reason == REASON_OFFLINE and now - when < SILENCE_GRACE:
            # The terminal records of the tasks it finished while shutting down come from its pool
            # children's own files: give them the time the shipping takes to catch up.
            return "", None
        return reason, when
    if seen.last_record is None or seen.last_record < now - silence_limit(seen, timeout):
        return (REASON_KILLED if seen.shutting_down else REASON_SILENT), seen.last_record
    return "", None


def classify(reason: str, *, started: bool, acks_late: bool) -> str:
    """The class of a task in flight on a worker gone for ``reason`` (see the module's docstring)."""
    if reason == REASON_CHILD_DIED or (started and not acks_late):
        return CLASS_LOST  # acknowledged when it started: nothing brings the message back
    # Unacknowledged: a worker that closed its connection gave it back (Redis restores its unacked
    # messages then, RabbitMQ requeues them); a killed one left it to the broker's redelivery.
    return CLASS_REQUEUED if reason == REASON_OFFLINE else CLASS_PENDING


def find_lost_tasks(
    es: Elasticsearch,
    *,
    prefix: str = _schema.DEFAULT_INDEX_PREFIX,
    tasks_index: str = _schema.DEFAULT_TASKS_INDEX,
    now: datetime,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
    classes: Iterable[str] = LISTED,
) -> list[LostTask]:
    """Tasks in flight on a worker that went away, of the given classes (see the module's docstring), oldest first."""
    wanted = frozenset(classes)
    _refresh(es, record_indices(prefix), tasks_index)
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
        w = seen.get(worker)
        reason, gone = _reason(arrived, w, now, heartbeat_timeout)
        if not reason:
            continue
        task_id = str(doc["task_id"])
        # This delivery started when its start is not older than its receipt, or the worker said it ran it.
        ran = (started is not None and (received is None or started >= received)) or (
            w is not None and w.shutting_down and task_id in w.shutdown_active
        )
        acks_late = doc.get("acks_late") is True
        lost_class = classify(reason, started=ran, acks_late=acks_late)
        if lost_class not in wanted:
            continue
        lost.append(
            LostTask(
                task_id=task_id,
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
                lost_class=lost_class,
                acks_late=acks_late,
            )
        )
    if CLASS_LOST in wanted:
        for doc in _entities(es, tasks_index, _CHILD_DIED_QUERY):
            received, started, ended = (_dt(doc.get(k)) for k in ("received_at", "started_at", "ended_at"))
            arrived_at = started or received
            if arrived_at is None or arrived_at > now:
                continue
            if ended is not None and received is not None and received > ended:
                continue  # the broker delivered it again (acks_late with reject_on_worker_lost)
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
                    worker_gone_at=ended,
                    lost_class=CLASS_LOST,
                    acks_late=doc.get("acks_late") is True,
                )
            )
    lost.sort(key=lambda t: (t.since, t.task_id))
    return lost


@dataclass(frozen=True, kw_only=True, slots=True)
class MarkResult:
    """What :func:`mark_lost_tasks` changed in the entity index."""

    #: Tasks of every class, requeued included (see :attr:`listed`).
    lost: tuple[LostTask, ...]
    newly_marked: int
    cleared: int
    #: Ids whose mark was cleared, with the class they had.
    recovered: tuple[tuple[str, str], ...] = ()

    @property
    def listed(self) -> tuple[LostTask, ...]:
        """The tasks ``celery-logs lost`` lists: all but the requeued ones."""
        return tuple(t for t in self.lost if t.lost_class in LISTED)


def mark_lost_tasks(
    es: Elasticsearch,
    *,
    prefix: str = _schema.DEFAULT_INDEX_PREFIX,
    tasks_index: str = _schema.DEFAULT_TASKS_INDEX,
    now: datetime,
    heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
    refresh: bool = False,
) -> MarkResult:
    """Find tasks of every class and write ``lost``/``lost_class``/``lost_reason``/``lost_detected_at``.

    Safe to call periodically (the shipper does): a task already marked with the same class and reason
    is left alone. A marked task that is no longer found (delivered again, run again, ended, or its
    worker was only slow) loses its mark: ``lost: false``, no ``lost_class``, and ``recovered_from`` /
    ``recovered_at`` say what it was and when it was cleared.
    """
    from elasticsearch import helpers

    found = find_lost_tasks(es, prefix=prefix, tasks_index=tasks_index, now=now, heartbeat_timeout=heartbeat_timeout,
                            classes=CLASSES)
    marked = {
        str(d["task_id"]): (str(d.get("lost_class") or (CLASS_LOST if d.get("lost") is True else "")),
                            str(d.get("lost_reason") or ""))
        for d in _entities(es, tasks_index, _MARKED_QUERY, fields=("task_id", "lost", "lost_class", "lost_reason"))
    }
    stamp = iso(now)
    actions: list[dict[str, Any]] = [
        {
            "_op_type": "update",
            "_index": tasks_index,
            "_id": t.task_id,
            "doc": {"lost": t.lost_class == CLASS_LOST, "lost_class": t.lost_class, "lost_reason": t.reason,
                    "lost_detected_at": stamp},
        }
        for t in found
        if marked.get(t.task_id) != (t.lost_class, t.reason)
    ]
    newly = len(actions)
    still = {t.task_id for t in found}
    recovered = tuple(sorted((i, cls) for i, (cls, _) in marked.items() if i not in still))
    actions += [
        {
            "_op_type": "update",
            "_index": tasks_index,
            "_id": i,
            "doc": {"lost": False, "lost_class": None, "recovered_from": cls or CLASS_LOST, "recovered_at": stamp},
        }
        for i, cls in recovered
    ]
    if actions:
        # Errors raise BulkIndexError: a partial mark must not pass silently.
        helpers.bulk(es, actions, refresh=refresh)
    return MarkResult(lost=tuple(found), newly_marked=newly, cleared=len(recovered), recovered=recovered)


def recovered_counts(es: Elasticsearch, *, tasks_index: str, start: datetime, end: datetime,
                     filters: Mapping[str, Iterable[str]] | None = None) -> dict[str, int]:
    """How many tasks listed as lost or pending redelivery were cleared in ``[start, end)`` (delivered or run
    again), by the class they had. Requeued ones delivered again are the normal course, not a recovery.

    ``filters``: entity field (``name``, ``queue``, ``worker``, ...) -> the values kept (none: all).
    """
    clauses: list[dict[str, Any]] = [
        {"range": {"recovered_at": {"gte": iso(start), "lt": iso(end)}}},
        {"terms": {"recovered_from": list(LISTED)}},
    ]
    clauses += [{"terms": {k: list(v)}} for k, v in (filters or {}).items() if v]
    resp = es.search(
        index=tasks_index,
        size=0,
        query={"bool": {"filter": clauses}},
        aggs={"c": {"terms": {"field": "recovered_from", "size": len(CLASSES) + 1}}},
        track_total_hits=False,
    )
    return {str(b["key"]): int(b["doc_count"]) for b in check_shards(resp)["aggregations"]["c"]["buckets"]}


class LostTaskSweeper:
    """Runs :func:`mark_lost_tasks` in a thread beside a following shipper.

    The shipper is the process that sees records as they arrive, so it is the natural place to keep the
    flags that Kibana's "lost tasks" search reads current. It sweeps every ``interval`` seconds, and every
    ``watch_interval`` seconds it asks whether a worker has written ``worker-shutting-down``,
    ``worker-offline`` or ``worker-online`` since it last looked: when one has, it sweeps every
    ``watch_interval`` for ``watch_seconds``, so a worker killed while it shuts down is marked within
    seconds of its records stopping. A failed sweep is logged and tried again; it never stops the shipping.
    """

    def __init__(
        self,
        es: Elasticsearch,
        *,
        prefix: str = _schema.DEFAULT_INDEX_PREFIX,
        tasks_index: str = _schema.DEFAULT_TASKS_INDEX,
        interval: float = 5.0,
        heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
        watch_interval: float = 1.0,
        watch_seconds: float = 30.0,
    ) -> None:
        self.es = es
        self.prefix = prefix
        self.tasks_index = tasks_index
        self.interval = interval
        self.heartbeat_timeout = heartbeat_timeout
        self.watch_interval = watch_interval
        self.watch_seconds = watch_seconds
        self.sweeps = 0
        self.failures = 0
        self._evidence_count: int | None = None
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
        newly = [t for t in result.lost if t.lost_class != CLASS_REQUEUED]
        if result.newly_marked and newly:
            _log.warning("marked %d task(s): %s", result.newly_marked,
                         ", ".join(f"{c} {sum(t.lost_class == c for t in result.lost)}" for c in CLASSES))
        return result

    def evidence_arrived(self) -> bool:
        """True when the number of worker shutdown/offline/online records searchable has changed since last asked.

        No refresh here (a refresh a second would undo the record indices' 5 s refresh interval, which
        bulk indexing wants); each sweep refreshes, and a TERM comes seconds before the kill it warns of.
        """
        pattern = record_indices(self.prefix)
        resp = self.es.count(
            index=pattern,
            ignore_unavailable=True,
            allow_no_indices=True,
            query={"bool": {"filter": [{"terms": {"event.action": list(WORKER_EVIDENCE_ACTIONS)}},
                                       {"range": {"@timestamp": {"gte": "now-1h"}}}]}},
        )
        count = int(resp["count"])
        changed = self._evidence_count is not None and count != self._evidence_count
        self._evidence_count = count
        return changed

    def _loop(self) -> None:
        watch_until = 0.0
        next_sweep = time.monotonic() + self.interval
        while not self._stop.wait(min(self.interval, self.watch_interval)):
            try:
                if self.evidence_arrived():
                    watch_until = time.monotonic() + self.watch_seconds
            except Exception as exc:
                _log.debug("lost-task evidence probe failed: %s", exc)
            now = time.monotonic()
            if now >= next_sweep or now < watch_until:
                self.sweep()
                next_sweep = time.monotonic() + self.interval
