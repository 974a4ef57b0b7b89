"""A following shipper keeps the entity index's `lost` flags current for Kibana's "lost tasks" search."""

from __future__ import annotations

import signal
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

from elasticsearch import Elasticsearch

from pipelines.dev import synth as _synth
from tests.ship.helpers import ship_command, start_shipper, wait_for


def _lost_ids(es: Elasticsearch, index: str) -> list[str]:
    es.indices.refresh(index=index)
    hits = es.search(index=index, query={"term": {"lost": True}}, size=100, source=["task_id"])["hits"]["hits"]
    return sorted(h["_source"]["task_id"] for h in hits)


def test_following_shipper_marks_lost_tasks(
    es: Elasticsearch, es_url: str, index_prefix: str, tmp_path: Path, shipper_procs: list[subprocess.Popen[bytes]]
) -> None:
    """The tasks in flight on the worker that went silent, and only those, end up `lost: true`."""
    start = datetime.now(timezone.utc) - timedelta(hours=2)
    history = _synth.generate(tasks=120, start=start, span=timedelta(hours=1), seed=11, lost_tasks=3)
    log = tmp_path / "shop.1.jsonl"
    log.write_text("".join(history.ndjson()), encoding="utf-8")
    expected = sorted(t.task_id for t in history.tasks if t.lost)
    assert len(expected) == 3

    cmd = ship_command(es_url, tmp_path / "state", index_prefix, [str(log)], "--lost-interval", "0.5",
                       "--heartbeat-timeout", "60")  # fmt: skip
    proc = start_shipper(cmd, tmp_path / "ship.err", track=shipper_procs)
    tasks_index = f"{index_prefix}.tasks"
    try:
        wait_for(lambda: es.indices.exists(index=tasks_index) and _lost_ids(es, tasks_index) == expected,
                 timeout=120, what="the sweeper to mark the lost tasks")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert _lost_ids(es, tasks_index) == expected
