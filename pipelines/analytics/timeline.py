"""The whole history of one task and of the workflow it belongs to (its root id), as a timeline."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from celery_logs import _schema
from pipelines._errors import CliError
from pipelines.analytics.query import record_indices, require_indices
from pipelines.analytics.search import LEVEL_COLOURS, PLAIN, Hit, Style, ordered_page

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: A task's own records are few; a workflow can be large, so it is bounded and says so when cut.
MAX_TASK_RECORDS: Final = 1000
MAX_WORKFLOW_TASKS: Final = 500


class TaskNotFound(CliError):
    """No record has this task id."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowTask:
    """One task of the workflow, summarised from its records by an aggregation."""

    task_id: str
    name: str
    parent_id: str
    first_seen: datetime
    last_seen: datetime
    last_action: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TaskTimeline:
    task_id: str
    root_id: str
    records: tuple[Hit, ...]
    truncated: bool
    workflow: tuple[WorkflowTask, ...]
    workflow_truncated: bool


def _dt(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def task_timeline(es: Elasticsearch, *, task_id: str, prefix: str = _schema.DEFAULT_INDEX_PREFIX) -> TaskTimeline:
    """Every record of ``task_id`` (oldest first), and every task sharing its root id."""
    index = record_indices(prefix)
    require_indices(es, index, what="record")
    # One more than shown tells whether the timeline is cut.
    page = ordered_page(es, index=index, query={"term": {"celery.task.id": task_id}}, size=MAX_TASK_RECORDS + 1,
                        descending=False)
    hits = tuple(page[:MAX_TASK_RECORDS])
    if not hits:
        raise TaskNotFound(f"no record of task {task_id!r} under {index}")
    root_id = next((str(r) for h in hits if (r := h.get("celery.task.root_id"))), task_id)
    aggs: dict[str, Any] = {
        "t": {
            "terms": {"field": "celery.task.id", "size": MAX_WORKFLOW_TASKS, "order": {"first": "asc"}},
            "aggs": {
                "first": {"min": {"field": "@timestamp"}},
                "last": {
                    "top_hits": {
                        "size": 1,
                        "sort": [{"@timestamp": "desc"}],
                        "_source": ["@timestamp", "event.action", "celery.task"],
                    }
                },
            },
        },
        "count": {"cardinality": {"field": "celery.task.id"}},
    }
    wf = es.search(
        index=index,
        query={
            "bool": {"filter": [{"term": {"celery.task.root_id": root_id}}, {"term": {"event.dataset": "celery.task"}}]}
        },
        size=0,
        aggs=aggs,
        track_total_hits=False,
    )
    workflow = []
    for b in wf["aggregations"]["t"]["buckets"]:
        src = b["last"]["hits"]["hits"][0]["_source"]
        workflow.append(
            WorkflowTask(
                task_id=str(b["key"]),
                name=str(_schema.get_path(src, "celery.task.name") or ""),
                parent_id=str(_schema.get_path(src, "celery.task.parent_id") or ""),
                first_seen=_dt(b["first"]["value"]),
                last_seen=datetime.fromisoformat(str(src["@timestamp"]).replace("Z", "+00:00")),
                last_action=str(_schema.get_path(src, "event.action") or ""),
            )
        )
    return TaskTimeline(
        task_id=task_id,
        root_id=root_id,
        records=hits,
        truncated=len(page) > MAX_TASK_RECORDS,
        workflow=tuple(workflow),
        workflow_truncated=int(wf["aggregations"]["count"]["value"]) > MAX_WORKFLOW_TASKS,
    )


def _offset(t: datetime, origin: datetime) -> str:
    seconds = (t - origin).total_seconds()
    return f"+{seconds:9.3f}s"


def render_timeline(tl: TaskTimeline, *, style: Style = PLAIN, width: int = 40) -> str:
    """The task's records with offsets from its first, then the workflow as bars on one time axis."""
    origin = tl.records[0].timestamp
    name = tl.records[0].get("celery.task.name") or ""
    out = [
        style.paint(f"task {tl.task_id}", "1") + f"  (workflow root {tl.root_id})",
        f"{name}  first record {origin.strftime('%Y-%m-%d %H:%M:%S.%f')[:-3]} UTC",
        "",
    ]
    for hit in tl.records:
        action = str(hit.get("event.action") or hit.get("event.dataset") or "")
        level = str(hit.get("log.level") or "info").lower()
        extra = [str(hit.get("celery.worker") or "")]
        if (d := hit.get("event.duration")) is not None:
            extra.append(f"ran {int(d) / 1e9:.3f} s")
        if (w := hit.get("celery.queue_wait")) is not None:
            extra.append(f"waited {int(w) / 1e9:.3f} s")
        if (r := hit.get("celery.task.retries")) is not None and int(r):
            extra.append(f"retries={r}")
        if not hit.get("event.action"):
            extra.append(str(hit.get("message") or ""))
        elif hit.get("error.type"):
            extra.append(f"{hit.get('error.type')}: {hit.get('error.message') or ''}")
        line = f"{_offset(hit.timestamp, origin)}  {action:<15} {'  '.join(e for e in extra if e)}".rstrip()
        out.append(style.paint(line, LEVEL_COLOURS.get(level, "")) if level in ("error", "warning") else line)
        trace = hit.get("error.stack_trace")
        if isinstance(trace, str) and trace:
            out += ["      " + t for t in trace.splitlines()]
    if tl.truncated:
        out.append(f"… only the first {MAX_TASK_RECORDS} records are shown")
    if len(tl.workflow) > 1:
        out += ["", style.paint(f"workflow {tl.root_id}: {len(tl.workflow)} tasks", "1")]
        start = min(t.first_seen for t in tl.workflow)
        end = max(t.last_seen for t in tl.workflow)
        span = max((end - start).total_seconds(), 1e-3)
        for t in tl.workflow:
            a = int(width * (t.first_seen - start).total_seconds() / span)
            b = max(a + 1, int(width * (t.last_seen - start).total_seconds() / span))
            bar = " " * a + "█" * (b - a) + " " * (width - b)
            mark = "*" if t.task_id == tl.task_id else " "
            out.append(f"{mark} |{bar}| {t.name:<24} {t.task_id[:8]}  {t.last_action}")
        if tl.workflow_truncated:
            out.append(f"… only the first {MAX_WORKFLOW_TASKS} tasks of the workflow are shown")
    return "\n".join(out)


def timeline_dict(tl: TaskTimeline) -> dict[str, Any]:
    """The timeline as JSON-able data for ``--json``."""
    return {
        "task_id": tl.task_id,
        "root_id": tl.root_id,
        "records": [h.source for h in tl.records],
        "truncated": tl.truncated,
        "workflow": [
            {
                "task_id": t.task_id,
                "name": t.name,
                "parent_id": t.parent_id,
                "first_seen": t.first_seen.isoformat(),
                "last_seen": t.last_seen.isoformat(),
                "last_action": t.last_action,
            }
            for t in tl.workflow
        ],
        "workflow_truncated": tl.workflow_truncated,
    }
