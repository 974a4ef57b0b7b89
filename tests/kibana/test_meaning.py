"""The objects answer their questions: each saved search and Lens layer, sent to the real Elasticsearch the
way Kibana would send it, returns what the generated history's ground truth says it must."""

from __future__ import annotations

import json
import math
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from celery_logs._schema import get_path
from pipelines.dev import synth as _synth
from pipelines.kibana import objects as ko
from tests.kibana.translate import control_filter, lens_layer_request, lens_rows, search_request

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000


class Loaded:
    """The generated history, where it was loaded, and the objects pointed at it."""

    def __init__(self, es: Any, history: _synth.SynthHistory, prefix: str, tasks_index: str) -> None:
        self.es = es
        self.history = history
        self.objects = {
            o["id"]: o
            for o in ko.build_objects(
                ko.default_catalog(records_pattern=f"{prefix}-*", tasks_pattern=tasks_index)
            )
        }
        stamps = sorted(r["@timestamp"] for r in history.records)
        self.start = (datetime.fromisoformat(stamps[0].replace("Z", "+00:00")) - timedelta(hours=1)).isoformat()
        self.end = (datetime.fromisoformat(stamps[-1].replace("Z", "+00:00")) + timedelta(hours=1)).isoformat()
        self.tasks = history.tasks

    def search(self, object_id: str, extra_kql: str = "") -> list[dict[str, Any]]:
        obj = self.objects[object_id]
        view = self.objects[obj["references"][0]["id"]]
        req = search_request(obj, view, start=self.start, end=self.end, extra_kql=extra_kql)
        index = req.pop("index")
        resp = self.es.search(index=index, **req)
        hits: list[dict[str, Any]] = resp["hits"]["hits"]
        assert resp["hits"]["total"]["value"] == len(hits), "raise size: the test must see every hit"
        return hits

    def lens(
        self, object_id: str, layer_id: str, filters: list[dict[str, Any]] | None = None
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        obj = self.objects[object_id]
        (view_id,) = {r["id"] for r in obj["references"] if r["type"] == "index-pattern"}
        view = self.objects[view_id]["attributes"]
        req = lens_layer_request(
            obj, layer_id, time_field=view["timeFieldName"], start=self.start, end=self.end, filters=filters
        )
        index = view["title"]
        resp = self.es.search(index=index, **req.body)
        rows = dict(lens_rows(req, resp))
        assert len(rows) == sum(1 for _ in lens_rows(req, resp)), "bucket keys must be unique"
        return rows


@pytest.fixture(scope="module")
def loaded(es_url: str) -> Iterator[Loaded]:
    """One generated history (failures, retries, revokes, two lost tasks) loaded once for the module."""
    from elasticsearch import Elasticsearch

    es = Elasticsearch(es_url, request_timeout=120)
    prefix = f"t{uuid.uuid4().hex[:10]}-celery-logs"
    # Outside "<prefix>-*", like celery-tasks is outside celery-logs-*: record searches must not count it.
    tasks_index = f"tasks-{prefix}"
    history = _synth.generate(tasks=300, seed=11, lost_tasks=2, revoke_probability=0.03)
    try:
        _synth.load(es, history, prefix=prefix, tasks_index=tasks_index)
        # Lost-task detection is not ours: mark the ground truth's lost tasks the way it would.
        for task in history.tasks:
            if task.lost:
                es.update(
                    index=tasks_index,
                    id=task.task_id,
                    doc={"lost": True, "lost_class": "lost", "lost_reason": "heartbeat-timeout",
                         "lost_detected_at": "2026-11-22T12:00:00Z"},
                )
        # One task of each other class: redelivery-pending is listed, requeued is not.
        others = [t for t in history.tasks if not t.lost][:2]
        for task, cls in zip(others, ("redelivery-pending", "requeued"), strict=True):
            es.update(index=tasks_index, id=task.task_id,
                      doc={"lost": False, "lost_class": cls, "lost_reason": "worker-offline"})
        es.indices.refresh(index=tasks_index)
        yield Loaded(es, history, prefix, tasks_index)
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{prefix}-*,{tasks_index}", expand_wildcards="all")
        es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-template")
        es.close()


def _hour(t: datetime) -> int:
    ms = int(t.timestamp() * 1000)
    return ms - ms % HOUR_MS


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _src(hit: dict[str, Any], dotted: str) -> Any:
    return get_path(hit["_source"], dotted)


def _assert_percentile(value: float, sample: list[int], pct: float) -> None:
    """Elasticsearch's percentile lies between the two order statistics around the exact rank."""
    ordered = sorted(sample)
    rank = pct / 100 * (len(ordered) - 1)
    low, high = ordered[math.floor(rank)], ordered[math.ceil(rank)]
    assert low <= value <= high, (value, low, high, pct, len(ordered))


# --- saved searches --------------------------------------------------------------------------------------


def test_failed_tasks_search_lists_every_failure_with_its_traceback(loaded: Loaded) -> None:
    """Failed tasks: exactly the failed tasks, newest first, each with its traceback."""
    hits = loaded.search("celery-logs-failed-tasks")
    failed = {t.task_id: t for t in loaded.tasks if t.outcome == "failure"}
    assert len(failed) > 5
    assert Counter(_src(h, "celery.task.id") for h in hits) == dict.fromkeys(failed, 1)
    for hit in hits:
        task = failed[_src(hit, "celery.task.id")]
        assert task.error_kind is not None
        assert _src(hit, "error.stack_trace") == _synth.stack_trace(task.error_kind)
    stamps = [_src(h, "@timestamp") for h in hits]
    assert stamps == sorted(stamps, reverse=True)


def test_retries_search_lists_every_retry(loaded: Loaded) -> None:
    """Retries: one hit per retry of each task."""
    hits = loaded.search("celery-logs-retries")
    expected = {t.task_id: t.retries for t in loaded.tasks if t.retries}
    assert expected
    assert Counter(_src(h, "celery.task.id") for h in hits) == expected


def test_slow_runs_search_lists_finished_runs_over_the_threshold_slowest_first(loaded: Loaded) -> None:
    """Slow runs: finished runs of at least 2 s, by duration descending."""
    hits = loaded.search("celery-logs-slow-runs")
    slow = {
        t.task_id: t.duration_ns
        for t in loaded.tasks
        if t.outcome in ("success", "failure") and t.duration_ns is not None and t.duration_ns >= ko.SLOW_RUN_NS
    }
    assert len(slow) > 3
    assert [_src(h, "celery.task.id") for h in hits] == sorted(slow, key=lambda k: -(slow[k] or 0))


def test_lost_tasks_search_lists_the_lost_tasks(loaded: Loaded) -> None:
    """Lost tasks: the tasks marked lost or redelivery-pending in the entity index, and nothing else."""
    hits = loaded.search("celery-logs-lost-tasks")
    lost = {t.task_id for t in loaded.tasks if t.lost}
    pending = next(t for t in loaded.tasks if not t.lost).task_id
    assert len(lost) == 2
    assert {h["_id"] for h in hits} == lost | {pending}
    assert {h["_source"]["lost_class"] for h in hits if h["_id"] in lost} == {"lost"}


def _expected_actions(task: _synth.SynthTask, *, app_lines: bool) -> list[str]:
    attempt = ["task-received", "task-started", *(["celery.app"] if app_lines else [])]
    return ["task-published", *[*attempt, "task-retried"] * task.retries, *attempt, str(task.end_action)]


def test_history_search_shows_one_task_or_workflow_in_order(loaded: Loaded) -> None:
    """History: by task id every record of a retried task, its lines too, oldest first; by root id its lifecycle."""
    task = next(t for t in loaded.tasks if t.retries == 2 and t.end_action)

    def actions(hits: list[dict[str, Any]]) -> list[str]:
        return [_src(h, "event.action") or _src(h, "event.dataset") for h in hits]

    by_id = loaded.search("celery-logs-task-history", f'celery.task.id:"{task.task_id}"')
    assert actions(by_id) == _expected_actions(task, app_lines=True)
    by_root = loaded.search("celery-logs-task-history", f'celery.task.root_id:"{task.root_id}"')
    assert actions(by_root) == _expected_actions(task, app_lines=False)


def test_exception_group_search_shows_one_group(loaded: Loaded) -> None:
    """Exception group: with a grouping key, exactly the failures of that exception kind."""
    kinds = Counter(t.error_kind for t in loaded.tasks if t.outcome == "failure")
    kind, count = kinds.most_common(1)[0]
    assert kind is not None and count > 1
    key = _synth.grouping_key(kind)
    hits = loaded.search("celery-logs-exception-group", f'error.grouping_key:"{key}"')
    assert sorted(_src(h, "celery.task.id") for h in hits) == sorted(
        t.task_id for t in loaded.tasks if t.outcome == "failure" and t.error_kind == kind
    )
    whole = loaded.search("celery-logs-exception-group")
    keys = [_src(h, "error.grouping_key") for h in whole]
    assert keys == sorted(keys)
    assert len(whole) == sum(kinds.values())


def test_failed_task_lines_search_puts_a_tasks_own_lines_before_its_failure(loaded: Loaded) -> None:
    """Log lines with failures: for a failed task, its own lines (one per attempt), then its failure."""
    task = next(t for t in loaded.tasks if t.outcome == "failure")
    hits = loaded.search("celery-logs-failed-task-lines", f'celery.task.id:"{task.task_id}"')
    assert [_src(h, "event.dataset") for h in hits] == ["celery.app"] * (task.retries + 1) + ["celery.task"]
    assert _src(hits[-1], "event.action") == "task-failed"
    everything = loaded.search("celery-logs-failed-task-lines")
    app_lines = sum(1 for r in loaded.history.records if r["event"]["dataset"] == "celery.app")
    failures = sum(1 for t in loaded.tasks if t.outcome == "failure")
    assert len(everything) == app_lines + failures
    order = [(_src(h, "celery.task.id"), _src(h, "@timestamp")) for h in everything]
    assert order == sorted(order)


# --- Lens ----------------------------------------------------------------------------------------------


def test_throughput_by_outcome(loaded: Loaded) -> None:
    """Throughput: finished tasks per hour per outcome."""
    rows = loaded.lens("celery-logs-throughput", "throughput")
    expected = Counter((_hour(t.ended_at), t.outcome) for t in loaded.tasks if t.end_action and t.ended_at)
    assert {k: v["runs"] for k, v in rows.items()} == expected
    assert {k[1] for k in expected} == {"success", "failure", "unknown"}


def _finished(loaded: Loaded) -> dict[str, list[_synth.SynthTask]]:
    by_name: dict[str, list[_synth.SynthTask]] = defaultdict(list)
    for t in loaded.tasks:
        if t.end_action:
            by_name[t.name].append(t)
    return by_name


def test_failure_rate_by_task(loaded: Loaded) -> None:
    """Failure rate: failures / finished runs, per task name."""
    rows = loaded.lens("celery-logs-failure-rate", "failure-rate")
    expected = {
        (name,): sum(t.outcome == "failure" for t in ts) / len(ts) for name, ts in _finished(loaded).items()
    }
    assert {k: v["rate"] for k, v in rows.items()} == expected
    assert any(rate > 0 for rate in expected.values())


def test_run_time_percentiles_by_task(loaded: Loaded) -> None:
    """Run time p50/p95/p99 of finished runs (succeeded or failed), per task name."""
    rows = loaded.lens("celery-logs-runtime-percentiles", "runtime")
    samples = {
        name: [t.duration_ns for t in ts if t.duration_ns is not None and t.outcome in ("success", "failure")]
        for name, ts in _finished(loaded).items()
    }
    assert sorted(rows) == sorted((name,) for name in samples)
    for (name,), values in rows.items():
        for pct in (50, 95, 99):
            _assert_percentile(values[f"p{pct}"], samples[name], pct)  # type: ignore[arg-type]


def test_queue_wait_p95_over_time(loaded: Loaded) -> None:
    """Queue wait p95 per hour, over every task-started record."""
    rows = loaded.lens("celery-logs-queue-wait", "queue-wait")
    samples: dict[int, list[int]] = defaultdict(list)
    for r in loaded.history.records:
        if r["event"].get("action") == "task-started":
            samples[_hour(_ts(r["@timestamp"]))].append(r["celery"]["queue_wait"])
    assert sorted(k[0] for k in rows) == sorted(samples)
    for (hour,), values in rows.items():
        _assert_percentile(values["p95"], samples[hour], 95)


def test_top_exceptions(loaded: Loaded) -> None:
    """Top exceptions: per grouping key its exception type, failure count, tasks and task names affected."""
    rows = loaded.lens("celery-logs-top-exceptions", "exceptions")
    expected: dict[tuple[str, str], dict[str, int]] = {}
    for kind in {t.error_kind for t in loaded.tasks if t.outcome == "failure"}:
        assert kind is not None
        hit = [t for t in loaded.tasks if t.outcome == "failure" and t.error_kind == kind]
        key = (_synth.grouping_key(kind), _synth.ERROR_KINDS[kind][0])
        expected[key] = {
            "failures": len(hit),
            "tasks": len({t.task_id for t in hit}),
            "names": len({t.name for t in hit}),
        }
    assert rows == expected
    assert len(expected) >= 3


def test_workers_online_and_active_tasks(loaded: Loaded) -> None:
    """Workers: per hour, how many workers sent heartbeats, and each one's most active tasks."""
    online = loaded.lens("celery-logs-workers", "workers-online")
    active = loaded.lens("celery-logs-workers", "active-tasks")
    workers: dict[int, set[str]] = defaultdict(set)
    most: dict[tuple[int, str], int] = {}
    for r in loaded.history.records:
        if r["event"].get("action") == "worker-heartbeat":
            hour, worker = _hour(_ts(r["@timestamp"])), r["celery"]["worker"]
            workers[hour].add(worker)
            most[(hour, worker)] = max(most.get((hour, worker), 0), r["celery"]["worker_stats"]["active"])
    assert {k: v["online"] for k, v in online.items()} == {(h,): len(ws) for h, ws in workers.items()}
    assert {k: v["active"] for k, v in active.items()} == most
    # The killed worker drops out: the last hours have fewer workers online than the first.
    counts = [v["online"] for _k, v in sorted(online.items())]
    assert counts[0] == 3 and counts[-1] == 2


def test_task_table(loaded: Loaded) -> None:
    """Task table: per task name its finished runs, failures, failure %, p50, p95 and max run time."""
    rows = loaded.lens("celery-logs-task-table", "tasks")
    for name, ts in _finished(loaded).items():
        row = rows[(name,)]
        failures = sum(t.outcome == "failure" for t in ts)
        durations = [t.duration_ns for t in ts if t.duration_ns is not None]
        assert (row["runs"], row["failures"], row["rate"]) == (len(ts), failures, failures / len(ts))
        assert row["max"] == max(durations)
        _assert_percentile(row["p50"], durations, 50)
        _assert_percentile(row["p95"], durations, 95)
    assert len(rows) == len(_finished(loaded))


_CONTROL_CHOICES = {
    "service.name": ("shop", lambda t: True),
    "service.environment": ("production", lambda t: True),
    "celery.queue": ("billing", lambda t: t.queue == "billing"),
    "celery.task.name": ("reports.build_pdf", lambda t: t.name == "reports.build_pdf"),
    "celery.worker": ("celery@worker-2", lambda t: t.worker == "celery@worker-2"),
}


def test_dashboard_controls_narrow_the_panels(loaded: Loaded) -> None:
    """Each dashboard control's selection, applied as Kibana's phrase filter, narrows the task table exactly."""
    dashboard = loaded.objects[ko.DASHBOARD_ID]
    controls = json.loads(dashboard["attributes"]["controlGroupInput"]["panelsJSON"])
    fields = [c["explicitInput"]["fieldName"] for c in controls.values()]
    assert sorted(fields) == sorted(_CONTROL_CHOICES)
    for name in fields:
        value, keep = _CONTROL_CHOICES[name]
        rows = loaded.lens("celery-logs-task-table", "tasks", filters=[control_filter(name, [value])])
        expected: Counter[tuple[str]] = Counter()
        failures: Counter[tuple[str]] = Counter()
        for t in loaded.tasks:
            if t.end_action and keep(t):
                expected[(t.name,)] += 1
                failures[(t.name,)] += t.outcome == "failure"
        assert {k: v["runs"] for k, v in rows.items()} == dict(expected), name
        assert {k: v["failures"] for k, v in rows.items()} == {k: failures[k] for k in expected}, name


# --- periodic tasks and queue depth ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def beat(es_url: str) -> Iterator[tuple[Loaded, _synth.SynthBeat]]:
    """A beat history (beat away for half an hour, node1's worker gone, a flaky entry) with queue-depth samples."""
    from elasticsearch import Elasticsearch

    es = Elasticsearch(es_url, request_timeout=120)
    prefix = f"t{uuid.uuid4().hex[:10]}-celery-logs"
    tasks_index = f"tasks-{prefix}"
    generated = _synth.generate_periodic()
    try:
        _synth.load(es, generated.history, prefix=prefix, tasks_index=tasks_index)
        yield Loaded(es, generated.history, prefix, tasks_index), generated
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{prefix}-*,{tasks_index}", expand_wildcards="all")
        es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-template")
        es.close()


def test_periodic_not_started_search_lists_the_stuck_dispatches(beat: tuple[Loaded, _synth.SynthBeat]) -> None:
    """Periodic tasks not started: exactly the dispatches no worker started (node1's after it went away)."""
    loaded, generated = beat
    hits = loaded.search("celery-logs-periodic-not-started")
    never = [d for d in generated.dispatches if not d.started]
    assert len(never) == 12
    assert sorted(h["_id"] for h in hits) == sorted(d.task_id for d in never)
    assert {h["_source"]["beat_entry"] for h in hits} == {"node1-cleanup"}
    sent = [h["_source"]["sent_at"] for h in hits]
    assert sent == sorted(sent, reverse=True)


def test_periodic_entries_table(beat: tuple[Loaded, _synth.SynthBeat]) -> None:
    """Per entry: sent, started, succeeded, failed, not started, missed and worst lateness, as generated."""
    loaded, generated = beat
    rows = loaded.lens("celery-logs-periodic-entries", "entries")
    expected: dict[tuple[str], dict[str, int]] = {}
    for entry in {d.entry for d in generated.dispatches}:
        ds = [d for d in generated.dispatches if d.entry == entry]
        expected[(entry,)] = {
            "sent": len(ds),
            "started": sum(d.started for d in ds),
            "succeeded": sum(d.outcome == "success" for d in ds),
            "failed": sum(d.outcome == "failure" for d in ds),
            "not_started": sum(not d.started for d in ds),
            "missed": sum(d.missed for d in ds),
            "lateness": max(d.lateness_ns for d in ds),
        }
    assert rows == expected
    assert expected[("node1-cleanup",)]["missed"] == 5 and expected[("nightly-report",)]["failed"] > 0


def test_queue_depth_per_queue_over_time(beat: tuple[Loaded, _synth.SynthBeat]) -> None:
    """Queue depth: per hour and queue, the largest depth any worker sampled."""
    loaded, generated = beat
    rows = loaded.lens("celery-logs-queue-depth", "depth")
    expected: dict[tuple[int, str], int] = {}
    for s in generated.depths:
        key = (_hour(s.at), s.queue)
        expected[key] = max(expected.get(key, 0), s.depth)
    assert {k: v["depth"] for k, v in rows.items()} == expected
    assert max(v for (_h, q), v in expected.items() if q == "node1-crontab") == 12
