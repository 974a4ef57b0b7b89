"""Every number of the report against answers computed independently from the generated ground truth."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest

from pipelines.analytics.query import Filters
from pipelines.analytics.render import render
from pipelines.analytics.report import Report, ReportSettings, RunStats, build_report
from pipelines.dev.synth import ERROR_KINDS, WORKER_LOST_ERROR, SynthTask, grouping_key, stack_trace

from .conftest import PREVIOUS, START, WINDOW, Loaded
from .expected import Expected, percentile, stats_by

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(loaded: Loaded) -> Report:
    settings = ReportSettings(window=WINDOW, prefix=loaded.prefix, tasks_index=loaded.tasks_index)
    return build_report(loaded.es, settings, now=WINDOW.end)


def _assert_stats(got: RunStats, want: Expected, prev: Expected | None, engine: str) -> None:
    assert (got.successes, got.failures, got.retries, got.revokes) == (
        want.successes,
        want.failures,
        want.retries,
        want.revokes,
    )
    assert got.runs == want.runs
    assert got.failure_pct == pytest.approx(want.failure_pct)
    assert len(want.durations) < 1000  # keeps the engine's percentiles exact
    for q, value in ((50, got.run_p50), (95, got.run_p95), (99, got.run_p99)):
        assert value == pytest.approx(percentile(want.durations, q, engine=engine), rel=1e-9)
    assert got.run_max == max(want.durations)
    assert got.wait_p50 == pytest.approx(percentile(want.waits, 50, engine=engine), rel=1e-9)
    assert got.wait_p95 == pytest.approx(percentile(want.waits, 95, engine=engine), rel=1e-9)
    assert got.wait_max == max(want.waits)
    assert got.previous is not None
    if prev is None:
        assert got.previous.runs == 0
        return
    assert (got.previous.successes, got.previous.failures, got.previous.retries, got.previous.revokes) == (
        prev.successes,
        prev.failures,
        prev.retries,
        prev.revokes,
    )
    assert got.runs_change_pct == pytest.approx(100.0 * (want.runs - prev.runs) / prev.runs)
    assert got.previous.run_p95 == pytest.approx(percentile(prev.durations, 95, engine=engine), rel=1e-9)
    want_p95 = percentile(want.durations, 95, engine=engine)
    prev_p95 = percentile(prev.durations, 95, engine=engine)
    assert want_p95 is not None and prev_p95 is not None
    assert got.p95_change_pct == pytest.approx(100.0 * (want_p95 - prev_p95) / prev_p95, rel=1e-9)
    if want.failure_pct is not None and prev.failure_pct is not None:
        assert got.failure_pct_change == pytest.approx(want.failure_pct - prev.failure_pct)


@pytest.mark.parametrize(
    ("section", "key"),
    [("tasks", lambda t: t.name), ("workers", lambda t: t.worker), ("queues", lambda t: t.queue)],
)
def test_grouped_stats_match_ground_truth(report: Report, loaded: Loaded, section: str, key: object) -> None:
    """Per task, worker and queue: counts, run-time and queue-wait percentiles and changes are exact."""
    want = stats_by(loaded.tasks, WINDOW, key)  # type: ignore[arg-type]
    prev = stats_by(loaded.tasks, PREVIOUS, key)  # type: ignore[arg-type]
    got = {s.key: s for s in getattr(report, section)}
    assert sorted(got) == sorted(want)
    for name, stats in got.items():
        _assert_stats(stats, want[name], prev.get(name), loaded.engine)


def test_totals_and_timeline(report: Report, loaded: Loaded) -> None:
    """Totals cover every run in the window and the chart buckets add up to them."""
    want = stats_by(loaded.tasks, WINDOW, lambda t: "all")["all"]
    prev = stats_by(loaded.tasks, PREVIOUS, lambda t: "all")["all"]
    _assert_stats(report.totals, want, prev, loaded.engine)
    assert len(report.timeline) == 72  # 6 h in 5-minute buckets
    assert sum(b.successes for b in report.timeline) == want.successes
    assert sum(b.failures for b in report.timeline) == want.failures
    assert sum(b.retries for b in report.timeline) == want.retries


def _ms(t: datetime) -> datetime:
    """Elasticsearch's ``date`` keeps milliseconds."""
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def _failures_in_window(tasks: list[SynthTask]) -> list[SynthTask]:
    return [t for t in tasks if t.outcome == "failure" and t.ended_at and WINDOW.start <= t.ended_at < WINDOW.end]


def _expected_group(t: SynthTask) -> tuple[str, str, str, str]:
    """(grouping key, type, message, traceback) the failure of ``t`` was recorded with."""
    if t.error_kind is None:  # the pool child died: Celery's WorkerLostError, no traceback
        key = uuid.uuid5(uuid.NAMESPACE_OID, WORKER_LOST_ERROR).hex
        return key, WORKER_LOST_ERROR, "Worker exited prematurely: signal 9 (SIGKILL) Job: 3.", ""
    etype, message, _frames = ERROR_KINDS[t.error_kind]
    return grouping_key(t.error_kind), etype, message, stack_trace(t.error_kind)


def test_exception_groups(report: Report, loaded: Loaded) -> None:
    """Groups: type, message, exact count, tasks affected, first/last seen and the latest traceback."""
    by_key: dict[str, list[SynthTask]] = {}
    for t in _failures_in_window(loaded.tasks):
        by_key.setdefault(_expected_group(t)[0], []).append(t)
    assert report.error_groups_total == len(by_key)
    assert len(report.errors) == len(by_key)  # fewer than the default top 10
    assert [g.count for g in report.errors] == sorted((len(v) for v in by_key.values()), reverse=True)
    for group in report.errors:
        mine = by_key[group.grouping_key]
        latest = max(mine, key=lambda t: t.ended_at or START)
        assert latest.ended_at is not None
        _key, etype, message, trace = _expected_group(latest)
        assert (group.type, group.message, group.stack_trace) == (etype, message, trace)
        assert group.count == len(mine)
        assert group.tasks == tuple(sorted({t.name for t in mine}))
        assert group.first_seen == _ms(min(t.ended_at or START for t in mine))
        assert group.last_seen == _ms(latest.ended_at)
        assert group.example_task_id == latest.task_id


def test_slowest_runs(report: Report, loaded: Loaded) -> None:
    """The slowest runs are the ten longest attempts in the window, longest first."""
    attempts = [
        (a.duration_ns, t.task_id)
        for t in loaded.tasks
        for a in t.attempts
        if a.ended_at and a.duration_ns is not None and WINDOW.start <= a.ended_at < WINDOW.end
    ]
    attempts.sort(reverse=True)
    assert [(r.duration_ns, r.task_id) for r in report.slowest] == attempts[:10]


def test_lost_tasks_in_report(report: Report, loaded: Loaded) -> None:
    """The report lists exactly the generated lost tasks."""
    assert sorted(t.task_id for t in report.lost) == sorted(t.task_id for t in loaded.current.tasks if t.lost)


def test_filters_narrow_every_number(loaded: Loaded) -> None:
    """--task and --worker filters restrict counts and percentiles to the matching records."""
    settings = ReportSettings(
        window=WINDOW,
        prefix=loaded.prefix,
        tasks_index=loaded.tasks_index,
        filters=Filters(tasks=("billing.charge",), workers=("celery@worker-2",)),
    )
    rep = build_report(loaded.es, settings, now=WINDOW.end)

    def key(t: SynthTask) -> str | None:
        return "x" if t.name == "billing.charge" and t.worker == "celery@worker-2" else None

    want = stats_by(loaded.tasks, WINDOW, key)["x"]
    prev = stats_by(loaded.tasks, PREVIOUS, key)["x"]
    assert [s.key for s in rep.tasks] == ["billing.charge"]
    assert [s.key for s in rep.workers] == ["celery@worker-2"]
    _assert_stats(rep.tasks[0], want, prev, loaded.engine)
    _assert_stats(rep.totals, want, prev, loaded.engine)
    assert rep.lost == ()  # the lost tasks are on worker-3 and worker-1


def test_missing_entity_index_is_said_not_hidden(loaded: Loaded) -> None:
    """Without the entity index the report says lost tasks were not looked for, rather than 'none'."""
    settings = ReportSettings(window=WINDOW, prefix=loaded.prefix, tasks_index=f"{loaded.prefix}-no-such-entity")
    rep = build_report(loaded.es, settings, now=WINDOW.end)
    assert rep.lost == ()
    note = f"lost-task detection skipped: the entity index '{loaded.prefix}-no-such-entity' does not exist"
    assert rep.lost_note == note
    assert f"== Lost tasks ==\n  {note}\n" in render(rep, "table")
