"""How long from a worker's death to `celery-logs lost` naming its tasks, with default settings.

Starts its own Elasticsearch node and Redis, and `celery-logs ship` following the workers' files (all
defaults). Each repetition starts a real prefork worker (concurrency 2, celery-logs' default 5 s
heartbeat) on the test app of tests/lost/, waits until it runs two tasks that never end by themselves,
then kills it one of two ways:

* ``term-kill``: SIGTERM, then SIGKILL 5 s later (supervisord's ``stopwaitsecs``); the clock starts at
  the SIGKILL;
* ``kill-9``: SIGKILL of the main process, no warning (its pool children die with it).

and runs `celery-logs lost --json` in a loop until it names both running tasks as class ``lost``: the
figure is the time from the SIGKILL to the end of that first naming run (so it includes the command's own
start-up, and a run that started just before the answer was there). Beside it, in loops of their own, the
same question asked of ``find_lost_tasks`` in this process, and of the entity index the shipper's sweeper
marks. Reports the medians, and the `lost` figure as a ratio to the heartbeat interval of the same run.

Targets (issue 12): term-kill <= 10 s; kill-9 <= 3 heartbeat intervals.

    python benchmarks/lost_latency.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from celery import Celery
from elasticsearch import Elasticsearch

from pipelines.analytics import find_lost_tasks
from pipelines.dev.stack import LocalElasticsearch, LocalRedis

ROOT = Path(__file__).resolve().parents[1]
APP = "tests.lost.apps.lost_app"
HEARTBEAT_SECONDS = 5.0  # celery-logs' default, which the workers here keep
PREFIX = "bench-lost"
TASKS_INDEX = "bench-lost.tasks"


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env.pop("CELERY_LOGS_HEARTBEAT_INTERVAL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def _lost_ids(es_url: str) -> set[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "lost", "--json", "--es", es_url, "--index-prefix", PREFIX,
         "--tasks-index", TASKS_INDEX],
        capture_output=True, text=True, env=_env(), cwd=ROOT, timeout=120, check=False,
    )  # fmt: skip
    return {json.loads(line)["task_id"] for line in proc.stdout.splitlines() if json.loads(line)["class"] == "lost"}


def _library_lost(es: Elasticsearch) -> set[str]:
    """What `lost` would print if started now, without its start-up."""
    if not es.indices.exists(index=TASKS_INDEX):
        return set()
    found = find_lost_tasks(es, prefix=PREFIX, tasks_index=TASKS_INDEX, now=datetime.now(timezone.utc))
    return {t.task_id for t in found if t.lost_class == "lost"}


def _marked_lost(es: Elasticsearch) -> set[str]:
    """What the shipper's sweeper has marked ``lost_class: lost`` (searchable now)."""
    if not es.indices.exists(index=TASKS_INDEX):
        return set()
    es.indices.refresh(index=TASKS_INDEX)
    hits = es.search(index=TASKS_INDEX, query={"term": {"lost_class": "lost"}}, size=1000, source=False)
    return {h["_id"] for h in hits["hits"]["hits"]}


def _running(truth: Path, node: str) -> set[str]:
    started: set[str] = set()
    ended: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        for line in truth.read_text().splitlines():
            word, task_id, worker = line.split()
            if worker == node and word == "start":
                started.add(task_id)
            elif word == "end":
                ended.add(task_id)
    return started - ended


def _wait(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def one_run(mode: str, *, work: Path, broker_url: str, es_url: str, es: Elasticsearch,
            producer: Celery) -> dict[str, float]:
    """Seconds from the SIGKILL until the running tasks are named lost: by a `celery-logs lost` run (to its
    end), by :func:`find_lost_tasks` in this process, and by the shipper's sweeper in the entity index."""
    node = f"bench-{uuid.uuid4().hex[:6]}@localhost"
    truth = work / "truth.txt"
    cmd = [sys.executable, "-m", "celery", "-A", APP, "worker", "--pool", "prefork", "--concurrency", "2",
           "--hostname", node, "--without-gossip", "--without-mingle", "--queues", "lost"]  # fmt: skip
    env = _env(CELERY_BROKER_URL=broker_url, CELERY_LOGS_LOG_DIR=str(work / "logs"), LOST_APP_TRUTH=str(truth))
    with (work / f"{node}.console.log").open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        for _ in range(2):
            producer.send_task("lost.work", queue="lost")
        _wait(lambda: len(_running(truth, node)) == 2, 120, "two running tasks")
        running = _running(truth, node)
        if mode == "term-kill":
            proc.send_signal(signal.SIGTERM)
            time.sleep(5)  # stopwaitsecs: part of the scenario, not a wait for an outcome
        os.kill(proc.pid, signal.SIGKILL)
        killed = time.monotonic()
        proc.wait(30)
        found: dict[str, float] = {}

        def watch(what: str, names: Callable[[], set[str]]) -> None:
            while time.monotonic() - killed < 600:
                if running <= names():
                    found[what] = time.monotonic() - killed
                    return
                time.sleep(0.1)

        # Each asked in its own loop: a `lost` run takes a second or two, which must not delay the others.
        watchers = [
            threading.Thread(target=watch, args=("cli", lambda: _lost_ids(es_url))),
            threading.Thread(target=watch, args=("library", lambda: _library_lost(es))),
            threading.Thread(target=watch, args=("marked", lambda: _marked_lost(es))),
        ]
        for t in watchers:
            t.start()
        for t in watchers:
            t.join()
        if len(found) < len(watchers):
            raise SystemExit(f"{mode}: {sorted(running)} not named within 600 s: {found}")
        return found
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    es_node = LocalElasticsearch(heap="512m")
    redis = LocalRedis()
    shipper: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory(prefix="lost-latency-") as tmp:
        work = Path(tmp)
        (work / "logs").mkdir()
        try:
            es_node.start()
            redis.start()
            broker_url = redis.url
            shipper = subprocess.Popen(
                [sys.executable, "-m", "pipelines.cli", "ship", "--es", es_node.url, "--state-dir", str(work / "state"),
                 "--index-prefix", PREFIX, "--tasks-index", TASKS_INDEX, f"{work / 'logs'}/*.jsonl*"],
                env=_env(), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=(work / "ship.err").open("wb"),
            )  # fmt: skip
            producer = Celery("bench-producer", broker=broker_url)
            es = Elasticsearch(es_node.url, request_timeout=60)
            figures: dict[str, list[dict[str, float]]] = {"term-kill": [], "kill-9": []}
            for i in range(args.repeat):
                for mode, values in figures.items():  # interleaved, so machine noise hits both alike
                    got = one_run(mode, work=work, broker_url=broker_url, es_url=es_node.url, es=es,
                                  producer=producer)
                    values.append(got)
                    print(f"run {i + 1} {mode}: `lost` {got['cli']:.1f} s, library {got['library']:.1f} s, "
                          f"marked {got['marked']:.1f} s", flush=True)
            producer.close()
            es.close()
            targets = {"term-kill": 10.0, "kill-9": 3 * HEARTBEAT_SECONDS}
            print(f"\nheartbeat interval {HEARTBEAT_SECONDS:.0f} s (default); medians over {args.repeat} runs, "
                  "seconds from the SIGKILL:")
            for mode, runs in figures.items():
                med = {k: statistics.median(r[k] for r in runs) for k in ("cli", "library", "marked")}
                print(f"  {mode:9s} `celery-logs lost` names them {med['cli']:5.1f} s "
                      f"= {med['cli'] / HEARTBEAT_SECONDS:.2f} heartbeat intervals (target <= {targets[mode]:.0f} s); "
                      f"find_lost_tasks {med['library']:.1f} s; the sweeper marks them {med['marked']:.1f} s")
        finally:
            if shipper is not None:
                shipper.send_signal(signal.SIGTERM)
                try:
                    shipper.wait(30)
                except subprocess.TimeoutExpired:
                    shipper.kill()
            redis.stop()
            es_node.cleanup()


if __name__ == "__main__":
    main()
