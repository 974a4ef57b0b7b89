"""The report: Elasticsearch aggregations in, typed results out.

Every number comes from an aggregation (composite aggregations page through every task, worker, queue
and exception group), so the memory a report needs depends on how many *names* there are, never on how
many records. Counts are exact; percentiles are the engine's (exact for up to about a thousand
values per bucket, where its t-digest keeps every sample, and t-digest estimates beyond). Exact by each
engine's own rule: Elasticsearch interpolates between closest ranks, OpenSearch between rank midpoints.

Definitions (the docs and every output format use these):

- a *run* is one attempt that ended: ``task-succeeded``, ``task-failed`` or ``task-retried``; run-time
  percentiles are over the ``event.duration`` of runs, failed ones included;
- *failure %* is failures / (successes + failures): how many tasks that finished, finished badly;
- *queue wait* is ``celery.queue_wait`` of ``task-started`` records;
- the *previous window* has the same length and ends where the report's window starts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final

from celery_logs import _schema
from pipelines.analytics.backlog import QueueDepth, queue_depths
from pipelines.analytics.lost import (
    CLASS_REQUEUED,
    CLASSES,
    LISTED,
    LostTask,
    find_lost_tasks,
    recovered_counts,
)
from pipelines.analytics.periodic import PeriodicEntry, periodic_entries
from pipelines.analytics.query import Filters, check_shards, record_indices, require_indices, time_range
from pipelines.analytics.timeparse import Window, iso
from pipelines.analytics.versions import Comparison, compare

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: Actions that end one attempt and carry ``event.duration``.
RUN_ACTIONS: Final = ("task-succeeded", "task-failed", "task-retried")
#: Count name -> action it counts. Data: adding a column is adding a row.
COUNTED_ACTIONS: Final[dict[str, str]] = {
    "successes": "task-succeeded",
    "failures": "task-failed",
    "retries": "task-retried",
    "revokes": "task-revoked",
}
RUN_PERCENTS: Final = (50.0, 95.0, 99.0)
WAIT_PERCENTS: Final = (50.0, 95.0)
#: Chart bucket sizes to choose from, smallest first; the report picks the first giving <= MAX_BUCKETS.
BUCKET_SIZES: Final = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=10),
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=1),
    timedelta(days=7),
)
MAX_BUCKETS: Final = 96
PAGE_SIZE: Final = 500

#: Called with (what is being read, pages read so far) while the report pages through aggregations.
Progress = Callable[[str, int], None]


@dataclass(frozen=True, kw_only=True, slots=True)
class RunStats:
    """Counts and timings of one group of runs (a task name, a worker, a queue, or everything)."""

    key: str
    successes: int = 0
    failures: int = 0
    retries: int = 0
    revokes: int = 0
    #: Run time in nanoseconds at 50/95/99 % and the longest; ``None`` without runs.
    run_p50: float | None = None
    run_p95: float | None = None
    run_p99: float | None = None
    run_max: float | None = None
    #: Queue wait in nanoseconds; ``None`` when no started record carried one.
    wait_p50: float | None = None
    wait_p95: float | None = None
    wait_max: float | None = None
    #: The same numbers over the previous window (``None`` on the previous window itself).
    previous: RunStats | None = None

    @property
    def runs(self) -> int:
        return self.successes + self.failures + self.retries

    @property
    def failure_pct(self) -> float | None:
        finished = self.successes + self.failures
        return 100.0 * self.failures / finished if finished else None

    @property
    def runs_change_pct(self) -> float | None:
        """Change of runs against the previous window, in percent (``None`` when it had none)."""
        if self.previous is None or self.previous.runs == 0:
            return None
        return 100.0 * (self.runs - self.previous.runs) / self.previous.runs

    @property
    def failure_pct_change(self) -> float | None:
        """Change of failure % against the previous window, in percentage points."""
        if self.previous is None or self.failure_pct is None or self.previous.failure_pct is None:
            return None
        return self.failure_pct - self.previous.failure_pct

    @property
    def p95_change_pct(self) -> float | None:
        """Change of the 95th percentile run time against the previous window, in percent."""
        if self.previous is None or not self.previous.run_p95 or self.run_p95 is None:
            return None
        return 100.0 * (self.run_p95 - self.previous.run_p95) / self.previous.run_p95


@dataclass(frozen=True, kw_only=True, slots=True)
class ErrorGroup:
    """Failures sharing one ``error.grouping_key``."""

    grouping_key: str
    type: str
    message: str
    count: int
    tasks: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    #: The most recent occurrence's traceback and task id.
    stack_trace: str
    example_task_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SlowRun:
    task_id: str
    name: str
    worker: str
    queue: str
    outcome: str
    duration_ns: int
    ended_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class TimeBucket:
    start: datetime
    successes: int
    failures: int
    retries: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Report:
    """Everything a report shows; every renderer reads only this."""

    window: Window
    previous_window: Window
    generated_at: datetime
    filters: dict[str, list[str]]
    index_prefix: str
    totals: RunStats
    tasks: tuple[RunStats, ...]
    workers: tuple[RunStats, ...]
    queues: tuple[RunStats, ...]
    errors: tuple[ErrorGroup, ...]
    error_groups_total: int
    lost: tuple[LostTask, ...]
    slowest: tuple[SlowRun, ...]
    bucket: timedelta
    timeline: tuple[TimeBucket, ...]
    #: Why lost tasks could not be looked for (empty when they were).
    lost_note: str = ""
    #: Tasks prefetched on a worker that shut down warm, back in the queue (not in ``lost``).
    requeued: int = 0
    #: Marked tasks delivered or run again in the window, by the class they had (``lost``, ...).
    recovered: dict[str, int] = field(default_factory=dict)
    #: Beat schedule entries (from the entity index; see :mod:`pipelines.analytics.periodic`).
    periodic: tuple[PeriodicEntry, ...] = ()
    #: Why periodic tasks could not be looked for (empty when they were).
    periodic_note: str = ""
    #: Depth over time of every queue the workers sampled (see :mod:`pipelines.analytics.backlog`).
    queue_depths: tuple[QueueDepth, ...] = ()
    #: Tasks side by side per version (``--by`` / ``--compare``); ``None`` when not asked for.
    comparison: Comparison | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ReportSettings:
    """What to report on; the CLI builds one of these from its flags."""

    window: Window
    filters: Filters = field(default_factory=Filters)
    prefix: str = _schema.DEFAULT_INDEX_PREFIX
    tasks_index: str = _schema.DEFAULT_TASKS_INDEX
    top_errors: int = 10
    slowest: int = 10
    #: A worker that announced no heartbeat interval and is silent this long has lost its tasks in flight
    #: (see :mod:`pipelines.analytics.lost`).
    heartbeat_timeout: timedelta = timedelta(minutes=5)
    #: Include lost tasks (needs the entity index).
    lost: bool = True
    #: A periodic task not started this long after beat sent it is stuck (nobody consumes its queue).
    stuck_after: timedelta = timedelta(minutes=5)
    #: A due time counts as missed once it is this far in the past with nothing sent.
    missed_grace: timedelta = timedelta(minutes=1)
    #: A queue's latest depth and consumers are read over this period before its last sample.
    queue_recent: timedelta = timedelta(minutes=2)
    #: Put each task's runs side by side per value of this field (``service.version``: a deploy comparison).
    compare_by: str | None = None
    #: Only these values of ``compare_by``, in this order (``--compare A B``); empty: every value seen.
    compare_values: tuple[str, ...] = ()


# --- aggregation bodies ---------------------------------------------------------------------------


#: Both engines keep every sample of a bucket of up to about a thousand values with this compression, so
#: their percentiles are exact there (OpenSearch's default of 100 is not; Elasticsearch's is already).
_DIGEST: dict[str, Any] = {"tdigest": {"compression": 1000}}


def _run_metrics() -> dict[str, Any]:
    """Sub-aggregations that make one :class:`RunStats` (under a window bucket)."""
    return {
        "actions": {"filters": {"filters": {k: {"term": {"event.action": a}} for k, a in COUNTED_ACTIONS.items()}}},
        "runs": {
            "filter": {"terms": {"event.action": list(RUN_ACTIONS)}},
            "aggs": {
                "pct": {"percentiles": {"field": "event.duration", "percents": list(RUN_PERCENTS), **_DIGEST}},
                "max": {"max": {"field": "event.duration"}},
            },
        },
        "waits": {
            "filter": {"term": {"event.action": "task-started"}},
            "aggs": {
                "pct": {"percentiles": {"field": "celery.queue_wait", "percents": list(WAIT_PERCENTS), **_DIGEST}},
                "max": {"max": {"field": "celery.queue_wait"}},
            },
        },
    }


def _two_windows(window: Window, previous: Window) -> dict[str, Any]:
    """Split a bucket into the report's window and the previous one, each with :func:`_run_metrics`."""
    return {
        "w": {
            "date_range": {
                "field": "@timestamp",
                "keyed": True,
                "ranges": [
                    {"key": "cur", "from": iso(window.start), "to": iso(window.end)},
                    {"key": "prev", "from": iso(previous.start), "to": iso(previous.end)},
                ],
            },
            "aggs": _run_metrics(),
        }
    }


def _pct(agg: dict[str, Any], percent: float) -> float | None:
    value = agg["values"].get(f"{percent:.1f}")
    return None if value is None else float(value)


def _stats_from(key: str, bucket: dict[str, Any], previous: RunStats | None = None) -> RunStats:
    actions = bucket["actions"]["buckets"]
    runs, waits = bucket["runs"], bucket["waits"]
    return RunStats(
        key=key,
        **{name: int(actions[name]["doc_count"]) for name in COUNTED_ACTIONS},
        run_p50=_pct(runs["pct"], 50.0),
        run_p95=_pct(runs["pct"], 95.0),
        run_p99=_pct(runs["pct"], 99.0),
        run_max=runs["max"]["value"],
        wait_p50=_pct(waits["pct"], 50.0),
        wait_p95=_pct(waits["pct"], 95.0),
        wait_max=waits["max"]["value"],
        previous=previous,
    )


def _both(key: str, bucket: dict[str, Any]) -> RunStats:
    ranges = bucket["w"]["buckets"]
    return _stats_from(key, ranges["cur"], _stats_from(key, ranges["prev"]))


class _Reader:
    def __init__(self, es: Elasticsearch, settings: ReportSettings, progress: Progress | None) -> None:
        self.es = es
        self.s = settings
        self.index = record_indices(settings.prefix)
        self.previous = settings.window.previous()
        self.progress = progress
        self.pages = 0

    def tick(self, what: str) -> None:
        self.pages += 1
        if self.progress is not None:
            self.progress(what, self.pages)

    def _query(self, window: Window, *extra: dict[str, Any], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
        return {
            "bool": {
                "filter": [
                    time_range(window),
                    *self.s.filters.clauses(skip=skip),
                    *extra,
                ]
            }
        }

    def _search(self, **body: Any) -> dict[str, Any]:
        response = self.es.search(index=self.index, size=0, track_total_hits=False, **body)
        return dict(check_shards(response.body))

    def composite(
        self, what: str, source_field: str, query: dict[str, Any], aggs: dict[str, Any]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Every bucket of a composite aggregation on ``source_field``, page by page."""
        after: dict[str, Any] | None = None
        while True:
            comp: dict[str, Any] = {"size": PAGE_SIZE, "sources": [{"k": {"terms": {"field": source_field}}}]}
            if after is not None:
                comp["after"] = after
            resp = self._search(query=query, aggs={"c": {"composite": comp, "aggs": aggs}})
            self.tick(what)
            agg = resp["aggregations"]["c"]
            for bucket in agg["buckets"]:
                yield str(bucket["key"]["k"]), bucket
            after = agg.get("after_key")
            if after is None or len(agg["buckets"]) < PAGE_SIZE:
                return

    def grouped(self, what: str, source_field: str) -> tuple[RunStats, ...]:
        both = Window(self.previous.start, self.s.window.end)
        query = self._query(both, {"term": {"event.dataset": "celery.task"}})
        stats = [
            _both(k, b)
            for k, b in self.composite(what, source_field, query, _two_windows(self.s.window, self.previous))
        ]
        return tuple(
            st for st in stats if st.runs or st.revokes or (st.previous and (st.previous.runs or st.previous.revokes))
        )

    def totals_and_timeline(self) -> tuple[RunStats, timedelta, tuple[TimeBucket, ...]]:
        window = self.s.window
        bucket = next((b for b in BUCKET_SIZES if window.length / b <= MAX_BUCKETS), BUCKET_SIZES[-1])
        both = Window(self.previous.start, window.end)
        query = self._query(both, {"term": {"event.dataset": "celery.task"}})
        seconds = int(bucket.total_seconds())
        aggs = {
            **_two_windows(window, self.previous),
            "t": {
                "filter": time_range(window),
                "aggs": {
                    "h": {
                        "date_histogram": {
                            "field": "@timestamp",
                            "fixed_interval": f"{seconds}s",
                            "min_doc_count": 0,
                            "extended_bounds": {
                                "min": iso(window.start),
                                "max": iso(window.end - timedelta(milliseconds=1)),
                            },
                        },
                        "aggs": {
                            "a": {
                                "filters": {
                                    "filters": {
                                        k: {"term": {"event.action": COUNTED_ACTIONS[k]}}
                                        for k in ("successes", "failures", "retries")
                                    }
                                }
                            }
                        },
                    }
                },
            },
        }
        resp = self._search(query=query, aggs=aggs)
        self.tick("totals")
        totals = _both("all", resp["aggregations"])
        timeline = tuple(
            TimeBucket(
                start=datetime.fromtimestamp(b["key"] / 1000, tz=timezone.utc),
                **{k: int(v["doc_count"]) for k, v in b["a"]["buckets"].items()},
            )
            for b in resp["aggregations"]["t"]["h"]["buckets"]
        )
        return totals, bucket, timeline

    def errors(self) -> tuple[tuple[ErrorGroup, ...], int]:
        query = self._query(self.s.window, {"term": {"event.action": "task-failed"}})
        aggs = {
            "first": {"min": {"field": "@timestamp"}},
            "last": {"max": {"field": "@timestamp"}},
            # Failures of one fingerprint come from few task names; 100 keeps the list exact in practice.
            "names": {"terms": {"field": "celery.task.name", "size": 100}},
            "latest": {
                "top_hits": {
                    "size": 1,
                    "sort": [{"@timestamp": "desc"}],
                    "_source": ["error.type", "error.message", "error.stack_trace", "celery.task.id"],
                }
            },
        }
        groups: list[ErrorGroup] = []
        for key, b in self.composite("exception groups", "error.grouping_key", query, aggs):
            src = b["latest"]["hits"]["hits"][0]["_source"]
            err = src.get("error", {})
            groups.append(
                ErrorGroup(
                    grouping_key=key,
                    type=str(err.get("type", "")),
                    message=str(err.get("message", "")),
                    count=int(b["doc_count"]),
                    tasks=tuple(sorted(str(n["key"]) for n in b["names"]["buckets"])),
                    first_seen=_from_ms(b["first"]["value"]),
                    last_seen=_from_ms(b["last"]["value"]),
                    stack_trace=str(err.get("stack_trace", "")),
                    example_task_id=str(_schema.get_path(src, "celery.task.id") or ""),
                )
            )
        groups.sort(key=lambda g: (-g.count, g.type, g.grouping_key))
        return tuple(groups[: self.s.top_errors]), len(groups)

    def slowest(self) -> tuple[SlowRun, ...]:
        if self.s.slowest <= 0:
            return ()
        query = self._query(self.s.window, {"terms": {"event.action": list(RUN_ACTIONS)}})
        resp = self.es.search(
            index=self.index,
            query=query,
            size=self.s.slowest,
            sort=[{"event.duration": "desc"}, {"@timestamp": "desc"}],
            source_includes=["@timestamp", "event.duration", "event.outcome", "event.action", "celery"],
            track_total_hits=False,
        )
        check_shards(resp)
        self.tick("slowest runs")
        out = []
        for hit in resp["hits"]["hits"]:
            src = hit["_source"]
            out.append(
                SlowRun(
                    task_id=str(_schema.get_path(src, "celery.task.id") or ""),
                    name=str(_schema.get_path(src, "celery.task.name") or ""),
                    worker=str(_schema.get_path(src, "celery.worker") or ""),
                    queue=str(_schema.get_path(src, "celery.queue") or ""),
                    outcome=_OUTCOME_OF.get(str(_schema.get_path(src, "event.action")), "unknown"),
                    duration_ns=int(_schema.get_path(src, "event.duration")),
                    ended_at=_parse_ts(str(src["@timestamp"])),
                )
            )
        return tuple(out)


_OUTCOME_OF: Final = {"task-succeeded": "success", "task-failed": "failure", "task-retried": "retry"}


def _from_ms(value: float) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


def _parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def build_report(
    es: Elasticsearch, settings: ReportSettings, *, now: datetime | None = None, progress: Progress | None = None
) -> Report:
    """Run the report's aggregations and return the typed :class:`Report`.

    Raises :class:`pipelines.analytics.query.NoDataError` when no record index exists under the prefix.
    """
    require_indices(es, record_indices(settings.prefix), what="record")
    reader = _Reader(es, settings, progress)
    totals, bucket, timeline = reader.totals_and_timeline()
    tasks = reader.grouped("tasks", "celery.task.name")
    workers = reader.grouped("workers", "celery.worker")
    queues = reader.grouped("queues", "celery.queue")
    errors, error_total = reader.errors()
    slowest = reader.slowest()
    depths = queue_depths(es, index=reader.index, window=settings.window, filters=settings.filters, bucket=bucket,
                          recent=settings.queue_recent)
    reader.tick("queue depth")
    comparison = None
    if settings.compare_by is not None:
        comparison = compare(es, index=reader.index, window=settings.window, filters=settings.filters,
                             field=settings.compare_by, values=settings.compare_values)
        reader.tick("versions")
    lost: tuple[LostTask, ...] = ()
    requeued = 0
    recovered: dict[str, int] = {}
    lost_note = ""
    generated = now or datetime.now(timezone.utc)
    periodic: tuple[PeriodicEntry, ...] = ()
    periodic_note = ""
    if es.indices.exists(index=settings.tasks_index):
        periodic = periodic_entries(
            es, tasks_index=settings.tasks_index, window=settings.window, filters=settings.filters, now=generated,
            stuck_after=settings.stuck_after, missed_grace=settings.missed_grace,
        )
        reader.tick("periodic tasks")
    else:
        periodic_note = f"periodic tasks skipped: the entity index {settings.tasks_index!r} does not exist"
    if not settings.lost:
        lost_note = "lost-task detection was not asked for"
    elif not es.indices.exists(index=settings.tasks_index):
        lost_note = f"lost-task detection skipped: the entity index {settings.tasks_index!r} does not exist"
    else:
        found = find_lost_tasks(
            es,
            prefix=settings.prefix,
            tasks_index=settings.tasks_index,
            now=min(generated, settings.window.end),
            heartbeat_timeout=settings.heartbeat_timeout,
            classes=CLASSES,
        )
        kept = [t for t in found if _matches(t, settings.filters) and _in_window(t, settings.window)]
        lost = tuple(t for t in kept if t.lost_class in LISTED)
        requeued = sum(t.lost_class == CLASS_REQUEUED for t in kept)
        entity_filters = {attr: getattr(settings.filters, option) for option, attr in _LOST_FILTER_ATTRS.items()}
        recovered = recovered_counts(es, tasks_index=settings.tasks_index, start=settings.window.start,
                                     end=settings.window.end, filters=entity_filters)
        reader.tick("lost tasks")
    return Report(
        window=settings.window,
        previous_window=reader.previous,
        generated_at=generated,
        filters=settings.filters.describe(),
        index_prefix=settings.prefix,
        totals=totals,
        tasks=tasks,
        workers=workers,
        queues=queues,
        errors=errors,
        error_groups_total=error_total,
        lost=lost,
        slowest=slowest,
        bucket=bucket,
        timeline=timeline,
        lost_note=lost_note,
        requeued=requeued,
        recovered=recovered,
        periodic=periodic,
        periodic_note=periodic_note,
        queue_depths=depths,
        comparison=comparison,
    )


#: Filter option -> attribute of a :class:`LostTask` it applies to (the entity index's flat names).
_LOST_FILTER_ATTRS: Final = {
    "tasks": "name",
    "queues": "queue",
    "workers": "worker",
    "services": "service",
    "environments": "environment",
}


def _matches(task: LostTask, filters: Filters) -> bool:
    for option, attr in _LOST_FILTER_ATTRS.items():
        wanted: tuple[str, ...] = getattr(filters, option)
        if wanted and getattr(task, attr) not in wanted:
            return False
    return True


def _in_window(task: LostTask, window: Window) -> bool:
    return window.start <= task.since < window.end
