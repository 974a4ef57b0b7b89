"""The record schema: the one contract between the worker side, the shipper, Kibana and the reports.

Every field a record may carry is a row of :data:`FIELDS`. The Elasticsearch index template, the
entity-index mapping and ``docs/schema.md`` are generated from these tables (and tests check that what
is committed agrees), so the schema cannot drift between the stages.

This module is pure data and pure functions: it is imported by every worker and producer, so it must
stay free of Elasticsearch, Celery and anything slow to import.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

SCHEMA_VERSION: Final = "1"
ECS_VERSION: Final = "8.11.0"

#: Default prefix of the daily indices (``celery-logs-2026.11.22``).
DEFAULT_INDEX_PREFIX: Final = "celery-logs"
#: Name of the composable index template that covers ``<prefix>-*``.
TEMPLATE_NAME: Final = "celery-logs"
#: The entity index: one document per task id, merged from lifecycle records by partial upserts.
#: Deliberately outside the ``celery-logs-*`` pattern so searches over records never count it.
DEFAULT_TASKS_INDEX: Final = "celery-tasks"

#: Bounds used by the worker side (and checked by the shipper / tests).
MAX_VALUE_CHARS: Final = 2048
MAX_ERROR_MESSAGE_CHARS: Final = 8192
MAX_STACK_TRACE_CHARS: Final = 32768
#: ``ignore_above`` for keyword sub-fields of long text fields.
KEYWORD_IGNORE_ABOVE: Final = 1024


@dataclass(frozen=True, slots=True)
class Field:
    """One field of the record: its dotted name, Elasticsearch type and meaning."""

    name: str
    type: str
    description: str
    #: ``False`` keeps the value out of the inverted index: with :attr:`doc_values` it can still be sorted,
    #: aggregated and (slowly) filtered on; without, it lives in ``_source`` only.
    index: bool = True
    #: Column storage for sorting and aggregations; ``None`` follows :attr:`index`. Off for ids that are
    #: only ever looked up (their column would cost as much as the inverted index and serve nothing).
    doc_values: bool | None = None
    #: Add a ``.keyword`` sub-field to a ``text`` field so it can be aggregated.
    keyword_subfield: bool = False
    #: ECS field (``True``) or celery-logs' own (``False``).
    ecs: bool = True


# Types used below: keyword, text, date, long, integer, boolean, float, match_only_text is avoided
# (it lives in a module the server-core build lacks).
FIELDS: Final[tuple[Field, ...]] = (
    Field("@timestamp", "date", "When the record was made: UTC, ISO-8601 with microseconds and `Z`."),
    Field("message", "text", "One human line, e.g. `task failed: billing.charge (KeyError) after 0.132 s`."),
    Field("log.level", "keyword", "`info`, `warning` (retry), `error` (failure), or the user's level."),
    Field("log.logger", "keyword", "Name of the logger that made the record."),
    # It is the _id too (looked up by `ids`), and the tie-break within a millisecond is read from _source
    # (pipelines.analytics.search.ordered_page): no index, no doc values (they were 29 B of a 208 B record).
    Field("event.id", "keyword", "Unique, time-ordered id (UUIDv7 layout); becomes the document `_id`.", index=False),
    Field("event.kind", "keyword", "Always `event`."),
    Field("event.dataset", "keyword",
          "`celery.task`, `celery.worker`, `celery.beat` or `celery.app` (the user's own lines)."),
    Field("event.action", "keyword", "The record type: one of `ACTIONS`."),
    Field("event.outcome", "keyword", "`success`, `failure` or `unknown`."),
    Field("event.duration", "long", "Run time in nanoseconds (terminal task records), from a monotonic clock."),
    Field("event.start", "date", "When the run started."),
    Field("event.end", "date", "When the run ended."),
    Field("ecs.version", "keyword", "Version of the Elastic Common Schema the record follows."),
    Field("service.name", "keyword", "Application name."),
    Field("service.version", "keyword", "Deployed version of the application."),
    Field("service.environment", "keyword", "Environment (`production`, `staging`, ...)."),
    Field("host.hostname", "keyword", "Host that made the record."),
    Field("process.pid", "long", "Process id that made the record."),
    Field("trace.id", "keyword", "Correlation id carried from the producer in message headers.", doc_values=False),
    Field("error.type", "keyword", "Fully qualified exception class."),
    Field("error.message", "text", "`str(exc)`, truncated.", keyword_subfield=True),
    Field("error.stack_trace", "text", "Whole formatted traceback, chained causes included, truncated."),
    Field("error.grouping_key", "keyword", "Stable fingerprint: type + normalised frames."),
    Field("celery.task.id", "keyword", "Task id.", ecs=False),
    Field("celery.task.name", "keyword", "Registered task name.", ecs=False),
    Field("celery.task.root_id", "keyword", "Id of the first task of the workflow.", doc_values=False, ecs=False),
    Field("celery.task.parent_id", "keyword", "Id of the task that called this one.", doc_values=False, ecs=False),
    Field("celery.task.group_id", "keyword", "Id of the group the task belongs to.", doc_values=False, ecs=False),
    Field("celery.task.retries", "integer", "How many times the task has been retried.", ecs=False),
    Field("celery.task.args", "keyword", "Redacted, truncated `repr` of the arguments.", index=False, ecs=False),
    Field("celery.task.kwargs", "keyword", "Redacted, truncated `repr` of the keyword arguments.", index=False,
          ecs=False),
    Field("celery.task.result", "keyword", "Redacted, truncated `repr` of the result (opt-in).", index=False,
          ecs=False),
    Field("celery.task.eta", "date", "Earliest time the task may run.", ecs=False),
    Field("celery.task.expires", "date", "Time after which the task is discarded.", ecs=False),
    Field("celery.task.acks_late", "boolean", "The task acknowledges its message only after it ran (`task-received`; "
          "written when true).", ecs=False),
    Field("celery.task.state", "keyword", "Celery state name: `RECEIVED`, `STARTED`, `SUCCESS`, ...", ecs=False),
    Field("celery.queue", "keyword", "Queue the message came from.", ecs=False),
    Field("celery.exchange", "keyword", "Exchange the message was published to.", ecs=False),
    Field("celery.routing_key", "keyword", "Routing key of the message.", ecs=False),
    Field("celery.worker", "keyword", "Worker node name (`celery@host`).", ecs=False),
    Field("celery.queue_wait", "long", "Nanoseconds from publish to start; absent when unknown.", ecs=False),
    Field("celery.retry.reason", "keyword", "Why the task is retried.", ecs=False),
    Field("celery.retry.eta", "date", "When the retry is due.", ecs=False),
    Field("celery.revoke.terminated", "boolean", "The running task was terminated.", ecs=False),
    Field("celery.revoke.signal", "keyword", "Signal used to terminate it.", ecs=False),
    Field("celery.revoke.expired", "boolean", "Revoked because it expired.", ecs=False),
    Field("celery.queue_depth", "long", "Messages waiting in `celery.queue` when sampled (`worker-queue-depth`).",
          ecs=False),
    Field("celery.queue_consumed", "boolean", "The sampling worker consumes `celery.queue` (`worker-queue-depth`).",
          ecs=False),
    Field("celery.worker_stats.active", "integer", "Tasks running on the worker.", ecs=False),
    Field("celery.worker_stats.processed", "long", "Tasks the worker has processed since it started.", ecs=False),
    Field("celery.worker_stats.pool_size", "integer", "Pool processes of the worker.", ecs=False),
    Field("celery.worker_stats.rss_bytes", "long", "Resident memory of the worker's main process.", ecs=False),
    Field("celery.worker_stats.loadavg", "float", "One-minute load average of the host.", ecs=False),
    Field("celery.worker_stats.heartbeat_interval", "float", "Seconds until the worker's next record of its own "
          "(`worker-online`, `worker-heartbeat`, `worker-shutting-down`): silence is judged against it.", ecs=False),
    Field("celery.shutdown.how", "keyword", "`warm` (running tasks finish) or `cold` (they are terminated).",
          ecs=False),
    Field("celery.shutdown.signal", "keyword", "The signal that asked for the shutdown (`SIGTERM`, `SIGINT`, ...).",
          ecs=False),
    Field("celery.shutdown.active_ids", "keyword", "Ids of the tasks running in the pool when the record was made.",
          ecs=False),
    Field("celery.shutdown.prefetched_ids", "keyword", "Ids of the tasks prefetched and not started (reserved or "
          "waiting for their ETA) when the record was made.", ecs=False),
    Field("celery.beat.entry", "keyword", "Name of the beat schedule entry (`beat-sent`).", ecs=False),
    Field("celery.beat.schedule", "keyword", "The entry's schedule as text: `every 30s`, `crontab 0 4 * * *`.",
          ecs=False),
    Field("celery.beat.due", "date", "When the dispatch was due (`beat-sent`).", ecs=False),
    Field("celery.beat.lateness", "long", "Nanoseconds from the due time to the dispatch (`beat-sent`).", ecs=False),
    Field("celery.beat.missed", "integer",
          "Due times of the entry, after `celery.beat.due`, that passed with nothing sent (beat was away).",
          ecs=False),
    Field("celery.beat.next_due", "date", "When the entry is due next, as beat computed it at the dispatch.",
          ecs=False),
    Field("celery.beat.interval", "long", "Period in nanoseconds of an interval schedule (absent for crontab).",
          ecs=False),
    Field("celery.beat.scheduler", "keyword", "Scheduler class of the beat process (`beat-*` records).", ecs=False),
    Field("celery.beat.heartbeat_interval", "float", "Seconds between `beat-heartbeat` records.", ecs=False),
    Field("celery_logs.schema_version", "keyword", "Version of this schema.", ecs=False),
)

#: Every ``event.action``, in lifecycle order, with the Celery state it implies (``None``: no task state).
ACTIONS: Final[dict[str, str | None]] = {
    "task-published": "PENDING",
    "task-received": "RECEIVED",
    "task-started": "STARTED",
    "task-succeeded": "SUCCESS",
    "task-failed": "FAILURE",
    "task-retried": "RETRY",
    "task-revoked": "REVOKED",
    "task-rejected": "REJECTED",
    "task-unknown": None,
    "worker-online": None,
    "worker-heartbeat": None,
    "worker-shutting-down": None,
    "worker-offline": None,
    "worker-queue-depth": None,
    "beat-sent": None,
    "beat-online": None,
    "beat-heartbeat": None,
    "beat-offline": None,
}
#: Actions after which a task runs no more (a retried task runs again under the same id).
TERMINAL_ACTIONS: Final = frozenset({"task-succeeded", "task-failed", "task-revoked", "task-rejected"})
DATASETS: Final = ("celery.task", "celery.worker", "celery.beat", "celery.app")
OUTCOMES: Final = ("success", "failure", "unknown")

FIELDS_BY_NAME: Final[dict[str, Field]] = {f.name: f for f in FIELDS}


# --- the entity index ------------------------------------------------------------------------------

#: One document per task id in :data:`DEFAULT_TASKS_INDEX`. Each lifecycle record writes only the
#: fields its action owns (partial-document upsert), so the merged document does not depend on the
#: order in which records arrive. Field names are flat on purpose: they are entity facts, not ECS.
TASK_FIELDS: Final[tuple[Field, ...]] = (
    # The _id too, which serves every lookup; kept in _source for Kibana's columns.
    Field("task_id", "keyword", "Task id (also the document `_id`).", index=False, ecs=False),
    Field("name", "keyword", "Task name.", ecs=False),
    # Shown, never searched here: the records' celery.task.root_id is what workflow queries use.
    Field("root_id", "keyword", "Workflow root id.", index=False, ecs=False),
    Field("parent_id", "keyword", "Parent task id.", index=False, ecs=False),
    Field("service", "keyword", "`service.name` of the records.", ecs=False),
    Field("environment", "keyword", "`service.environment` of the records.", ecs=False),
    Field("queue", "keyword", "Queue of the last delivery.", ecs=False),
    Field("worker", "keyword", "Worker that received / ran it.", ecs=False),
    # Shown, never filtered or aggregated here (the records serve time ranges and percentiles).
    Field("published_at", "date", "`task-published` time.", index=False, ecs=False),
    Field("received_at", "date", "`task-received` time (last delivery).", ecs=False),
    # Only asked whether it exists (in flight, not started), shown and sorted on: doc values serve all three.
    Field("started_at", "date", "`task-started` time (last attempt).", index=False, doc_values=True, ecs=False),
    Field("retried_at", "date", "`task-retried` time (last retry).", index=False, ecs=False),
    # Exists, and the latest success of a periodic entry (max): doc values serve both.
    Field("ended_at", "date", "Time of the terminal record (succeeded, failed, revoked, rejected).", index=False,
          doc_values=True, ecs=False),
    # Searchable and aggregatable although no query of ours uses them: "state : FAILURE" is the first
    # filter a user types in Discover over the entity index, and a chart by state the first one they make.
    Field("end_action", "keyword", "`event.action` of the terminal record.", ecs=False),
    Field("state", "keyword", "Celery state of the terminal record.", ecs=False),
    Field("outcome", "keyword", "`event.outcome` of the terminal record.", ecs=False),
    Field("duration", "long", "Run time in nanoseconds of the terminal record.", index=False, ecs=False),
    # Indexed: a periodic dispatch that started later than the stuck bound counts as stuck. Never aggregated
    # here (the records' celery.queue_wait serves percentiles): no doc values.
    Field("queue_wait", "long", "Queue wait in nanoseconds (from `task-started`).", doc_values=False, ecs=False),
    Field("retries", "integer", "Retries so far.", index=False, ecs=False),
    Field("error_type", "keyword", "Exception class of a failure.", ecs=False),
    Field("grouping_key", "keyword", "`error.grouping_key` of a failure.", ecs=False),
    Field("acks_late", "boolean", "Its message is acknowledged after it runs (from `task-received`).", ecs=False),
    Field("lost", "boolean", "Set by lost-task detection: started, acknowledged, and its worker went away (true "
          "only for `lost_class` `lost`).", ecs=False),
    Field("lost_class", "keyword", "Set by lost-task detection for a task in flight on a worker that went away: "
          "`lost` (the work is gone), `redelivery-pending` (unacknowledged: the broker will deliver it again), "
          "`requeued` (prefetched, given back on a warm shutdown; not an incident).", ecs=False),
    Field(
        "lost_reason",
        "keyword",
        "`worker-offline`, `worker-restarted`, `heartbeat-timeout`, or `worker-lost-error` (pool child died).",
        ecs=False,
    ),
    Field("lost_detected_at", "date", "When lost-task detection marked it.", ecs=False),
    Field("recovered_from", "keyword", "The `lost_class` a task had when a later delivery or run of it cleared the "
          "mark.", ecs=False),
    Field("recovered_at", "date", "When lost-task detection cleared the mark.", ecs=False),
    Field("beat_entry", "keyword", "Beat schedule entry that sent it (`beat-sent`).", ecs=False),
    Field("beat_schedule", "keyword", "That entry's schedule as text.", ecs=False),
    Field("sent_at", "date", "When beat sent it.", ecs=False),
    Field("beat_due", "date", "When that dispatch was due.", ecs=False),
    Field("beat_lateness", "long", "Nanoseconds from due to sent.", ecs=False),
    Field("beat_missed", "integer", "Due times of the entry skipped before this dispatch (beat was away).", ecs=False),
    Field("beat_next_due", "date", "When the entry was due next, as beat computed it at this dispatch.", ecs=False),
    Field("beat_interval", "long", "Period in nanoseconds of an interval schedule.", ecs=False),
)

#: Which entity fields each record's action writes, and from which record field. Data, not code:
#: the shipper turns a record into ``{"doc": {...}, "doc_as_upsert": true}`` from this table alone.
TASK_FIELD_SOURCES: Final[dict[str, dict[str, str]]] = {
    "*": {  # written by every task record
        "task_id": "celery.task.id",
        "name": "celery.task.name",
        "root_id": "celery.task.root_id",
        "parent_id": "celery.task.parent_id",
        "service": "service.name",
        "environment": "service.environment",
    },
    "task-published": {"published_at": "@timestamp"},
    "beat-sent": {
        "sent_at": "@timestamp",
        "queue": "celery.queue",
        "beat_entry": "celery.beat.entry",
        "beat_schedule": "celery.beat.schedule",
        "beat_due": "celery.beat.due",
        "beat_lateness": "celery.beat.lateness",
        "beat_missed": "celery.beat.missed",
        "beat_next_due": "celery.beat.next_due",
        "beat_interval": "celery.beat.interval",
    },
    "task-received": {
        "received_at": "@timestamp",
        "queue": "celery.queue",
        "worker": "celery.worker",
        "acks_late": "celery.task.acks_late",
    },
    "task-started": {
        "started_at": "@timestamp",
        "worker": "celery.worker",
        "queue_wait": "celery.queue_wait",
        "retries": "celery.task.retries",
    },
    "task-retried": {"retried_at": "@timestamp", "retries": "celery.task.retries"},
    "task-succeeded": {
        "ended_at": "@timestamp",
        "end_action": "event.action",
        "state": "celery.task.state",
        "outcome": "event.outcome",
        "duration": "event.duration",
    },
    "task-failed": {
        "ended_at": "@timestamp",
        "end_action": "event.action",
        "state": "celery.task.state",
        "outcome": "event.outcome",
        "duration": "event.duration",
        "error_type": "error.type",
        "grouping_key": "error.grouping_key",
    },
    "task-revoked": {
        "ended_at": "@timestamp",
        "end_action": "event.action",
        "state": "celery.task.state",
        "outcome": "event.outcome",
    },
    "task-rejected": {
        "ended_at": "@timestamp",
        "end_action": "event.action",
        "state": "celery.task.state",
        "outcome": "event.outcome",
    },
}


def get_path(record: Mapping[str, Any], dotted: str) -> Any:
    """Value at a dotted name in a nested record (``"celery.task.id"``), or ``None`` when absent.

    A flat key holding the whole dotted name is honoured too, since some emitters write flat keys.
    """
    if dotted in record:
        return record[dotted]
    node: Any = record
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def task_entity_update(record: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The partial document a lifecycle record contributes to its task's entity document.

    Returns ``(task_id, fields)`` for ``{"doc": fields, "doc_as_upsert": true}``, or ``None`` for records
    that are not about a task. Absent source fields are left out, so a record never erases what another
    record wrote.
    """
    action = get_path(record, "event.action")
    task_id = get_path(record, "celery.task.id")
    if not isinstance(action, str) or action not in TASK_FIELD_SOURCES or not isinstance(task_id, str) or not task_id:
        return None
    doc: dict[str, Any] = {}
    for table in (TASK_FIELD_SOURCES["*"], TASK_FIELD_SOURCES[action]):
        for target, source in table.items():
            value = get_path(record, source)
            if value is not None:
                doc[target] = value
    return task_id, doc


# --- generated mappings ------------------------------------------------------------------------------


def _property(field: Field) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": field.type}
    doc_values = field.index if field.doc_values is None else field.doc_values
    if field.type == "keyword":
        prop["ignore_above"] = MAX_VALUE_CHARS * 2 if field.index or doc_values else None
    if not field.index:
        prop["index"] = False
    if not doc_values:
        # Neither indexed nor aggregatable: the value costs nothing but its share of _source.
        prop["doc_values"] = False
    if field.keyword_subfield:
        prop["fields"] = {"keyword": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}}
    return {k: v for k, v in prop.items() if v is not None}


def _nest(fields: tuple[Field, ...]) -> dict[str, Any]:
    """Turn dotted field names into nested ``properties`` objects."""
    root: dict[str, Any] = {}
    for field in fields:
        parts = field.name.split(".")
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {"properties": {}})["properties"]
        node[parts[-1]] = _property(field)
    return root


#: ``error.stack_trace`` as ECS maps it, for servers with the ``wildcard`` type (and ``match_only_text``):
#: substring and regex search on the whole trace, full-text search on ``.text``. Without them: ``text``.
STACK_TRACE_WILDCARD: Final = {"type": "wildcard", "fields": {"text": {"type": "match_only_text"}}}


def record_mappings(*, wildcard: bool = False) -> dict[str, Any]:
    """Mappings of the daily record indices, generated from :data:`FIELDS` (see :data:`STACK_TRACE_WILDCARD`)."""
    properties = _nest(FIELDS)
    if wildcard:
        properties["error"]["properties"]["stack_trace"] = dict(STACK_TRACE_WILDCARD)
    return {
        # Unknown keys stay in _source, unindexed: no mapping explosion from the user's own fields.
        "dynamic": False,
        "_meta": {"celery_logs.schema_version": SCHEMA_VERSION, "ecs.version": ECS_VERSION},
        "dynamic_templates": [
            {
                "labels_as_keyword": {
                    "path_match": "labels.*",
                    "mapping": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE},
                }
            }
        ],
        "properties": {
            **properties,
            # `labels` is the one dynamic subtree: context the user binds.
            "labels": {"type": "object", "dynamic": True},
        },
    }


def index_template(*, prefix: str = DEFAULT_INDEX_PREFIX, shards: int = 1, replicas: int = 0,
                   wildcard: bool = False) -> dict[str, Any]:
    """Body of ``PUT _index_template/<TEMPLATE_NAME>`` for the daily record indices."""
    return {
        # Daily indices only (`<prefix>-2026.11.30`), and the longer prefix first: the templates of
        # overlapping prefixes (`prod`, `prod-eu`) never match one index at one priority, which
        # Elasticsearch refuses. Two patterns of equal length overlap only when they are the same.
        "index_patterns": [daily_indices(prefix)],
        "priority": 200 + len(prefix),
        "_meta": {"managed_by": "celery-logs", "celery_logs.schema_version": SCHEMA_VERSION},
        "template": {
            "settings": {
                "index": {
                    "number_of_shards": shards,
                    "number_of_replicas": replicas,
                    # Records arrive in bulk from a shipper; a second of staleness is fine for analytics.
                    "refresh_interval": "5s",
                    # Records are written once and read rarely: stored fields (_source) take about half
                    # the bytes with it (benchmarks/storage.py), for a little CPU at merge and fetch.
                    "codec": "best_compression",
                    # No index sorting: records arrive nearly in time order already, and sorting newest
                    # first made @timestamp and _seq_no 3.4 B per record larger (benchmarks/storage.py).
                    "mapping": {"total_fields": {"limit": 2000}},
                }
            },
            "mappings": record_mappings(wildcard=wildcard),
        },
    }


def tasks_index_body(*, shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    """Body of ``PUT <tasks index>`` for the entity index, generated from :data:`TASK_FIELDS`."""
    return {
        "settings": {
            "index": {"number_of_shards": shards, "number_of_replicas": replicas, "codec": "best_compression"}
        },
        "mappings": {
            "dynamic": False,
            "_meta": {"celery_logs.schema_version": SCHEMA_VERSION},
            "properties": _nest(TASK_FIELDS),
        },
    }


def daily_indices(prefix: str) -> str:
    """The pattern of ``prefix``'s daily record indices and nothing else (not an index named ``<prefix>-x``)."""
    # Daily indices are <prefix>-YYYY.MM.DD; every year this software will see starts with 2.
    return f"{prefix}-2*"


def daily_index(prefix: str, timestamp: str) -> str:
    """Index of a record from its own ``@timestamp`` (``2026-11-22T...Z`` -> ``<prefix>-2026.11.22``)."""
    if len(timestamp) < 10 or timestamp[4] != "-" or timestamp[7] != "-":
        raise ValueError(f"not an ISO-8601 timestamp: {timestamp[:40]!r}")
    return f"{prefix}-{timestamp[0:4]}.{timestamp[5:7]}.{timestamp[8:10]}"


def _storage_note(field: Field) -> str:
    doc_values = field.index if field.doc_values is None else field.doc_values
    if field.index:
        return "" if doc_values else ", no doc values"
    return ", not indexed (doc values)" if doc_values else ", not indexed"


def render_markdown() -> str:
    """The schema as the Markdown table committed in ``docs/schema.md``."""
    lines = [
        "# The celery-logs record schema",
        "",
        "Generated from `celery_logs/_schema.py` by `python -m celery_logs._schema`; a test checks it is current.",
        "",
        f"Schema version `{SCHEMA_VERSION}`, ECS `{ECS_VERSION}`. Dotted names are nested objects in the JSON,",
        "except `log.level` and `ecs.version`: top-level dotted keys, after the ecs-logging spec, which also puts",
        "`@timestamp`, `log.level` and `message` first. `error.stack_trace` is `wildcard` with a `.text`",
        "multi-field where the server has that type (as ECS maps it), else `text`: `celery-logs setup` says which.",
        "",
        "## Records (`celery-logs-YYYY.MM.DD`)",
        "",
        "| field | type | ECS | meaning |",
        "|---|---|---|---|",
    ]
    for f in FIELDS:
        kind = f.type + _storage_note(f) + (" + `.keyword`" if f.keyword_subfield else "")
        lines.append(f"| `{f.name}` | {kind} | {'yes' if f.ecs else ''} | {f.description} |")
    lines.append("| `labels.*` | keyword |  yes | Context the user binds (`tenant`, `request_path`, ...). |")
    lines += ["", "## Actions", "", "| `event.action` | Celery state |", "|---|---|"]
    lines += [f"| `{a}` | {s or ''} |" for a, s in ACTIONS.items()]
    lines += [
        "",
        f"## Tasks (`{DEFAULT_TASKS_INDEX}`, one document per task id)",
        "",
        "| field | type | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{f.name}` | {f.type}{_storage_note(f)} | {f.description} |" for f in TASK_FIELDS]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - regeneration helper
    import sys

    sys.stdout.write(render_markdown())
