"""The Kibana saved objects of celery-logs, built from data tables.

Every object (two data views, the saved searches, the Lens visualizations and the dashboard) is a row
of a table below; the builders turn rows into the saved-object JSON Kibana exports. The committed files
under ``kibana/objects/`` are this module's output (``python -m pipelines.kibana.objects`` rewrites them;
a test checks they are current), so a reviewer reads the tables here and the JSON there.

Written for the oldest Kibana supported, :data:`MIN_KIBANA_VERSION`: the migration versions declared
are the ones that Kibana stamps on its own exports, and never newer, so newer Kibanas (8.x and 9.x)
migrate the objects forward on import.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from celery_logs import _schema

MIN_KIBANA_VERSION: Final = "8.11.0"
#: ``coreMigrationVersion`` Kibana 8.8+ writes on every exported object.
CORE_MIGRATION_VERSION: Final = "8.8.0"
#: Newest migration of each type in Kibana 8.11 (what its own export declares).
TYPE_MIGRATION_VERSIONS: Final[dict[str, str]] = {
    "index-pattern": "8.0.0",
    "search": "8.0.0",
    "lens": "8.9.0",
    "dashboard": "8.9.0",
}

RECORDS_DATA_VIEW_ID: Final = "celery-logs-records"
TASKS_DATA_VIEW_ID: Final = "celery-logs-tasks"
#: The entity index again, timed by ``sent_at``: periodic tasks beat sent and nobody started have no other time.
PERIODIC_DATA_VIEW_ID: Final = "celery-logs-periodic"
DASHBOARD_ID: Final = "celery-logs-dashboard"
NDJSON_NAME: Final = "celery-logs.ndjson"

#: Runs at least this long are "slow" (nanoseconds, like ``event.duration``).
SLOW_RUN_NS: Final = 2_000_000_000

_TERMINAL_KQL: Final = "event.action:(" + " or ".join(f'"{a}"' for a in sorted(_schema.TERMINAL_ACTIONS)) + ")"
_FINISHED_RUN_KQL: Final = 'event.action:("task-succeeded" or "task-failed")'
#: A periodic task beat sent that no worker started (and that did not end otherwise, e.g. revoked).
_NOT_STARTED_KQL: Final = "not started_at:* and not ended_at:*"

# Nanosecond fields shown as human durations wherever Kibana displays them.
_DURATION_FORMAT: Final = {
    "id": "duration",
    "params": {
        "inputFormat": "nanoseconds",
        "outputFormat": "humanizePrecise",
        "outputPrecision": 3,
        "showSuffix": True,
        "useShortSuffix": True,
        "includeSpaceWithSuffix": True,
    },
}


@dataclass(frozen=True, kw_only=True)
class DataView:
    """An ``index-pattern`` saved object."""

    id: str
    name: str
    title: str
    time_field: str
    duration_fields: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SavedSearch:
    """A Discover saved search: a KQL query on one data view, its columns and sort."""

    id: str
    title: str
    description: str
    query: str
    columns: tuple[str, ...]
    sort: tuple[tuple[str, str], ...] = (("@timestamp", "desc"),)
    data_view: str = RECORDS_DATA_VIEW_ID


@dataclass(frozen=True, kw_only=True)
class Column:
    """One Lens column. ``op`` is a Lens operation type, or ``ratio`` (a formula: filtered count / count)."""

    id: str
    label: str
    op: str
    field: str | None = None
    #: KQL restricting what the column counts (Lens "filter by").
    filter: str | None = None
    percentile: int | None = None
    size: int = 10
    #: For ``terms``: the column whose value orders the buckets (``None``: alphabetical).
    order_by: str | None = None
    interval: str = "auto"
    format: str | None = None


@dataclass(frozen=True, kw_only=True)
class Layer:
    """A Lens data layer: its columns in nesting order (buckets first), and how the chart draws it."""

    id: str
    columns: tuple[Column, ...]
    series_type: str = "bar_stacked"
    x: str | None = None
    split: str | None = None


@dataclass(frozen=True, kw_only=True)
class Lens:
    """A Lens visualization: one query and one or more layers on the records data view."""

    id: str
    title: str
    description: str
    vis: str  # lnsXY or lnsDatatable
    query: str
    layers: tuple[Layer, ...]
    data_view: str = RECORDS_DATA_VIEW_ID


@dataclass(frozen=True, kw_only=True)
class Panel:
    """A dashboard panel: which object, where on the 48-column grid."""

    ref: str
    type: str
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True, kw_only=True)
class Control:
    """An options-list control of the dashboard."""

    id: str
    field: str
    title: str


@dataclass(frozen=True, kw_only=True)
class Catalog:
    """Every object, as data. :func:`default_catalog` is what celery-logs ships."""

    data_views: tuple[DataView, ...]
    searches: tuple[SavedSearch, ...]
    lenses: tuple[Lens, ...]
    panels: tuple[Panel, ...]
    controls: tuple[Control, ...]
    dashboard_title: str = "Celery tasks"
    dashboard_description: str = ""


# --- the tables ---------------------------------------------------------------------------------------

_SEARCHES: Final[tuple[SavedSearch, ...]] = (
    SavedSearch(
        id="celery-logs-failed-tasks",
        title="Celery: failed tasks",
        description="Every task-failed record, newest first, with the exception and its traceback.",
        query='event.action:"task-failed"',
        columns=(
            "celery.task.name",
            "error.type",
            "error.message",
            "celery.worker",
            "celery.task.id",
            "error.stack_trace",
        ),
    ),
    SavedSearch(
        id="celery-logs-retries",
        title="Celery: retries",
        description="Every task-retried record: which task, which attempt, and why.",
        query='event.action:"task-retried"',
        columns=("celery.task.name", "celery.task.retries", "celery.retry.reason", "celery.worker", "celery.task.id"),
    ),
    SavedSearch(
        id="celery-logs-slow-runs",
        title="Celery: slow runs (2 s or more)",
        description="Finished runs that took at least 2 seconds, slowest first. Edit the number "
        "(nanoseconds) in the query for another threshold.",
        query=f"{_FINISHED_RUN_KQL} and event.duration >= {SLOW_RUN_NS}",
        columns=("celery.task.name", "event.duration", "event.outcome", "celery.worker", "celery.task.id"),
        sort=(("event.duration", "desc"),),
    ),
    SavedSearch(
        id="celery-logs-lost-tasks",
        title="Celery: lost tasks",
        description="Tasks received or started on a worker that went away and never finished, marked by "
        "lost-task detection in the celery-tasks index: lost (the work is gone) and redelivery-pending (the "
        "broker will deliver it again). Requeued tasks (given back on a warm shutdown) are not listed.",
        query='lost:true or lost_class:"redelivery-pending"',
        columns=("name", "worker", "queue", "started_at", "lost_class", "lost_reason", "lost_detected_at",
                 "task_id"),
        sort=(("received_at", "desc"),),
        data_view=TASKS_DATA_VIEW_ID,
    ),
    SavedSearch(
        id="celery-logs-task-history",
        title="Celery: task and workflow history",
        description="Every record of tasks, oldest first. Add celery.task.id : <id> to the query for one "
        "task (with the lines it logged), or celery.task.root_id : <id> for a whole workflow.",
        query='event.dataset:("celery.task" or "celery.app") and celery.task.id:*',
        columns=("event.action", "celery.task.name", "celery.task.id", "celery.worker", "message"),
        sort=(("@timestamp", "asc"),),
    ),
    SavedSearch(
        id="celery-logs-exception-group",
        title="Celery: failures by exception group",
        description="Failures ordered by exception group (error.grouping_key). Add "
        "error.grouping_key : <key> to the query to see one group.",
        query='event.action:"task-failed" and error.grouping_key:*',
        columns=("error.grouping_key", "error.type", "celery.task.name", "error.message", "celery.task.id"),
        sort=(("error.grouping_key", "asc"), ("@timestamp", "desc")),
    ),
    SavedSearch(
        id="celery-logs-periodic-not-started",
        title="Celery: periodic tasks not started",
        description="Tasks beat sent that no worker has started: stuck when old (nobody consumes their queue). "
        "From the celery-tasks index, newest first.",
        query=f"beat_entry:* and {_NOT_STARTED_KQL}",
        columns=("beat_entry", "name", "queue", "beat_due", "beat_lateness", "task_id"),
        sort=(("sent_at", "desc"),),
        data_view=PERIODIC_DATA_VIEW_ID,
    ),
    SavedSearch(
        id="celery-logs-failed-task-lines",
        title="Celery: application log lines with task failures",
        description="The application's own log lines next to the failures, grouped by task id: each failed "
        "task's lines end with its task-failed record. Add celery.task.id : <id> for one task.",
        query='event.dataset:"celery.app" or event.action:"task-failed"',
        columns=("celery.task.id", "celery.task.name", "log.level", "log.logger", "message"),
        sort=(("celery.task.id", "asc"), ("@timestamp", "asc")),
    ),
)

_C = Column  # a short name keeps each table row on one line

_LENSES: Final[tuple[Lens, ...]] = (
    Lens(
        id="celery-logs-throughput",
        title="Celery: throughput by outcome",
        description="Finished tasks per interval (succeeded, failed, revoked, rejected), by outcome.",
        vis="lnsXY",
        query=_TERMINAL_KQL,
        layers=(
            Layer(
                id="throughput",
                x="time",
                split="outcome",
                columns=(
                    _C(id="time", label="@timestamp", op="date_histogram", field="@timestamp"),
                    _C(id="outcome", label="Outcome", op="terms", field="event.outcome", size=5, order_by="runs"),
                    _C(id="runs", label="Tasks", op="count"),
                ),
            ),
        ),
    ),
    Lens(
        id="celery-logs-failure-rate",
        title="Celery: failure rate by task",
        description="Share of finished runs that failed, per task name.",
        vis="lnsXY",
        query=_TERMINAL_KQL,
        layers=(
            Layer(
                id="failure-rate",
                series_type="bar_horizontal",
                x="task",
                columns=(
                    _C(id="task", label="Task", op="terms", field="celery.task.name", size=20),
                    _C(id="rate", label="Failure rate", op="ratio", filter='event.outcome:"failure"', format="percent"),
                ),
            ),
        ),
    ),
    Lens(
        id="celery-logs-runtime-percentiles",
        title="Celery: run time p50 / p95 / p99 by task",
        description="Run time percentiles of finished runs (succeeded or failed), per task name.",
        vis="lnsXY",
        query=_FINISHED_RUN_KQL,
        layers=(
            Layer(
                id="runtime",
                series_type="bar",
                x="task",
                columns=(
                    _C(id="task", label="Task", op="terms", field="celery.task.name", size=20, order_by="p95"),
                    _C(id="p50", label="p50", op="percentile", field="event.duration", percentile=50),
                    _C(id="p95", label="p95", op="percentile", field="event.duration", percentile=95),
                    _C(id="p99", label="p99", op="percentile", field="event.duration", percentile=99),
                ),
            ),
        ),
    ),
    Lens(
        id="celery-logs-queue-wait",
        title="Celery: queue wait p95",
        description="95th percentile of the time from publish to start, per interval.",
        vis="lnsXY",
        query='event.action:"task-started"',
        layers=(
            Layer(
                id="queue-wait",
                series_type="line",
                x="time",
                columns=(
                    _C(id="time", label="@timestamp", op="date_histogram", field="@timestamp"),
                    _C(id="p95", label="Queue wait p95", op="percentile", field="celery.queue_wait", percentile=95),
                ),
            ),
        ),
    ),
    Lens(
        id="celery-logs-top-exceptions",
        title="Celery: top exceptions",
        description="Exception groups by number of failures, with the tasks they hit.",
        vis="lnsDatatable",
        query='event.action:"task-failed"',
        layers=(
            Layer(
                id="exceptions",
                columns=(
                    _C(id="group", label="Exception group", op="terms", field="error.grouping_key", size=20,
                       order_by="failures"),
                    _C(id="type", label="Exception", op="terms", field="error.type", size=3, order_by="failures"),
                    _C(id="failures", label="Failures", op="count"),
                    _C(id="tasks", label="Tasks affected", op="unique_count", field="celery.task.id"),
                    _C(id="names", label="Task names", op="unique_count", field="celery.task.name"),
                ),
            ),
        ),
    ),
    Lens(
        id="celery-logs-workers",
        title="Celery: workers online and active tasks",
        description="From worker heartbeats: workers heard from, and the most tasks each was running.",
        vis="lnsXY",
        query='event.action:"worker-heartbeat"',
        layers=(
            Layer(
                id="workers-online",
                series_type="line",
                x="time",
                columns=(
                    _C(id="time", label="@timestamp", op="date_histogram", field="@timestamp"),
                    _C(id="online", label="Workers online", op="unique_count", field="celery.worker"),
                ),
            ),
            Layer(
                id="active-tasks",
                series_type="area_stacked",
                x="time",
                split="worker",
                columns=(
                    _C(id="time", label="@timestamp", op="date_histogram", field="@timestamp"),
                    _C(id="worker", label="Worker", op="terms", field="celery.worker", size=20, order_by="active"),
                    _C(id="active", label="Active tasks", op="max", field="celery.worker_stats.active"),
                ),
            ),
        ),
    ),
    Lens(
        id="celery-logs-task-table",
        title="Celery: tasks",
        description="Per task name: finished runs, failures, failure rate and run time.",
        vis="lnsDatatable",
        query=_TERMINAL_KQL,
        layers=(
            Layer(
                id="tasks",
                columns=(
                    _C(id="task", label="Task", op="terms", field="celery.task.name", size=100, order_by="runs"),
                    _C(id="runs", label="Runs", op="count"),
                    _C(id="failures", label="Failures", op="count", filter='event.outcome:"failure"'),
                    _C(id="rate", label="Failure %", op="ratio", filter='event.outcome:"failure"', format="percent"),
                    _C(id="p50", label="p50", op="percentile", field="event.duration", percentile=50),
                    _C(id="p95", label="p95", op="percentile", field="event.duration", percentile=95),
                    _C(id="max", label="Max", op="max", field="event.duration"),
                ),
            ),
        ),
    ),
    Lens(
        id="celery-logs-periodic-entries",
        title="Celery: periodic tasks by schedule entry",
        description="Per beat schedule entry: dispatches, started, succeeded, failed, not started, due times "
        "missed while beat was away, and the worst lateness.",
        vis="lnsDatatable",
        query="beat_entry:*",
        data_view=PERIODIC_DATA_VIEW_ID,
        layers=(
            Layer(
                id="entries",
                columns=(
                    _C(id="entry", label="Entry", op="terms", field="beat_entry", size=100, order_by="sent"),
                    _C(id="sent", label="Sent", op="count"),
                    _C(id="started", label="Started", op="count", filter="started_at:*"),
                    _C(id="succeeded", label="Succeeded", op="count", filter='outcome:"success"'),
                    _C(id="failed", label="Failed", op="count", filter='outcome:"failure"'),
                    _C(id="not_started", label="Not started", op="count", filter=_NOT_STARTED_KQL),
                    _C(id="missed", label="Missed", op="sum", field="beat_missed"),
                    _C(id="lateness", label="Worst lateness", op="max", field="beat_lateness"),
                ),
            ),
        ),
    ),
    Lens(
        id="celery-logs-queue-depth",
        title="Celery: queue depth",
        description="Messages waiting per queue, as workers sample it at each heartbeat: the largest depth any "
        "worker saw in each interval.",
        vis="lnsXY",
        query='event.action:"worker-queue-depth"',
        layers=(
            Layer(
                id="depth",
                series_type="line",
                x="time",
                split="queue",
                columns=(
                    _C(id="time", label="@timestamp", op="date_histogram", field="@timestamp"),
                    _C(id="queue", label="Queue", op="terms", field="celery.queue", size=20, order_by="depth"),
                    _C(id="depth", label="Queue depth", op="max", field="celery.queue_depth"),
                ),
            ),
        ),
    ),
)

_PANELS: Final[tuple[Panel, ...]] = (
    Panel(ref="celery-logs-throughput", type="lens", x=0, y=0, w=32, h=12),
    Panel(ref="celery-logs-failure-rate", type="lens", x=32, y=0, w=16, h=12),
    Panel(ref="celery-logs-task-table", type="lens", x=0, y=12, w=48, h=12),
    Panel(ref="celery-logs-runtime-percentiles", type="lens", x=0, y=24, w=24, h=12),
    Panel(ref="celery-logs-queue-wait", type="lens", x=24, y=24, w=24, h=12),
    Panel(ref="celery-logs-top-exceptions", type="lens", x=0, y=36, w=24, h=14),
    Panel(ref="celery-logs-workers", type="lens", x=24, y=36, w=24, h=14),
    Panel(ref="celery-logs-failed-tasks", type="search", x=0, y=50, w=48, h=16),
    Panel(ref="celery-logs-queue-depth", type="lens", x=0, y=66, w=48, h=12),
)

_CONTROLS: Final[tuple[Control, ...]] = (
    Control(id="control-service", field="service.name", title="Service"),
    Control(id="control-environment", field="service.environment", title="Environment"),
    Control(id="control-queue", field="celery.queue", title="Queue"),
    Control(id="control-task", field="celery.task.name", title="Task"),
    Control(id="control-worker", field="celery.worker", title="Worker"),
)


def default_catalog(
    *,
    records_pattern: str = f"{_schema.DEFAULT_INDEX_PREFIX}-*",
    tasks_pattern: str = _schema.DEFAULT_TASKS_INDEX,
) -> Catalog:
    """What celery-logs ships; the patterns are parameters so tests can point them at their own indices."""
    return Catalog(
        data_views=(
            DataView(
                id=RECORDS_DATA_VIEW_ID,
                name="Celery task records",
                title=records_pattern,
                time_field="@timestamp",
                duration_fields=("event.duration", "celery.queue_wait"),
            ),
            DataView(
                id=TASKS_DATA_VIEW_ID,
                name="Celery tasks (one per task id)",
                title=tasks_pattern,
                time_field="received_at",
                duration_fields=("duration", "queue_wait"),
            ),
            DataView(
                id=PERIODIC_DATA_VIEW_ID,
                name="Celery periodic tasks (one per beat dispatch)",
                title=tasks_pattern,
                time_field="sent_at",
                duration_fields=("beat_lateness", "duration", "queue_wait"),
            ),
        ),
        searches=_SEARCHES,
        lenses=_LENSES,
        panels=_PANELS,
        controls=_CONTROLS,
        dashboard_description="Throughput, failures, run and queue times, exceptions and workers of Celery tasks, "
        "from celery-logs records.",
    )


# --- the builders ---------------------------------------------------------------------------------------


def _dumps(value: Any) -> str:
    """JSON-in-a-string, the way saved objects hold searchSourceJSON, panelsJSON and friends."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _envelope(type_: str, id_: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "attributes": attributes,
        "coreMigrationVersion": CORE_MIGRATION_VERSION,
        "id": id_,
        "managed": False,
        "references": references,
        "type": type_,
        "typeMigrationVersion": TYPE_MIGRATION_VERSIONS[type_],
    }


def _kql(query: str) -> dict[str, str]:
    return {"query": query, "language": "kuery"}


def data_view_object(view: DataView) -> dict[str, Any]:
    """The ``index-pattern`` saved object of a data view."""
    return _envelope(
        "index-pattern",
        view.id,
        {
            "fieldAttrs": "{}",
            "fieldFormatMap": _dumps({f: _DURATION_FORMAT for f in view.duration_fields}),
            "fields": "[]",
            "name": view.name,
            "runtimeFieldMap": "{}",
            "sourceFilters": "[]",
            "timeFieldName": view.time_field,
            "title": view.title,
            "typeMeta": "{}",
        },
        [],
    )


_SEARCH_INDEX_REF: Final = "kibanaSavedObjectMeta.searchSourceJSON.index"


def search_object(search: SavedSearch) -> dict[str, Any]:
    """The ``search`` saved object of a Discover saved search."""
    source = {"query": _kql(search.query), "filter": [], "indexRefName": _SEARCH_INDEX_REF}
    return _envelope(
        "search",
        search.id,
        {
            "columns": list(search.columns),
            "description": search.description,
            "grid": {},
            "hideChart": False,
            "isTextBasedQuery": False,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps(source)},
            "sort": [list(s) for s in search.sort],
            "title": search.title,
        },
        [{"id": search.data_view, "name": _SEARCH_INDEX_REF, "type": "index-pattern"}],
    )


#: Lens operation -> (dataType, isBucketed, scale). Field types come from the schema, not from here.
_OPERATIONS: Final[dict[str, tuple[str, bool, str]]] = {
    "date_histogram": ("date", True, "interval"),
    "terms": ("string", True, "ordinal"),
    "count": ("number", False, "ratio"),
    "percentile": ("number", False, "ratio"),
    "max": ("number", False, "ratio"),
    "min": ("number", False, "ratio"),
    "average": ("number", False, "ratio"),
    "sum": ("number", False, "ratio"),
    "unique_count": ("number", False, "ratio"),
    "math": ("number", False, "ratio"),
    "formula": ("number", False, "ratio"),
}
_RECORDS_FIELD: Final = "___records___"
_FORMATS: Final[dict[str, dict[str, Any]]] = {"percent": {"id": "percent", "params": {"decimals": 1}}}


def _lens_column(col: Column) -> dict[str, Any]:
    data_type, bucketed, scale = _OPERATIONS[col.op]
    out: dict[str, Any] = {
        "customLabel": True,
        "dataType": data_type,
        "isBucketed": bucketed,
        "label": col.label,
        "operationType": col.op,
        "scale": scale,
        "sourceField": col.field if col.op != "count" else _RECORDS_FIELD,
    }
    params: dict[str, Any] = {}
    if col.op == "date_histogram":
        out.pop("customLabel")
        params = {"interval": col.interval, "includeEmptyRows": True, "dropPartials": False}
    elif col.op == "terms":
        params = {
            "size": col.size,
            "orderBy": {"type": "column", "columnId": col.order_by} if col.order_by else {"type": "alphabetical"},
            "orderDirection": "desc" if col.order_by else "asc",
            "otherBucket": True,
            "missingBucket": False,
            "parentFormat": {"id": "terms"},
        }
    elif col.op == "percentile":
        params = {"percentile": col.percentile}
    elif col.op in ("count", "unique_count"):
        # A filtered count reads better as 0 than as an empty cell ("no failures" is an answer).
        params = {"emptyAsNull": col.filter is None}
    if col.format:
        params["format"] = _FORMATS[col.format]
    if params:
        out["params"] = params
    if col.filter:
        out["filter"] = _kql(col.filter)
    return out


def _ratio_columns(col: Column) -> dict[str, dict[str, Any]]:
    """A Lens formula ``count(kql='...') / count()`` with the helper columns Lens stores alongside it."""
    if col.filter is None:
        raise ValueError(f"ratio column {col.id} needs a filter (the numerator's KQL)")
    numerator, denominator, math = f"{col.id}X0", f"{col.id}X1", f"{col.id}X2"
    kql = col.filter.replace("'", "\\'")
    formula = f"count(kql='{kql}') / count()"
    part = f"Part of {col.label}"
    helper = {"customLabel": True, "dataType": "number", "isBucketed": False, "label": part, "scale": "ratio"}
    return {
        col.id: {
            "customLabel": True,
            "dataType": "number",
            "isBucketed": False,
            "label": col.label,
            "operationType": "formula",
            "params": {"formula": formula, "isFormulaBroken": False, "format": _FORMATS[col.format or "percent"]},
            "references": [math],
            "scale": "ratio",
        },
        numerator: {
            **helper,
            "filter": _kql(col.filter),
            "operationType": "count",
            "params": {"emptyAsNull": False},
            "sourceField": _RECORDS_FIELD,
        },
        denominator: {
            **helper,
            "operationType": "count",
            "params": {"emptyAsNull": False},
            "sourceField": _RECORDS_FIELD,
        },
        math: {
            **helper,
            "operationType": "math",
            "params": {
                "tinymathAst": {
                    "type": "function",
                    "name": "divide",
                    "args": [numerator, denominator],
                    "location": {"min": 0, "max": len(formula)},
                    "text": formula,
                }
            },
            "references": [numerator, denominator],
        },
    }


def _layer_state(layer: Layer) -> dict[str, Any]:
    columns: dict[str, dict[str, Any]] = {}
    for col in layer.columns:
        if col.op == "ratio":
            columns.update(_ratio_columns(col))
        else:
            columns[col.id] = _lens_column(col)
    return {"columnOrder": list(columns), "columns": columns, "incompleteColumns": {}}


def _layer_ref(layer_id: str) -> str:
    return f"indexpattern-datasource-layer-{layer_id}"


def _visualization(lens: Lens) -> dict[str, Any]:
    if lens.vis == "lnsDatatable":
        (layer,) = lens.layers
        return {
            "columns": [{"columnId": c.id, "isTransposed": False} for c in layer.columns],
            "layerId": layer.id,
            "layerType": "data",
        }
    layers = []
    for layer in lens.layers:
        entry: dict[str, Any] = {
            "accessors": [c.id for c in layer.columns if not _OPERATIONS.get(c.op, ("", False, ""))[1]],
            "layerId": layer.id,
            "layerType": "data",
            "seriesType": layer.series_type,
            "xAccessor": layer.x,
        }
        if layer.split:
            entry["splitAccessor"] = layer.split
        layers.append(entry)
    return {
        "fittingFunction": "None",
        "layers": layers,
        "legend": {"isVisible": True, "position": "right"},
        "preferredSeriesType": lens.layers[0].series_type,
        "valueLabels": "hide",
    }


def lens_object(lens: Lens) -> dict[str, Any]:
    """The ``lens`` saved object of a visualization (form-based datasource, one reference per layer)."""
    state = {
        "adHocDataViews": {},
        "datasourceStates": {"formBased": {"layers": {layer.id: _layer_state(layer) for layer in lens.layers}}},
        "filters": [],
        "internalReferences": [],
        "query": _kql(lens.query),
        "visualization": _visualization(lens),
    }
    return _envelope(
        "lens",
        lens.id,
        {"description": lens.description, "state": state, "title": lens.title, "visualizationType": lens.vis},
        [
            # The editor opens on this data view; Kibana's own exports carry it next to the layer references.
            {"id": lens.data_view, "name": "indexpattern-datasource-current-indexpattern", "type": "index-pattern"},
            *({"id": lens.data_view, "name": _layer_ref(layer.id), "type": "index-pattern"} for layer in lens.layers),
        ],
    )


def dashboard_object(catalog: Catalog) -> dict[str, Any]:
    """The ``dashboard`` saved object: panels by reference, and the options-list controls."""
    panels = []
    references = []
    for panel in catalog.panels:
        index = panel.ref
        panels.append(
            {
                "embeddableConfig": {"enhancements": {}},
                "gridData": {"h": panel.h, "i": index, "w": panel.w, "x": panel.x, "y": panel.y},
                "panelIndex": index,
                "panelRefName": f"panel_{index}",
                "type": panel.type,
                "version": MIN_KIBANA_VERSION,
            }
        )
        references.append({"id": panel.ref, "name": f"{index}:panel_{index}", "type": panel.type})
    controls = {}
    for order, control in enumerate(catalog.controls):
        controls[control.id] = {
            "explicitInput": {
                "fieldName": control.field,
                "id": control.id,
                "searchTechnique": "prefix",
                "selectedOptions": [],
                "title": control.title,
            },
            "grow": True,
            "order": order,
            "type": "optionsListControl",
            "width": "medium",
        }
        ref_name = f"controlGroup_{control.id}:optionsListDataView"
        references.append({"id": RECORDS_DATA_VIEW_ID, "name": ref_name, "type": "index-pattern"})
    attributes = {
        "controlGroupInput": {
            "chainingSystem": "HIERARCHICAL",
            "controlStyle": "oneLine",
            "ignoreParentSettingsJSON": _dumps(
                {"ignoreFilters": False, "ignoreQuery": False, "ignoreTimerange": False, "ignoreValidations": False}
            ),
            "panelsJSON": _dumps(controls),
        },
        "description": catalog.dashboard_description,
        "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps({"filter": [], "query": _kql("")})},
        "optionsJSON": _dumps(
            {
                "hidePanelTitles": False,
                "syncColors": False,
                "syncCursor": True,
                "syncTooltips": False,
                "useMargins": True,
            }
        ),
        "panelsJSON": _dumps(panels),
        "refreshInterval": {"pause": True, "value": 60000},
        "timeFrom": "now-24h",
        "timeRestore": True,
        "timeTo": "now",
        "title": catalog.dashboard_title,
        "version": 1,
    }
    return _envelope("dashboard", DASHBOARD_ID, attributes, references)


def build_objects(catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """Every saved object, in dependency order (data views, searches, lenses, dashboard)."""
    catalog = catalog or default_catalog()
    return [
        *(data_view_object(v) for v in catalog.data_views),
        *(search_object(s) for s in catalog.searches),
        *(lens_object(lens) for lens in catalog.lenses),
        dashboard_object(catalog),
    ]


def export_summary(objects: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The last line of a Kibana export: nothing excluded, nothing missing."""
    return {
        "excludedObjects": [],
        "excludedObjectsCount": 0,
        "exportedCount": len(objects),
        "missingRefCount": 0,
        "missingReferences": [],
    }


def to_ndjson(objects: Sequence[Mapping[str, Any]]) -> str:
    """The objects as Kibana's export file: one compact JSON object a line, then the summary line."""
    lines = [json.dumps(o, separators=(",", ":"), sort_keys=True) for o in objects]
    lines.append(json.dumps(export_summary(objects), separators=(",", ":"), sort_keys=True))
    return "\n".join(lines) + "\n"


def rendered_files(objects: Sequence[Mapping[str, Any]] | None = None) -> dict[str, str]:
    """Relative file name -> content of everything under ``kibana/objects`` (one file per object + NDJSON)."""
    objects = build_objects() if objects is None else objects
    files = {f"{o['type']}/{o['id']}.json": json.dumps(o, indent=2, sort_keys=True) + "\n" for o in objects}
    files[NDJSON_NAME] = to_ndjson(objects)
    return files


def objects_dir(*, package_dir: Path | None = None) -> Path:
    """Where the shipped objects are: the package data in a wheel, ``kibana/objects`` in a checkout.

    ``package_dir`` is the directory of the ``pipelines`` package (default: the one holding this wing).
    """
    here = package_dir or Path(__file__).resolve().parent.parent
    for candidate in (here / "kibana" / "_data", here.parent / "kibana" / "objects"):
        if (candidate / NDJSON_NAME).is_file():
            return candidate
    raise FileNotFoundError(f"the Kibana objects ({NDJSON_NAME}) are neither in {here / '_data'} nor in a checkout")


def write_files(directory: Path, files: Mapping[str, str] | None = None) -> list[Path]:
    """Write :func:`rendered_files` under ``directory``, removing stale object files; returns what was written."""
    files = rendered_files() if files is None else files
    written = []
    for old in directory.glob("*/*.json"):
        if str(old.relative_to(directory)) not in files:
            old.unlink()
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def iter_kql(objects: Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, str]]:
    """Every KQL string the objects hold, as ``(object id, query)``: searches, Lens queries and column filters."""
    for obj in objects:
        if obj["type"] == "search":
            source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
            yield obj["id"], source["query"]["query"]
        elif obj["type"] == "lens":
            state = obj["attributes"]["state"]
            yield obj["id"], state["query"]["query"]
            for layer in state["datasourceStates"]["formBased"]["layers"].values():
                for col in layer["columns"].values():
                    if "filter" in col:
                        yield obj["id"], col["filter"]["query"]


if __name__ == "__main__":  # pragma: no cover - regeneration helper
    # The checkout's kibana/objects: this file is <root>/pipelines/kibana/objects.py.
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "kibana" / "objects"
    for path in write_files(target):
        sys.stdout.write(f"{path}\n")
