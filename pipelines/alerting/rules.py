"""The alert rules of celery-logs, as a data table, and the settings that fill in their thresholds.

Each :class:`AlertRule` row says what to watch (index, time field, filter), what the alert is about
(``key``: the task, exception group, worker or beat entry it names), where its count is, and which
Kibana saved search shows the records. The renderers (:mod:`pipelines.alerting.elastalert`,
:mod:`pipelines.alerting.kibana_rules`) turn rows plus :class:`AlertSettings` into rule files and API
bodies; nothing about a rule lives in them that is not in a row or a setting.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from celery_logs import _schema

#: Kibana data views and saved searches the alerts link to (ids of ``kibana/objects``; a test checks
#: that each exists there).
RECORDS_DATA_VIEW: Final = "celery-logs-records"
TASKS_DATA_VIEW: Final = "celery-logs-tasks"

DEFAULT_KIBANA_URL: Final = "http://localhost:5601"
DEFAULT_ES_URL: Final = "http://127.0.0.1:9200"
#: The Kibana version whose Discover URL format the links use (the oldest Kibana celery-logs supports).
KIBANA_DISCOVER_VERSION: Final = "8.11"

#: What each kind of rule measures; the renderers dispatch on it.
KINDS: Final = ("failure-rate", "new-term", "lost", "flatline", "p95")


class AlertSettingsError(ValueError):
    """A threshold or option of the alert rules is out of range; the message names it."""


def _terms(name: str, *values: str) -> dict[str, Any]:
    return {"terms": {name: list(values)}} if len(values) > 1 else {"term": {name: values[0]}}


@dataclass(frozen=True, kw_only=True)
class AlertSettings:
    """Where the data is, the thresholds, and where alerts go. Every field has a safe default."""

    index_prefix: str = _schema.DEFAULT_INDEX_PREFIX
    tasks_index: str = _schema.DEFAULT_TASKS_INDEX
    es_url: str = DEFAULT_ES_URL
    kibana_url: str = DEFAULT_KIBANA_URL
    #: Window of the per-task rules (failure rate, p95s) and of lost-task counting.
    window_minutes: int = 15
    #: A task needs at least this many finished runs in the window for its rate or p95 to count.
    min_runs: int = 10
    failure_rate_percent: float = 10.0
    queue_wait_p95_seconds: float = 60.0
    run_time_p95_seconds: float = 300.0
    #: A worker that sent no heartbeat for this long is silent (celery-logs beats every 30 s).
    worker_silence_minutes: int = 5
    #: A beat entry with no ``beat-sent`` for this long did not run: longer than its longest interval.
    beat_silence_minutes: int = 65
    #: An exception group is new when it was not seen for this many days before.
    new_group_lookback_days: int = 30
    #: The same rule and key alert again only after this long (0: every evaluation that breaches).
    realert_minutes: int = 30
    #: ElastAlert runs every rule this often.
    run_every_minutes: int = 1
    #: ElastAlert's own indices (runs, silences, errors) are named from this.
    writeback_index: str = "celery_logs_elastalert"
    #: Where ElastAlert posts each alert (its ``post`` alerter); none: ElastAlert logs them (``debug``).
    post_urls: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # Named as the command line names them: the message is what a user of a wrong flag reads.
        positive = {
            "window": self.window_minutes,
            "min-runs": self.min_runs,
            "queue-wait-p95": self.queue_wait_p95_seconds,
            "run-time-p95": self.run_time_p95_seconds,
            "worker-silence": self.worker_silence_minutes,
            "beat-silence": self.beat_silence_minutes,
            "new-group-lookback": self.new_group_lookback_days,
            "run-every": self.run_every_minutes,
        }
        for name, value in positive.items():
            if not math.isfinite(value) or value <= 0:
                raise AlertSettingsError(f"{name} must be above 0, not {value}")
        if not 0 <= self.failure_rate_percent < 100 or not math.isfinite(self.failure_rate_percent):
            raise AlertSettingsError(f"failure-rate must be from 0 to below 100 %, not {self.failure_rate_percent}")
        if self.realert_minutes < 0:
            raise AlertSettingsError(f"realert must be 0 or more minutes, not {self.realert_minutes}")
        if self.window_minutes % self.run_every_minutes:
            # ElastAlert evaluates window rules on whole runs; a window that is not a multiple drifts.
            raise AlertSettingsError(
                f"window ({self.window_minutes} min) must be a multiple of run-every ({self.run_every_minutes} min)"
            )
        indices = (
            ("index-prefix", self.index_prefix),
            ("tasks-index", self.tasks_index),
            ("writeback-index", self.writeback_index),
        )
        for name, index in indices:
            if not index or index != index.strip() or any(c in index for c in ' ,*"\\/|?<>#:'):
                raise AlertSettingsError(f"{name} {index!r} is not a valid index name")
        urls = (("es", self.es_url), ("kibana-url", self.kibana_url), *(("post-url", u) for u in self.post_urls))
        for name, url in urls:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise AlertSettingsError(f"{name} {url!r} must be an http:// or https:// URL")
            if "@" in parts.netloc:
                raise AlertSettingsError(f"{name} must not hold credentials (ElastAlert reads ES_USERNAME etc.)")

    @property
    def records_index(self) -> str:
        return f"{self.index_prefix}-*"

    def index_of(self, rule: AlertRule) -> str:
        return self.tasks_index if rule.source == "tasks" else self.records_index

    def bound(self, rule: AlertRule) -> float:
        """The threshold of a row, in the unit of the data (nanoseconds for durations, % for rates)."""
        if rule.bound is None:
            raise AlertSettingsError(f"rule {rule.id} has no threshold")
        value = float(getattr(self, rule.bound))
        return value * 1e9 if rule.bound.endswith("_seconds") else value


@dataclass(frozen=True, kw_only=True)
class AlertRule:
    """One alert rule, as data."""

    id: str
    title: str
    description: str
    kind: str
    #: ``records`` (the daily indices) or ``tasks`` (the entity index).
    source: str
    time_field: str
    #: Elasticsearch query clauses, all of which a document must match.
    filter: tuple[Mapping[str, Any], ...]
    #: The field the alert names (one alert per value of it).
    key: str
    #: What the key is, for the alert text ("task", "worker", ...).
    key_label: str
    #: Name of the :class:`AlertSettings` field holding the threshold (``None``: no threshold).
    bound: str | None = None
    #: The numeric field a ``p95`` rule measures.
    metric: str | None = None
    #: For ``failure-rate``: the clauses that make a matched document count as a failure.
    failing: tuple[Mapping[str, Any], ...] = ()
    #: The saved search of ``kibana/objects`` the alert links to (``None``: plain Discover).
    saved_search: str | None = None
    data_view: str = RECORDS_DATA_VIEW
    #: Discover columns of the link.
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.source not in ("records", "tasks"):
            raise ValueError(f"rule {self.id}: kind {self.kind!r} or source {self.source!r} is unknown")
        if (self.kind == "p95") != (self.metric is not None) or (self.kind == "failure-rate") != bool(self.failing):
            raise ValueError(f"rule {self.id}: metric goes with p95 rules, failing with failure-rate rules")


_FINISHED = _terms("event.action", "task-succeeded", "task-failed")

RULES: Final[tuple[AlertRule, ...]] = (
    AlertRule(
        id="celery-logs-failure-rate",
        title="Celery: task failure rate",
        description="The share of a task's finished runs that failed, over the window, is above the bound "
        "(only tasks with at least min-runs finished runs in the window).",
        kind="failure-rate",
        source="records",
        time_field="@timestamp",
        filter=(_FINISHED,),
        key="celery.task.name",
        key_label="task",
        bound="failure_rate_percent",
        failing=(_terms("event.outcome", "failure"),),
        saved_search="celery-logs-failed-tasks",
        columns=("celery.task.name", "event.outcome", "error.type", "error.message", "celery.task.id"),
    ),
    AlertRule(
        id="celery-logs-new-exception-group",
        title="Celery: new exception group",
        description="A task failed with an exception group (error.grouping_key) not seen in the lookback.",
        kind="new-term",
        source="records",
        time_field="@timestamp",
        filter=(_terms("event.action", "task-failed"),),
        key="error.grouping_key",
        key_label="exception group",
        saved_search="celery-logs-exception-group",
        columns=("error.grouping_key", "error.type", "celery.task.name", "error.message", "celery.task.id"),
    ),
    AlertRule(
        id="celery-logs-lost-tasks",
        title="Celery: lost tasks",
        description="Lost-task detection marked tasks lost (lost_class lost; older documents: lost true) "
        "in the window, counted per task name.",
        kind="lost",
        source="tasks",
        time_field="lost_detected_at",
        filter=(
            {
                "bool": {
                    "should": [
                        {"term": {"lost_class": "lost"}},
                        # Documents marked before lost_class existed: lost true means the same class.
                        {
                            "bool": {
                                "filter": [{"term": {"lost": True}}],
                                "must_not": [{"exists": {"field": "lost_class"}}],
                            }
                        },
                    ],
                    "minimum_should_match": 1,
                }
            },
        ),
        key="name",
        key_label="task",
        saved_search="celery-logs-lost-tasks",
        data_view=TASKS_DATA_VIEW,
        columns=("name", "worker", "queue", "started_at", "lost_reason", "task_id"),
    ),
    AlertRule(
        id="celery-logs-worker-silent",
        title="Celery: worker silent",
        description="A worker that was sending heartbeats sent none for worker-silence minutes "
        "(it died, hangs, or was shut down).",
        kind="flatline",
        source="records",
        time_field="@timestamp",
        filter=(_terms("event.action", "worker-heartbeat"),),
        key="celery.worker",
        key_label="worker",
        bound="worker_silence_minutes",
        columns=("celery.worker", "event.action", "celery.worker_stats.active", "host.hostname"),
    ),
    AlertRule(
        id="celery-logs-periodic-task-missed",
        title="Celery: periodic task did not run",
        description="A beat entry that was being sent had no beat-sent record for beat-silence minutes.",
        kind="flatline",
        source="records",
        time_field="@timestamp",
        filter=(_terms("event.action", "beat-sent"),),
        key="celery.beat.entry",
        key_label="beat entry",
        bound="beat_silence_minutes",
        columns=("celery.beat.entry", "celery.task.name", "celery.task.id"),
    ),
    AlertRule(
        id="celery-logs-queue-wait-p95",
        title="Celery: queue wait p95",
        description="The 95th percentile of a task's queue wait (publish to start) over the window is "
        "above the bound.",
        kind="p95",
        source="records",
        time_field="@timestamp",
        filter=(_terms("event.action", "task-started"),),
        key="celery.task.name",
        key_label="task",
        bound="queue_wait_p95_seconds",
        metric="celery.queue_wait",
        columns=("celery.task.name", "celery.queue_wait", "celery.queue", "celery.worker", "celery.task.id"),
    ),
    AlertRule(
        id="celery-logs-run-time-p95",
        title="Celery: run time p95",
        description="The 95th percentile of a task's run time (finished runs) over the window is above "
        "the bound.",
        kind="p95",
        source="records",
        time_field="@timestamp",
        filter=(_FINISHED,),
        key="celery.task.name",
        key_label="task",
        bound="run_time_p95_seconds",
        metric="event.duration",
        saved_search="celery-logs-slow-runs",
        columns=("celery.task.name", "event.duration", "event.outcome", "celery.worker", "celery.task.id"),
    ),
)


def rule_by_id(rule_id: str) -> AlertRule:
    for rule in RULES:
        if rule.id == rule_id:
            return rule
    raise KeyError(rule_id)
