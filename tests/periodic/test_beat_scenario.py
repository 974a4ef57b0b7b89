"""Periodic tasks end to end: a real ``celery beat`` (PersistentScheduler) and real prefork workers on Redis,
shipped into the real Elasticsearch, reported; every count checked against what the record files say."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from pipelines import Shipper, ShipperConfig, install
from pipelines.analytics import Filters, ReportSettings, Window, build_report, render
from tests.periodic.beat import start_beat
from tests.support.workers import run_worker
from tests.worker.conftest import read_records

pytestmark = pytest.mark.integration

APP = "tests.periodic.apps.beat_app"
INTERVAL = 2.0
ENTRIES = ("fail-every", "node1-cleanup", "ok-every")


def _ts(record: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(record["@timestamp"].replace("Z", "+00:00"))


def _sent(records: list[dict[str, Any]], entry: str | None = None) -> list[dict[str, Any]]:
    out = [r for r in records if r["event"].get("action") == "beat-sent"
           and (entry is None or r["celery"]["beat"]["entry"] == entry)]
    return sorted(out, key=lambda r: r["event"]["id"])


def _wait(log_dir: Path, check: Callable[[list[dict[str, Any]]], bool], timeout: float = 90.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    records: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        records = read_records(log_dir)
        if check(records):
            return records
        time.sleep(0.1)  # poll interval, not a wait for an outcome
    raise AssertionError(f"not reached in {timeout} s; beat-sent so far: {len(_sent(records))}")


def _ids(records: list[dict[str, Any]], action: str) -> set[str]:
    return {r["celery"]["task"]["id"] for r in records if r["event"].get("action") == action}


def test_stuck_missed_and_failed_periodic_tasks_are_counted_exactly(
    es: Elasticsearch, index_prefix: str, broker_url: str, tmp_path: Path
) -> None:
    """Beat on a 2 s interval: node1's worker stopped (stuck), beat away for over two intervals (missed), a
    failing entry (failed); the report's Periodic tasks section equals what the record files show."""
    log_dir = tmp_path / "logs"
    env = {"CELERY_LOGS_LOG_DIR": str(log_dir), "CELERY_LOGS_HEARTBEAT_INTERVAL": "1",
           "PERIODIC_INTERVAL": str(INTERVAL)}
    schedule = tmp_path / "beat-schedule"
    main_env = {**env, "CELERY_LOGS_WATCH_QUEUES": "node1-crontab"}
    with run_worker(APP, broker_url=broker_url, workdir=tmp_path, queues=["periodic"], env=main_env) as main, \
            run_worker(APP, broker_url=broker_url, workdir=tmp_path, concurrency=1, queues=["node1-crontab"],
                       env=env) as node1:
        beat = start_beat(APP, broker_url=broker_url, schedule=schedule, workdir=tmp_path, env=env)
        try:
            # Three dispatches of every entry while everything runs, node1's included.
            _wait(log_dir, lambda rs: all(len(_sent(rs, e)) >= 3 for e in ENTRIES))
            node1.stop()
            stopped_node1 = len(_sent(read_records(log_dir), "node1-cleanup"))
            _wait(log_dir, lambda rs: len(_sent(rs, "node1-cleanup")) >= stopped_node1 + 2)
            # Beat goes away right after a dispatch of ok-every, for a bit over two intervals past its next due.
            seen = len(_sent(read_records(log_dir), "ok-every"))
            records = _wait(log_dir, lambda rs: len(_sent(rs, "ok-every")) > seen)
            beat.stop()
            last_before = _sent(read_records(log_dir), "ok-every")[-1]
            next_due = _ts(last_before) + timedelta(seconds=INTERVAL)
            restart_at = next_due + timedelta(seconds=2 * INTERVAL + 0.3)
            # A planned outage, not a wait for an outcome: beat must stay away until then.
            time.sleep(max((restart_at - datetime.now(timezone.utc)).total_seconds(), 0))
            beat = start_beat(APP, broker_url=broker_url, schedule=schedule, workdir=tmp_path, env=env)
            before = {e: len(_sent(read_records(log_dir), e)) for e in ENTRIES}
            # Stopped between two ticks (all entries sent as often), never in the middle of a publish: beat's
            # SIGTERM handler raises SystemExit wherever it lands, so a message interrupted mid-publish may be
            # in the queue without its beat-sent record (see docs/periodic.md).
            _wait(log_dir, lambda rs: all(len(_sent(rs, e)) >= before[e] + 2 for e in ENTRIES)
                  and len({len(_sent(rs, e)) for e in ENTRIES}) == 1)
        finally:
            beat.stop()
        # Every dispatch to the live queue has ended before the workers stop.
        records = read_records(log_dir)
        live = {r["celery"]["task"]["id"] for r in _sent(records) if r["celery"]["queue"] == "periodic"}
        _wait(log_dir, lambda rs: live <= _ids(rs, "task-succeeded") | _ids(rs, "task-failed"))
        # The watching worker samples node1's queue once more after beat's last dispatch.
        last_sent = _sent(records)[-1]["@timestamp"]
        _wait(log_dir, lambda rs: any(r["event"].get("action") == "worker-queue-depth" and r["@timestamp"] > last_sent
                                      and r["celery"]["queue"] == "node1-crontab" for r in rs))
        main.stop()
    records = read_records(log_dir)

    # Beat's own records: online twice, offline twice, heartbeats between.
    actions = [r["event"]["action"] for r in records if r["event"]["dataset"] == "celery.beat"]
    assert actions.count("beat-online") == 2
    assert actions.count("beat-offline") == 2
    assert actions.count("beat-heartbeat") >= 4

    # The catch-up dispatch after the outage says how many due times passed with nothing sent.
    # Its due time is the one after the last dispatch before the outage (beat's own schedule state), and
    # every later due time up to the dispatch passed with nothing sent.
    catch_up = next(r for r in _sent(records, "ok-every") if r["event"]["id"] > last_before["event"]["id"])
    due = datetime.fromisoformat(catch_up["celery"]["beat"]["due"].replace("Z", "+00:00"))
    assert abs((due - next_due).total_seconds()) < 1.0
    gap = (_ts(catch_up) - due).total_seconds()
    assert catch_up["celery"]["beat"]["missed"] == int(gap // INTERVAL) >= 2
    assert catch_up["celery"]["beat"]["lateness"] >= 2 * INTERVAL * 1e9

    cfg = ShipperConfig(paths=(str(log_dir / "*.jsonl"),), state_dir=tmp_path / "state", index_prefix=index_prefix,
                        tasks_index=f"{index_prefix}.tasks", follow=False)
    install(es, index_prefix=index_prefix, tasks_index=cfg.tasks_index)
    try:
        stats = Shipper(cfg, client=es).run_once()
        assert stats.as_dict()["dead_lettered"] == 0
        es.indices.refresh(index=f"{index_prefix}-*,{cfg.tasks_index}")
        last = max(_ts(r) for r in records)
        stuck_after = timedelta(seconds=20)
        window = Window(min(_ts(r) for r in records) - timedelta(minutes=1), last + timedelta(minutes=1))
        report = build_report(es, ReportSettings(window=window, prefix=index_prefix, tasks_index=cfg.tasks_index,
                                                 filters=Filters(services=("periodic",)), stuck_after=stuck_after,
                                                 missed_grace=timedelta(minutes=1),
                                                 queue_recent=timedelta(seconds=3)),
                              now=last + stuck_after + timedelta(seconds=1))
        as_json = json.loads(render(report, "json"))
        got = {p["entry"]: p for p in as_json["periodic"]}
        depth = {q["queue"]: q for q in as_json["queue_depth"]}
    finally:
        es.options(ignore_status=404).indices.delete(index=cfg.tasks_index)

    # Started within the bound: a task-started record whose queue wait is at most `stuck_after`.
    started = _ids(records, "task-started")
    slow = {r["celery"]["task"]["id"] for r in records if r["event"].get("action") == "task-started"
            and r["celery"].get("queue_wait", 0) > stuck_after.total_seconds() * 1e9}
    succeeded, failed = _ids(records, "task-succeeded"), _ids(records, "task-failed")
    assert sorted(got) == list(ENTRIES)
    for entry in ENTRIES:
        sent = _sent(records, entry)
        ids = [r["celery"]["task"]["id"] for r in sent]
        missed = sum(r["celery"]["beat"]["missed"] for r in sent)
        oks = [r for r in records if r["event"].get("action") == "task-succeeded" and r["celery"]["task"]["id"] in ids]
        expected = {
            "entry": entry,
            "task": sent[0]["celery"]["task"]["name"],
            "schedule": "every 2s",
            "expected": len(sent) + missed,
            "sent": len(sent),
            "started": len([i for i in ids if i in started]),
            "succeeded": len([i for i in ids if i in succeeded]),
            "failed": len([i for i in ids if i in failed]),
            "missed": missed,
            "stuck": len([i for i in ids if i not in started or i in slow]),
            "worst_lateness": max(r["celery"]["beat"]["lateness"] for r in sent),
            "last_success": max((r["@timestamp"][:23] + "Z" for r in oks), default=None),
        }
        assert got[entry] == expected, entry
    # The scenario's own shape: node1's dispatches after its worker stopped never started; fail-every failed
    # every time; every entry missed the due times of the outage.
    assert got["node1-cleanup"]["stuck"] >= 2
    assert got["fail-every"]["failed"] == got["fail-every"]["sent"] >= 5
    assert got["fail-every"]["last_success"] is None
    assert got["ok-every"]["succeeded"] == got["ok-every"]["sent"]
    assert all(got[e]["missed"] >= 2 for e in ENTRIES)
    assert "== Periodic tasks ==" in render(report, "table")

    # node1's queue: after its worker stopped only the watching worker samples it, and what waits there is
    # exactly node1's dispatches that never started.
    samples = [r for r in records if r["event"].get("action") == "worker-queue-depth"]
    node1_samples = sorted((r for r in samples if r["celery"]["queue"] == "node1-crontab"),
                           key=lambda r: r["event"]["id"])
    last_depth = node1_samples[-1]["celery"]["queue_depth"]
    assert depth["node1-crontab"]["latest"] == last_depth == got["node1-cleanup"]["stuck"]
    assert depth["node1-crontab"]["max"] == max(r["celery"]["queue_depth"] for r in node1_samples)
    assert (depth["node1-crontab"]["consumers"], depth["node1-crontab"]["no_consumer"]) == (0, True)
    assert (depth["periodic"]["consumers"], depth["periodic"]["no_consumer"]) == (1, False)
    page = render(report, "html")
    assert "Queue depth (the largest any worker saw" in page and "node1-crontab (no consumer)" in page
    assert "NO CONSUMER" in render(report, "table")
    series = depth["node1-crontab"]["series"]
    assert sum(1 for _ in series) >= 1 and max(b["depth"] for b in series) == depth["node1-crontab"]["max"]
