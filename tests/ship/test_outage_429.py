"""A node of the test's own: write pool and queue of 1 (real 429s), and stopped mid-stream (a real outage).

The full outage of the issue (30 s) runs with ``CELERY_LOGS_SOAK=1``; the default suite stops the node
for 8 s, which exercises the same path: refused connections, retries without limit, reading paused.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from pipelines.dev.stack import DevStackError, LocalElasticsearch, local_node
from tests.ship import records
from tests.ship.helpers import (
    dead_letters,
    expected_ids,
    last_json,
    run_cli,
    ship_command,
    start_shipper,
    stored_ids,
    wait_for,
)
from tests.ship.test_faults import _count, _stop
from tests.support.engines import client_for

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 30.0 if os.environ.get("CELERY_LOGS_SOAK") == "1" else 8.0


@pytest.fixture(scope="module")
def throttled_node(engine: str) -> Iterator[LocalElasticsearch]:
    """A node whose write thread pool has one thread and a queue of one: concurrent bulks get 429."""
    node = local_node(
        engine, heap="384m", settings={"thread_pool.write.size": 1, "thread_pool.write.queue_size": 1}
    )
    try:
        node.start()
    except DevStackError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"{engine} is required in CI and could not start: {exc}", pytrace=False)
        pytest.skip(f"{engine} unavailable: {exc}")
    yield node
    node.cleanup()


@pytest.fixture
def tes(throttled_node: LocalElasticsearch) -> Iterator[Elasticsearch]:
    client = client_for(throttled_node.url)
    yield client
    client.close()


def test_real_429s_from_several_concurrent_shippers_are_retried_to_exact_counts(
    throttled_node: LocalElasticsearch, tes: Elasticsearch, tmp_path: Path,
    shipper_procs: list[subprocess.Popen[bytes]],
) -> None:
    """Three shippers against a one-thread, one-slot write pool: 429s happen, are retried, nothing is lost."""
    prefix = "throttled"
    per = 4_000
    procs = []
    for n in range(3):
        d = tmp_path / f"host{n}"
        d.mkdir()
        records.write(d / "app.jsonl", n * per, (n + 1) * per)
        cmd = ship_command(throttled_node.url, d / "state", prefix, [str(d / "app.jsonl")], "--once", "--stats",
                           "--batch-docs", "200", "--in-flight", "3")
        procs.append(start_shipper(cmd, tmp_path / f"ship{n}.log", track=shipper_procs))
    stats = []
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, (tmp_path / "ship0.log").read_text()[-2000:]
        stats.append(last_json(out.decode()))
    assert sum(s["shipped"] for s in stats) == 3 * per
    assert sum(s["retried"] + s["request_retries"] for s in stats) > 0  # the pool really refused some
    assert sorted(stored_ids(tes, prefix)) == expected_ids(0, 3 * per)
    for n in range(3):
        assert dead_letters(tmp_path / f"host{n}" / "state") == []
    tes.indices.delete(index=f"{prefix}-*,{prefix}.tasks")


def test_elasticsearch_stopped_mid_stream_and_started_again(
    throttled_node: LocalElasticsearch, tes: Elasticsearch, tmp_path: Path,
    shipper_procs: list[subprocess.Popen[bytes]],
) -> None:
    """The node goes away for a while during shipping; the shipper waits, resumes, and every record is there once."""
    prefix = "outage"
    total = 10_000
    logs = tmp_path / "logs"
    logs.mkdir()
    records.write(logs / "app.jsonl", 0, 2_000)
    cmd = ship_command(throttled_node.url, tmp_path / "state", prefix, [str(logs / "*.jsonl")], "--stats",
                       "--batch-docs", "500")
    proc = start_shipper(cmd, tmp_path / "ship.log", track=shipper_procs)
    wait_for(lambda: _count(tes, prefix) >= 2_000, timeout=120, what="2000 documents")
    throttled_node.stop()
    went_down = time.monotonic()
    writing = threading.Thread(target=records.write, args=(logs / "app.jsonl", 2_000, total))
    writing.start()  # records keep coming while the cluster is away
    writing.join(60)
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - went_down)))  # the outage itself, not a wait for a result
    assert proc.poll() is None  # still running, retrying
    throttled_node.start()
    wait_for(lambda: _count(tes, prefix) >= total, timeout=240, what=f"{total} documents")
    code, stats = _stop(proc)
    assert code == 0
    assert stats["request_retries"] > 0
    assert sorted(stored_ids(tes, prefix)) == expected_ids(0, total)
    assert dead_letters(tmp_path / "state") == []
    logged = (tmp_path / "ship.log").read_text()
    assert "bulk request failed; retrying without limit and pausing reading" in logged
    assert "bulk requests succeed again" in logged
    again = run_cli([*cmd, "--once"])
    assert (again.returncode, last_json(again.stdout)["shipped"], last_json(again.stdout)["duplicates"]) == (0, 0, 0)
    tes.indices.delete(index=f"{prefix}-*,{prefix}.tasks")
