"""Synthetic, schema-true Celery histories with known answers.

Used by the tests of the Kibana objects and the reports (which compute the right answers from the
generated tasks in plain Python, independently of Elasticsearch), by ``benchmarks/report_speed.py``,
and by ``celery-logs dev seed`` for trying Kibana without a real worker.

Everything is driven by one ``random.Random(seed)``: the same arguments give the same records.
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from celery_logs import _schema

#: (task name, queue, median run seconds, failure probability, retry probability)
DEFAULT_TASKS: tuple[tuple[str, str, float, float, float], ...] = (
    ("billing.charge", "billing", 0.120, 0.08, 0.05),
    ("billing.refund", "billing", 0.300, 0.02, 0.00),
    ("mail.send_welcome", "mail", 0.040, 0.01, 0.10),
    ("reports.build_pdf", "reports", 2.500, 0.05, 0.00),
    ("search.reindex", "default", 0.800, 0.00, 0.00),
)

#: (error.type, message template, frames) — frames as (module, function) pairs, innermost last.
ERROR_KINDS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("builtins.KeyError", "'customer_id'", (("billing.tasks", "charge"), ("billing.api", "lookup_customer"))),
    (
        "requests.exceptions.Timeout",
        "HTTPSConnectionPool(host='pay.example', port=443): Read timed out.",
        (("billing.tasks", "charge"), ("billing.gateway", "post"), ("requests.sessions", "request")),
    ),
    ("builtins.ValueError", "invalid literal for int() with base 10: 'n/a'", (("reports.tasks", "build_pdf"),)),
    ("smtplib.SMTPServerDisconnected", "Connection unexpectedly closed", (("mail.tasks", "send_welcome"),)),
)


#: What Celery's parent process records when a pool child dies mid-task.
WORKER_LOST_ERROR = "billiard.exceptions.WorkerLostError"


@dataclass(frozen=True)
class SynthAttempt:
    """One delivery that started: its ``task-started`` record and, unless lost, the record that ended it."""

    started_at: datetime
    queue_wait_ns: int
    ended_at: datetime | None = None
    end_action: str | None = None  # task-succeeded / task-failed / task-retried; None when lost
    duration_ns: int | None = None


@dataclass
class SynthTask:
    """One generated task execution history and the facts a right answer needs."""

    task_id: str
    name: str
    queue: str
    worker: str
    root_id: str
    published_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    outcome: str | None  # success / failure / None (revoked: unknown; lost: None)
    end_action: str | None
    duration_ns: int | None
    queue_wait_ns: int | None
    retries: int = 0
    error_kind: int | None = None
    lost: bool = False
    #: Every attempt, retried ones included (the fields above describe the last one).
    attempts: list[SynthAttempt] = field(default_factory=list)


@dataclass
class SynthHistory:
    """Generated records plus the ground truth they were made from."""

    records: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[SynthTask] = field(default_factory=list)
    #: worker name -> when it went away (offline record, or killed: last heartbeat)
    workers_gone: dict[str, datetime] = field(default_factory=dict)

    def ndjson(self) -> Iterator[str]:
        for r in self.records:
            yield json.dumps(r, separators=(",", ":")) + "\n"


def _ts(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _event_id(rng: random.Random, t: datetime) -> str:
    # UUIDv7 layout: 48-bit milliseconds, version 7, random rest — time-ordered like the worker's ids.
    ms = int(t.timestamp() * 1000) & ((1 << 48) - 1)
    rand = rng.getrandbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def grouping_key(error_kind: int) -> str:
    etype, _msg, frames = ERROR_KINDS[error_kind]
    return uuid.uuid5(uuid.NAMESPACE_OID, etype + "|" + "|".join(f"{m}.{f}" for m, f in frames)).hex


def stack_trace(error_kind: int) -> str:
    etype, msg, frames = ERROR_KINDS[error_kind]
    lines = ["Traceback (most recent call last):"]
    for i, (module, func) in enumerate(frames):
        path = module.replace(".", "/")
        lines.append(f'  File "/app/{path}.py", line {40 + 7 * i}, in {func}')
        lines.append(f"    result = {func}(payload)")
    lines.append(f"{etype.rsplit('.', 1)[-1] if etype.startswith('builtins.') else etype}: {msg}")
    return "\n".join(lines)


class _Emitter:
    def __init__(self, rng: random.Random, service: str, environment: str, version: str = "1.4.2") -> None:
        self.rng = rng
        self.base = {
            "ecs": {"version": _schema.ECS_VERSION},
            "celery_logs": {"schema_version": _schema.SCHEMA_VERSION},
            "service": {"name": service, "environment": environment, "version": version},
        }

    def record(
        self, t: datetime, action: str, dataset: str, message: str, level: str = "info", **sections: dict[str, Any]
    ) -> dict[str, Any]:
        rec: dict[str, Any] = {
            "@timestamp": _ts(t),
            "message": message,
            "log": {"level": level, "logger": "celery_logs.task" if dataset == "celery.task" else dataset},
            "event": {"id": _event_id(self.rng, t), "kind": "event", "dataset": dataset},
            **self.base,
        }
        if action:
            rec["event"]["action"] = action
        for key, value in sections.items():
            if isinstance(rec.get(key), dict):
                rec[key] = {**rec[key], **value}
            else:
                rec[key] = value
        return rec


def generate(
    *,
    tasks: int = 1000,
    start: datetime | None = None,
    span: timedelta = timedelta(hours=6),
    workers: int = 3,
    seed: int = 7,
    service: str = "shop",
    environment: str = "production",
    task_kinds: tuple[tuple[str, str, float, float, float], ...] = DEFAULT_TASKS,
    revoke_probability: float = 0.01,
    lost_tasks: int = 2,
    worker_lost_tasks: int = 0,
    heartbeat_every: timedelta = timedelta(seconds=60),
    app_lines: bool = True,
    version: str = "1.4.2",
) -> SynthHistory:
    """Generate ``tasks`` task histories over ``span`` from ``start`` (UTC), spread over ``workers``.

    The last worker is killed (no ``worker-offline``) after its last heartbeat while ``lost_tasks`` of
    its tasks are running: those are the lost tasks. The first worker goes offline cleanly at the end.
    ``worker_lost_tasks`` tasks on the first worker lose their pool child mid-task (``WorkerLostError``).
    """
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    start = start or datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)
    emit = _Emitter(rng, service, environment, version)
    hist = SynthHistory()
    names = [f"celery@worker-{i + 1}" for i in range(workers)]
    killed = names[-1]
    killed_at = start + span * 0.75
    hist.workers_gone[killed] = killed_at

    for i in range(tasks):
        name, queue, median, p_fail, p_retry = task_kinds[i % len(task_kinds)]
        published = start + timedelta(seconds=rng.uniform(0, span.total_seconds() * 0.98))
        worker = names[rng.randrange(workers)]
        if worker == killed and published >= killed_at:
            worker = names[0]
        hist.tasks.append(
            _one_task(
                emit,
                hist.records,
                rng,
                name=name,
                queue=queue,
                median=median,
                p_fail=p_fail,
                p_retry=p_retry,
                p_revoke=revoke_probability,
                published=published,
                worker=worker,
                app_lines=app_lines,
            )
        )

    # Lost tasks: received and started on the killed worker just before it died, never finished.
    for j in range(lost_tasks):
        name, queue, *_ = task_kinds[j % len(task_kinds)]
        task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        published = killed_at - timedelta(seconds=5 + j)
        started = published + timedelta(milliseconds=30)
        ctx: dict[str, Any] = {
            "celery": {
                "task": {"id": task_id, "name": name, "root_id": task_id, "retries": 0},
                "queue": queue,
                "worker": killed,
            }
        }
        hist.records.append(emit.record(published, "task-published", "celery.task", f"task published: {name}", **ctx))
        hist.records.append(
            emit.record(
                published + timedelta(milliseconds=10), "task-received", "celery.task", f"task received: {name}", **ctx
            )
        )
        ctx_started: dict[str, Any] = {"celery": {**ctx["celery"], "queue_wait": 30_000_000}}
        hist.records.append(emit.record(started, "task-started", "celery.task", f"task started: {name}", **ctx_started))
        hist.tasks.append(
            SynthTask(
                task_id,
                name,
                queue,
                killed,
                task_id,
                published,
                started,
                None,
                None,
                None,
                None,
                30_000_000,
                lost=True,
                attempts=[SynthAttempt(started, 30_000_000)],
            )
        )

    # Pool children killed mid-task: the worker lives on and records WorkerLostError (what Celery's
    # parent process reports when a child dies), so these are lost although they have ended.
    for j in range(worker_lost_tasks):
        name, queue, *_ = task_kinds[j % len(task_kinds)]
        task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        worker = names[0]
        published = start + span * 0.5 + timedelta(seconds=10 * j)
        started = published + timedelta(milliseconds=30)
        died = started + timedelta(seconds=2)
        run_ns = int((died - started).total_seconds() * 1e9)
        ident = {"id": task_id, "name": name, "root_id": task_id, "retries": 0}
        where = {"queue": queue, "worker": worker}
        hist.records.append(
            emit.record(
                published,
                "task-published",
                "celery.task",
                f"task published: {name}",
                celery={"task": ident, "queue": queue},
            )
        )
        hist.records.append(
            emit.record(
                published + timedelta(milliseconds=10),
                "task-received",
                "celery.task",
                f"task received: {name}",
                celery={"task": {**ident, "state": "RECEIVED"}, **where},
            )
        )
        hist.records.append(
            emit.record(
                started,
                "task-started",
                "celery.task",
                f"task started: {name}",
                celery={"task": {**ident, "state": "STARTED"}, **where, "queue_wait": 30_000_000},
            )
        )
        hist.records.append(
            emit.record(
                died,
                "task-failed",
                "celery.task",
                f"task failed: {name} (WorkerLostError) after 2.000 s",
                level="error",
                event={"outcome": "failure", "duration": run_ns, "start": _ts(started), "end": _ts(died)},
                celery={"task": {**ident, "state": "FAILURE"}, **where},
                error={
                    "type": WORKER_LOST_ERROR,
                    "message": "Worker exited prematurely: signal 9 (SIGKILL) Job: 3.",
                    "grouping_key": uuid.uuid5(uuid.NAMESPACE_OID, WORKER_LOST_ERROR).hex,
                },
            )
        )
        hist.tasks.append(
            SynthTask(
                task_id,
                name,
                queue,
                worker,
                task_id,
                published,
                started,
                died,
                "failure",
                "task-failed",
                run_ns,
                30_000_000,
                lost=True,
                attempts=[SynthAttempt(started, 30_000_000, died, "task-failed", run_ns)],
            )
        )

    # Heartbeats: every worker beats until it goes away; the first goes offline cleanly at the end.
    end = start + span
    for w in names:
        stop = killed_at - timedelta(seconds=1) if w == killed else end
        hist.records.append(
            emit.record(
                start - timedelta(seconds=1),
                "worker-online",
                "celery.worker",
                f"worker online: {w}",
                celery={"worker": w},
            )
        )
        t = start
        while t < stop:
            stats = {
                "active": rng.randrange(0, 4),
                "processed": int((t - start).total_seconds()),
                "pool_size": 4,
                "rss_bytes": 80_000_000 + rng.randrange(10_000_000),
                "loadavg": 0.5,
            }
            hist.records.append(
                emit.record(
                    t,
                    "worker-heartbeat",
                    "celery.worker",
                    f"worker heartbeat: {w}",
                    celery={"worker": w, "worker_stats": stats},
                )
            )
            t += heartbeat_every
        if w != killed:
            hist.records.append(
                emit.record(end, "worker-offline", "celery.worker", f"worker offline: {w}", celery={"worker": w})
            )
            hist.workers_gone.setdefault(w, end)
    hist.records.sort(key=lambda r: r["@timestamp"])
    return hist


def _one_task(
    emit: _Emitter,
    out: list[dict[str, Any]],
    rng: random.Random,
    *,
    name: str,
    queue: str,
    median: float,
    p_fail: float,
    p_retry: float,
    p_revoke: float,
    published: datetime,
    worker: str,
    app_lines: bool,
) -> SynthTask:
    task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    ident = {"id": task_id, "name": name, "root_id": task_id}
    where = {"queue": queue, "worker": worker, "exchange": "", "routing_key": queue}
    trace = {"id": uuid.UUID(int=rng.getrandbits(128)).hex}
    out.append(
        emit.record(
            published,
            "task-published",
            "celery.task",
            f"task published: {name}",
            celery={"task": {**ident, "retries": 0}, "queue": queue},
            trace=trace,
        )
    )
    t = published
    retries = 0
    if rng.random() < p_revoke:
        t += timedelta(milliseconds=rng.uniform(1, 50))
        out.append(
            emit.record(
                t,
                "task-received",
                "celery.task",
                f"task received: {name}",
                celery={"task": {**ident, "retries": 0, "state": "RECEIVED"}, **where},
                trace=trace,
            )
        )
        t += timedelta(milliseconds=rng.uniform(1, 500))
        out.append(
            emit.record(
                t,
                "task-revoked",
                "celery.task",
                f"task revoked: {name}",
                level="warning",
                event={"outcome": "unknown"},
                celery={
                    "task": {**ident, "retries": 0, "state": "REVOKED"},
                    **where,
                    "revoke": {"terminated": False, "expired": False},
                },
                trace=trace,
            )
        )
        return SynthTask(
            task_id, name, queue, worker, task_id, published, None, t, "unknown", "task-revoked", None, None
        )
    will_retry = rng.random() < p_retry
    attempts: list[SynthAttempt] = []
    while True:
        wait = timedelta(milliseconds=rng.lognormvariate(3.0, 1.0))
        received = t + wait / 3
        started = t + wait
        queue_wait_ns = int((started - t).total_seconds() * 1e9)
        run = timedelta(seconds=median * rng.lognormvariate(0.0, 0.5))
        ended = started + run
        duration_ns = int(run.total_seconds() * 1e9)
        state = {"task": {**ident, "retries": retries}}
        out.append(
            emit.record(
                received,
                "task-received",
                "celery.task",
                f"task received: {name}",
                celery={**state, **where, "task": {**state["task"], "state": "RECEIVED"}},
                trace=trace,
            )
        )
        out.append(
            emit.record(
                started,
                "task-started",
                "celery.task",
                f"task started: {name}",
                celery={**where, "task": {**state["task"], "state": "STARTED"}, "queue_wait": queue_wait_ns},
                trace=trace,
            )
        )
        if app_lines:
            out.append(
                emit.record(
                    started + run / 2,
                    "",
                    "celery.app",
                    f"processing {name} step 1",
                    log={"level": "info", "logger": name.split(".", maxsplit=1)[0]},
                    celery={"task": {"id": task_id, "name": name}},
                    trace=trace,
                    labels={"tenant": f"tenant-{rng.randrange(5)}"},
                )
            )
        if will_retry and retries < 2:
            retries += 1
            out.append(
                emit.record(
                    ended,
                    "task-retried",
                    "celery.task",
                    f"task retried: {name}",
                    level="warning",
                    event={"outcome": "unknown", "duration": duration_ns},
                    celery={
                        **where,
                        "task": {**ident, "retries": retries - 1, "state": "RETRY"},
                        "retry": {"reason": "Retry in 1s"},
                    },
                    trace=trace,
                )
            )
            attempts.append(SynthAttempt(started, queue_wait_ns, ended, "task-retried", duration_ns))
            t = ended + timedelta(seconds=1)
            continue
        fail = rng.random() < p_fail
        attempts.append(
            SynthAttempt(started, queue_wait_ns, ended, "task-failed" if fail else "task-succeeded", duration_ns)
        )
        if fail:
            kind = _error_kind_for(name, rng)
            etype, msg, _frames = ERROR_KINDS[kind]
            out.append(
                emit.record(
                    ended,
                    "task-failed",
                    "celery.task",
                    f"task failed: {name} ({etype.rsplit('.', 1)[-1]}) after {run.total_seconds():.3f} s",
                    level="error",
                    event={"outcome": "failure", "duration": duration_ns, "start": _ts(started), "end": _ts(ended)},
                    celery={**where, "task": {**ident, "retries": retries, "state": "FAILURE"}},
                    error={
                        "type": etype,
                        "message": msg,
                        "stack_trace": stack_trace(kind),
                        "grouping_key": grouping_key(kind),
                    },
                    trace=trace,
                )
            )
        else:
            kind = None
            out.append(
                emit.record(
                    ended,
                    "task-succeeded",
                    "celery.task",
                    f"task succeeded: {name} in {run.total_seconds():.3f} s",
                    event={"outcome": "success", "duration": duration_ns, "start": _ts(started), "end": _ts(ended)},
                    celery={**where, "task": {**ident, "retries": retries, "state": "SUCCESS"}},
                    trace=trace,
                )
            )
        return SynthTask(
            task_id, name, queue, worker, task_id, published, started, ended,
            "failure" if fail else "success", attempts[-1].end_action, duration_ns, queue_wait_ns, retries, kind,
            attempts=attempts,
        )  # fmt: skip


def _error_kind_for(name: str, rng: random.Random) -> int:
    module = name.split(".", maxsplit=1)[0]
    kinds = [i for i, (_t, _m, frames) in enumerate(ERROR_KINDS) if frames[0][0].startswith(module)]
    return rng.choice(kinds) if kinds else 0


def bulk_actions(
    records: Iterable[dict[str, Any]],
    *,
    prefix: str = _schema.DEFAULT_INDEX_PREFIX,
    tasks_index: str | None = _schema.DEFAULT_TASKS_INDEX,
) -> Iterator[dict[str, Any]]:
    """Actions for ``elasticsearch.helpers.bulk``: ``create`` per record, entity upserts when asked.

    This is how tests and benchmarks load generated data straight into a cluster; real deployments use
    the shipper, which applies the same two rules (daily index + ``_id``, and ``task_entity_update``).
    """
    for rec in records:
        yield {
            "_op_type": "create",
            "_index": _schema.daily_index(prefix, rec["@timestamp"]),
            "_id": rec["event"]["id"],
            "_source": rec,
        }
        if tasks_index:
            upd = _schema.task_entity_update(rec)
            if upd is not None:
                yield {
                    "_op_type": "update",
                    "_index": tasks_index,
                    "_id": upd[0],
                    "doc": upd[1],
                    "doc_as_upsert": True,
                    "retry_on_conflict": 3,
                }


def load(
    es: Any,
    history: SynthHistory,
    *,
    prefix: str = _schema.DEFAULT_INDEX_PREFIX,
    tasks_index: str | None = _schema.DEFAULT_TASKS_INDEX,
    chunk_size: int = 2000,
) -> int:
    """Install the template (and entity index), bulk-load ``history`` and refresh; returns records loaded."""
    from elasticsearch import helpers

    es.indices.put_index_template(name=f"{prefix}-template", **_schema.index_template(prefix=prefix))
    if tasks_index:
        es.options(ignore_status=400).indices.create(index=tasks_index, **_schema.tasks_index_body())
    helpers.bulk(
        es.options(request_timeout=120),
        bulk_actions(history.records, prefix=prefix, tasks_index=tasks_index),
        chunk_size=chunk_size,
    )
    es.indices.refresh(index=f"{prefix}-*" + (f",{tasks_index}" if tasks_index else ""))
    return len(history.records)


# --- periodic tasks and queue depth -----------------------------------------------------------------------

#: (entry, task, queue, period in seconds, schedule text, failure probability)
PERIODIC_ENTRIES: tuple[tuple[str, str, str, int, str, float], ...] = (
    ("nightly-report", "reports.nightly", "default", 600, "every 600s", 0.25),
    ("node1-cleanup", "cleanup.node", "node1-crontab", 300, "every 300s", 0.0),
    ("hourly-sync", "sync.hourly", "default", 3600, "crontab 0 * * * *", 0.0),
)


@dataclass(frozen=True)
class SynthDispatch:
    """One periodic dispatch by beat and what became of its task."""

    entry: str
    task: str
    task_id: str
    queue: str
    sent_at: datetime
    due: datetime
    lateness_ns: int
    missed: int
    started: bool
    outcome: str | None  # success / failure / None (never started)


@dataclass(frozen=True)
class SynthDepth:
    """One ``worker-queue-depth`` sample."""

    at: datetime
    worker: str
    queue: str
    depth: int
    consumed: bool


@dataclass
class SynthBeat:
    """A beat history with known answers: its records, every dispatch, every depth sample."""

    history: SynthHistory
    dispatches: list[SynthDispatch]
    depths: list[SynthDepth]


def generate_periodic(
    *,
    start: datetime | None = None,
    span: timedelta = timedelta(hours=3),
    seed: int = 5,
    service: str = "shop",
    environment: str = "production",
    beat_down: tuple[timedelta, timedelta] = (timedelta(minutes=100), timedelta(minutes=130)),
    node1_stops: timedelta = timedelta(minutes=90),
) -> SynthBeat:
    """Beat dispatching :data:`PERIODIC_ENTRIES` for ``span``: beat away during ``beat_down`` (due times in it
    are missed, one catch-up run each when it returns), node1's worker gone after ``node1_stops`` (its queue's
    dispatches never start and pile up); workers sample queue depth every minute."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    start = start or datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)
    end = start + span
    down_from, down_to = start + beat_down[0], start + beat_down[1]
    node1_gone = start + node1_stops
    emit = _Emitter(rng, service, environment)
    records: list[dict[str, Any]] = []
    dispatches: list[SynthDispatch] = []
    for entry, task, queue, period, text, fail_p in PERIODIC_ENTRIES:
        step = timedelta(seconds=period)
        due = start + step
        while due < end:
            if down_from <= due < down_to:
                # Beat is away: every due time until it returns passes; the first is sent late, the rest missed.
                passed = 1
                while due + step * passed < down_to:
                    passed += 1
                sent_at = down_to + timedelta(milliseconds=rng.randint(50, 900))
                missed = passed - 1
                # An interval restarts from the dispatch; a crontab keeps its grid.
                next_due = sent_at + step if text.startswith("every") else due + step * passed
            else:
                sent_at = due + timedelta(milliseconds=rng.randint(1, 40))
                missed = 0
                next_due = due + step
            lateness = int((sent_at - due).total_seconds() * 1e6) * 1000
            task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            beat = {"entry": entry, "schedule": text, "due": _ts(due), "lateness": lateness, "missed": missed,
                    "next_due": _ts(next_due)}
            if text.startswith("every"):
                beat["interval"] = period * 1_000_000_000
            records.append(emit.record(sent_at, "beat-sent", "celery.beat", f"beat sent: {entry} ({task})",
                                       celery={"task": {"id": task_id, "name": task}, "queue": queue, "beat": beat}))
            started = not (queue == "node1-crontab" and sent_at >= node1_gone)
            outcome: str | None = None
            if started:
                worker = "celery@node1" if queue == "node1-crontab" else f"celery@worker-{rng.randint(1, 2)}"
                own = {"id": task_id, "name": task}
                part: dict[str, Any] = {"task": own, "queue": queue, "worker": worker}
                received = sent_at + timedelta(milliseconds=rng.randint(2, 30))
                began = received + timedelta(milliseconds=rng.randint(1, 20))
                duration = rng.randint(5_000_000, 900_000_000)
                ended = began + timedelta(microseconds=duration // 1000)
                outcome = "failure" if rng.random() < fail_p else "success"
                action = "task-failed" if outcome == "failure" else "task-succeeded"
                records.append(emit.record(received, "task-received", "celery.task", f"task received: {task}",
                                           celery={**part, "task": {**own, "state": "RECEIVED"}}))
                records.append(emit.record(
                    began, "task-started", "celery.task", f"task started: {task}",
                    celery={**part, "task": {**own, "state": "STARTED"},
                            "queue_wait": int((began - sent_at).total_seconds() * 1e9)},
                ))
                records.append(emit.record(
                    ended, action, "celery.task", f"{action.replace('-', ' ')}: {task}",
                    level="error" if outcome == "failure" else "info",
                    event={"outcome": outcome, "duration": duration, "start": _ts(began), "end": _ts(ended)},
                    celery={**part, "task": {**own, "state": "FAILURE" if outcome == "failure" else "SUCCESS"}},
                ))
            dispatches.append(SynthDispatch(entry, task, task_id, queue, sent_at, due, lateness, missed, started,
                                            outcome))
            due = next_due
    depths: list[SynthDepth] = []
    at = start + timedelta(seconds=30)
    while at < end:
        samplers = [("celery@worker-1", "default", True), ("celery@worker-2", "default", True),
                    ("celery@worker-1", "node1-crontab", False)]
        if at < node1_gone:
            samplers.append(("celery@node1", "node1-crontab", True))
        for worker, queue, consumed in samplers:
            if queue == "node1-crontab":
                depth = sum(1 for d in dispatches if d.queue == queue and not d.started and d.sent_at <= at)
            else:
                depth = rng.randint(0, 6)
            depths.append(SynthDepth(at, worker, queue, depth, consumed))
            records.append(emit.record(at + timedelta(microseconds=rng.randint(0, 999)), "worker-queue-depth",
                                       "celery.worker", f"queue depth: {queue} {depth}",
                                       celery={"queue": queue, "queue_depth": depth, "queue_consumed": consumed,
                                               "worker": worker}))
        at += timedelta(minutes=1)
    records.sort(key=lambda r: r["@timestamp"])
    return SynthBeat(SynthHistory(records=records), dispatches, depths)
