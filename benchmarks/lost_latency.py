"""How long from a worker's death to `celery-logs lost` naming its tasks, with default settings.

Starts its own Elasticsearch node and Redis, and `celery-logs ship` following the workers' files (all
defaults). Each repetition starts a real prefork worker (concurrency 2, celery-logs' default 5 s
heartbeat) on the test app of tests/lost/, waits until it runs two tasks that never end by themselves,
then kills it one of two ways:

* ``term-kill``: SIGTERM, then SIGKILL 5 s later (supervisord's ``stopwaitsecs``); the clock starts at
  the SIGKILL;
* ``kill-9``: SIGKILL of the main process, no warning (its pool children die with it).

and runs `celery-logs lost --json` in a loop until it names both running tasks as class ``lost``. Each
figure is the time from the SIGKILL to the end of that first naming run (so it includes the command's own
start-up). Reports the medians, and each as a ratio to the heartbeat interval of the same run.

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
import time
import uuid
from pathlib import Path

from celery import Celery
from elasticsearch import Elasticsearch

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
            producer: Celery) -> tuple[float, float]:
    """Seconds from the SIGKILL to `lost` naming the running tasks, and to the sweeper marking them."""
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
        named = marked = None
        while named is None or marked is None:
            if time.monotonic() - killed > 600:
                raise SystemExit(f"{mode}: lost never named {sorted(running)}")
            if named is None and running <= _lost_ids(es_url):
                named = time.monotonic() - killed
            if marked is None and running <= _marked_lost(es):
                marked = time.monotonic() - killed
            time.sleep(0.1)
        return named, marked
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
            figures: dict[str, list[tuple[float, float]]] = {"term-kill": [], "kill-9": []}
            for i in range(args.repeat):
                for mode, values in figures.items():  # interleaved, so machine noise hits both alike
                    named, marked = one_run(mode, work=work, broker_url=broker_url, es_url=es_node.url, es=es,
                                            producer=producer)
                    values.append((named, marked))
                    print(f"run {i + 1} {mode}: named by `lost` after {named:.1f} s, marked after {marked:.1f} s",
                          flush=True)
            producer.close()
            es.close()
            targets = {"term-kill": 10.0, "kill-9": 3 * HEARTBEAT_SECONDS}
            print(f"\nheartbeat interval {HEARTBEAT_SECONDS:.0f} s (default); medians over {args.repeat} runs, "
                  "from the SIGKILL:")
            for mode, pairs in figures.items():
                named_med = statistics.median(p[0] for p in pairs)
                marked_med = statistics.median(p[1] for p in pairs)
                print(f"  {mode:9s} `lost` names them {named_med:5.1f} s = {named_med / HEARTBEAT_SECONDS:.2f} "
                      f"heartbeat intervals (target <= {targets[mode]:.0f} s); the sweeper marks them "
                      f"{marked_med:5.1f} s")
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
