"""The shipper and the queries on a real 3-node cluster losing nodes: exact id sets, while a node is down.

Every test ships with the real :class:`~pipelines.ship.Shipper` (or the CLI) through one client that
names all three nodes; the node it talks to first is the first URL (the pool is not shuffled here).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from celery_logs._schema import get_path
from pipelines._connection import ConnectionSettings
from pipelines._setup import install
from pipelines.analytics.timeparse import Window
from pipelines.cli import main
from pipelines.dev import LocalCluster, LocalElasticsearch
from pipelines.dev import synth as _synth
from pipelines.ship import Shipper, ShipperConfig, ShipStats
from tests.analytics.expected import stats_by
from tests.ship import records
from tests.ship.helpers import expected_ids

pytestmark = pytest.mark.integration

RECORDS = 100_000
#: Tasks in RECORDS records (three records per task) and those whose terminal record is among them.
TASKS = (RECORDS + 2) // 3
ENDED = RECORDS // 3
#: Kill the node once this many records are acknowledged: well inside the stream.
KILL_AFTER = 20_000


def _all_ids(es: Elasticsearch, index: str) -> list[str]:
    """Every ``_id`` in ``index`` (a pattern), duplicates kept, read with a scroll (no field is needed)."""
    es.indices.refresh(index=index)
    resp = es.search(index=index, scroll="2m", size=10_000, sort=["_doc"], source=False)
    ids: list[str] = []
    scroll_id = resp["_scroll_id"]
    try:
        while hits := resp["hits"]["hits"]:
            ids.extend(h["_id"] for h in hits)
            resp = es.scroll(scroll_id=scroll_id, scroll="2m")
            scroll_id = resp["_scroll_id"]
    finally:
        es.options(ignore_status=404).clear_scroll(scroll_id=scroll_id)
    return ids


def _client(urls: list[str]) -> Elasticsearch:
    """The CLI's own client for these nodes, in this order (first URL first)."""
    settings = ConnectionSettings(url=",".join(urls), request_timeout=60)
    return settings.client(randomize_nodes_in_pool=False)


def _ship_killing(
    cluster: LocalCluster, prefix: str, tmp_path: Path, urls: list[str], victim: LocalElasticsearch
) -> ShipStats:
    """Ship RECORDS records; kill -9 ``victim`` once KILL_AFTER of them are acknowledged."""
    path = tmp_path / "tasks.log"
    records.write(path, 0, RECORDS, run="k")
    client = _client(urls)
    killed = threading.Event()

    def progress(stats: ShipStats) -> None:
        if not killed.is_set() and stats.shipped >= KILL_AFTER:
            victim.kill()
            killed.set()

    try:
        setup = install(client, index_prefix=prefix, tasks_index=f"{prefix}.tasks")
        assert (setup.replicas, setup.data_nodes) == (1, 3)
        config = ShipperConfig(
            paths=[str(path)], state_dir=tmp_path / "state", index_prefix=prefix, tasks_index=f"{prefix}.tasks",
            follow=False, batch_max_docs=2000,
        )  # fmt: skip
        stats = Shipper(config, client=client, on_progress=progress, progress_interval=0.05).run_once()
    finally:
        client.close()
    assert killed.is_set(), "the stream ended before the node was killed"
    return stats


def _assert_exactly_once(es: Elasticsearch, prefix: str, stats: ShipStats) -> None:
    assert stats.dead_lettered == 0
    ids = _all_ids(es, f"{prefix}-*")
    assert len(ids) == RECORDS
    assert set(ids) == set(expected_ids(0, RECORDS, run="k"))
    assert es.count(index=f"{prefix}-*")["count"] == RECORDS
    tasks = f"{prefix}.tasks"
    es.indices.refresh(index=tasks)
    assert es.count(index=tasks)["count"] == TASKS
    assert es.count(index=tasks, query={"term": {"end_action": "task-succeeded"}})["count"] == ENDED


def test_kill_the_first_node_mid_stream(cluster: LocalCluster, cluster_prefix: str, tmp_path: Path) -> None:
    """kill -9 of the node the shipper talks to first: every record there exactly once, that node still down."""
    master = cluster.master()
    first = next(m for m in cluster.members if m is not master)
    urls = [first.url] + [m.url for m in cluster.members if m is not first]
    stats = _ship_killing(cluster, cluster_prefix, tmp_path, urls, first)
    health = cluster.wait_for(status="yellow", nodes=2, timeout=120)
    assert first.pid is None and health["number_of_nodes"] == 2
    # The pool learns a node is dead only from a failed request: at least one was sent again elsewhere.
    assert stats.request_retries >= 1
    with Elasticsearch([m.url for m in cluster.running()], request_timeout=60) as es:
        _assert_exactly_once(es, cluster_prefix, stats)
    assert first.pid is None


def test_kill_the_elected_master_mid_stream(cluster: LocalCluster, cluster_prefix: str, tmp_path: Path) -> None:
    """kill -9 of the elected master: another node is elected, and every record is there exactly once."""
    master = cluster.master()
    urls = [m.url for m in cluster.members]
    stats = _ship_killing(cluster, cluster_prefix, tmp_path, urls, master)
    cluster.wait_for(status="yellow", nodes=2, timeout=120)
    new_master = cluster.master()
    assert new_master is not master
    assert master.pid is None
    with Elasticsearch([m.url for m in cluster.running()], request_timeout=60) as es:
        _assert_exactly_once(es, cluster_prefix, stats)


# --- yellow, and back to green ------------------------------------------------------------------------------------

START = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)
SPAN = timedelta(hours=6)
WINDOW_ARGS = ["--since", "2026-11-22T06:00:00Z", "--until", "2026-11-22T12:00:00Z"]


@pytest.fixture
def shipped_history(cluster: LocalCluster, cluster_prefix: str, tmp_path: Path) -> Iterator[_synth.SynthHistory]:
    """A synthetic history shipped by the CLI with two replicas: every node holds a copy of everything."""
    history = _synth.generate(tasks=300, seed=31, start=START, span=SPAN, lost_tasks=2)
    path = tmp_path / "history.log"
    path.write_text("".join(history.ndjson()), encoding="utf-8")
    code = main([
        "ship", str(path), "--once", "--es", cluster.url, "--index-prefix", cluster_prefix,
        "--tasks-index", f"{cluster_prefix}.tasks", "--state-dir", str(tmp_path / "state"), "--replicas", "2",
        "--log-level", "warning",
    ])  # fmt: skip
    assert code == 0
    cluster.wait_for(status="green", nodes=3, timeout=240)
    yield history



def test_queries_answer_while_yellow_then_green_again(
    cluster: LocalCluster,
    cluster_prefix: str,
    shipped_history: _synth.SynthHistory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With a node down (yellow), report, search and lost give the full answers; restarted, it turns green."""
    victim = cluster.members[1]
    victim.kill()
    health = cluster.wait_for(status="yellow", nodes=2, timeout=120)
    assert health["status"] == "yellow"
    where = ["--es", cluster.url, "--index-prefix", cluster_prefix]
    capsys.readouterr()

    assert main(["report", *where, "--tasks-index", f"{cluster_prefix}.tasks", *WINDOW_ARGS, "--format", "json"]) == 0
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    want = stats_by(shipped_history.tasks, Window(START, START + SPAN), lambda t: t.name)
    assert {r["key"]: r["runs"] for r in report["tasks"]} == {k: v.runs for k, v in want.items()}

    failed = sum(
        1
        for r in shipped_history.records
        if get_path(r, "event.action") == "task-failed" and "2026-11-22T06" <= r["@timestamp"] < "2026-11-22T12"
    )
    assert failed > 0
    size = str(failed + 10)
    assert main(["search", 'event.action:"task-failed"', *where, *WINDOW_ARGS, "--json", "--size", size]) == 0
    assert len(capsys.readouterr().out.splitlines()) == failed

    assert main(["lost", *where, "--tasks-index", f"{cluster_prefix}.tasks", "--json"]) == 0
    lost = sorted(json.loads(line)["task_id"] for line in capsys.readouterr().out.splitlines())
    assert lost == sorted(t.task_id for t in shipped_history.tasks if t.lost)
    assert len(lost) == 2

    cluster.restart(victim)
    health = cluster.wait_for(status="green", nodes=3, timeout=240)
    assert (health["status"], health["unassigned_shards"]) == ("green", 0)
