"""The stage of the lost-task incident tests: real prefork workers on Redis, the real shipper, the real node.

Ground truth comes from outside celery-logs: the tasks write when they start and end (apps/lost_app.py),
and Redis itself says which messages wait in the queue and which are unacknowledged.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from elasticsearch import Elasticsearch

from tests.ship.helpers import ROOT, run_cli, ship_command, start_shipper
from tests.support.workers import WorkerProcess

APP = "tests.lost.apps.lost_app"
QUEUE = "lost"


@dataclass
class Truth:
    """What the tasks wrote: who started each task, which ended."""

    started: dict[str, list[str]]
    ended: set[str]

    def running_on(self, worker: WorkerProcess) -> set[str]:
        """Started on ``worker`` (last), never ended anywhere."""
        return {i for i, ws in self.started.items() if ws[-1] == worker.nodename and i not in self.ended}


@dataclass
class Stage:
    es: Elasticsearch
    es_url: str
    prefix: str
    broker_url: str
    workdir: Path
    workers: list[WorkerProcess] = field(default_factory=list)
    shipper: subprocess.Popen[bytes] | None = None
    producer: Celery | None = None

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def truth_file(self) -> Path:
        return self.workdir / "truth.txt"

    @property
    def tasks_index(self) -> str:
        return f"{self.prefix}.tasks"

    def start_shipper(self, procs: list[subprocess.Popen[bytes]]) -> None:
        """`celery-logs ship` following the workers' files, with its default settings."""
        cmd = ship_command(self.es_url, self.workdir / "state", self.prefix, [f"{self.log_dir}/*.jsonl*"])
        self.shipper = start_shipper(cmd, self.workdir / "ship.err", track=procs)

    def start_worker(self, name: str, *, concurrency: int, env: dict[str, str] | None = None) -> WorkerProcess:
        """A prefork worker with Celery's and celery-logs' defaults (prefetch multiplier 4, heartbeat 5 s)."""
        nodename = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
        output = self.workdir / f"{name}.console.log"
        cmd = [sys.executable, "-m", "celery", "-A", APP, "worker", "--pool", "prefork", "--concurrency",
               str(concurrency), "--hostname", nodename, "--without-gossip", "--without-mingle", "--loglevel",
               "INFO", "--queues", QUEUE]  # fmt: skip
        full_env = {**os.environ, "CELERY_BROKER_URL": self.broker_url, "CELERY_LOGS_LOG_DIR": str(self.log_dir),
                    "LOST_APP_TRUTH": str(self.truth_file), **(env or {})}  # fmt: skip
        full_env.pop("CELERY_LOGS_HEARTBEAT_INTERVAL", None)
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), full_env.get("PYTHONPATH", "")]))
        with output.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
        worker = WorkerProcess(nodename=nodename, proc=proc, output=output, broker_url=self.broker_url)
        self.workers.append(worker)
        worker.wait_ready(90)
        return worker

    def release(self, worker: WorkerProcess) -> None:
        """Let the tasks of ``worker`` (running or to come) finish."""
        (self.workdir / f"release-{worker.nodename.split('@', 1)[0]}").touch()

    def send(self, n: int) -> list[str]:
        if self.producer is None:
            self.producer = Celery("producer", broker=self.broker_url)
        return [str(self.producer.send_task("lost.work", queue=QUEUE).id) for _ in range(n)]

    def truth(self) -> Truth:
        started: dict[str, list[str]] = {}
        ended: set[str] = set()
        with contextlib.suppress(FileNotFoundError):
            for line in self.truth_file.read_text().splitlines():
                word, task_id, worker = line.split()
                if word == "start":
                    started.setdefault(task_id, []).append(worker)
                else:
                    ended.add(task_id)
        return Truth(started, ended)

    def _redis(self) -> Any:
        import redis

        return redis.Redis.from_url(self.broker_url)

    def queued_ids(self) -> set[str]:
        """Ids of the messages waiting in the queue."""
        client = self._redis()
        try:
            return {json.loads(m)["headers"]["id"] for m in client.lrange(QUEUE, 0, -1)}
        finally:
            client.close()

    def unacked_ids(self) -> set[str]:
        """Ids of the messages delivered and not acknowledged (kombu's ``unacked`` hash)."""
        client = self._redis()
        try:
            return {json.loads(v)[0]["headers"]["id"] for v in client.hgetall("unacked").values()}
        finally:
            client.close()

    def lost(self) -> dict[str, set[str]]:
        """`celery-logs lost --json`: the listed ids by class."""
        proc = run_cli([sys.executable, "-m", "pipelines.cli", "lost", "--json", "--es", self.es_url,
                        "--index-prefix", self.prefix, "--tasks-index", self.tasks_index], timeout=120)
        if proc.returncode == 5:  # nothing indexed yet
            return {}
        assert proc.returncode == 0, proc.stderr
        out: dict[str, set[str]] = {}
        for line in proc.stdout.splitlines():
            row = json.loads(line)
            out.setdefault(row["class"], set()).add(row["task_id"])
        return out

    def report(self) -> dict[str, Any]:
        """`celery-logs report --format json` over the last hour."""
        proc = run_cli([sys.executable, "-m", "pipelines.cli", "report", "--format", "json", "--since", "1h",
                        "--es", self.es_url, "--index-prefix", self.prefix, "--tasks-index", self.tasks_index],
                       timeout=120)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result

    def marked(self) -> dict[str, set[str]]:
        """What the shipper's sweeper wrote: ids by ``lost_class`` in the entity index."""
        if not self.es.indices.exists(index=self.tasks_index):
            return {}
        self.es.indices.refresh(index=self.tasks_index)
        hits = self.es.search(index=self.tasks_index, query={"exists": {"field": "lost_class"}}, size=1000,
                              source=["lost_class", "lost"])["hits"]["hits"]  # fmt: skip
        out: dict[str, set[str]] = {}
        for h in hits:
            assert h["_source"]["lost"] is (h["_source"]["lost_class"] == "lost")
            out.setdefault(h["_source"]["lost_class"], set()).add(h["_id"])
        return out

    def recovered(self) -> dict[str, set[str]]:
        self.es.indices.refresh(index=self.tasks_index)
        hits = self.es.search(index=self.tasks_index, query={"exists": {"field": "recovered_from"}}, size=1000,
                              source=["recovered_from", "lost", "lost_class"])["hits"]["hits"]  # fmt: skip
        out: dict[str, set[str]] = {}
        for h in hits:
            assert h["_source"]["lost"] is False and h["_source"].get("lost_class") is None
            out.setdefault(h["_source"]["recovered_from"], set()).add(h["_id"])
        return out


def poll(what: str, get: Callable[[], Any], expected: Any, *, deadline: float, interval: float = 0.5) -> float:
    """Ask ``get()`` until it returns ``expected``; fail with the last answer after ``deadline`` (monotonic).

    Returns when it first held.
    """
    last: Any = None
    while True:
        last = get()
        if last == expected:
            return time.monotonic()
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: expected {expected!r}, still {last!r}")
        time.sleep(interval)


def wait_until(what: str, check: Callable[[], bool], *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def settled(get: Callable[[], Any], *, quiet: float = 2.0, timeout: float = 60.0) -> Any:
    """The value of ``get()`` once it has stayed the same for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    value = get()
    since = time.monotonic()
    while time.monotonic() - since < quiet:
        if time.monotonic() > deadline:
            raise AssertionError(f"never settled: {value!r}")
        time.sleep(0.2)
        now = get()
        if now != value:
            value, since = now, time.monotonic()
    return value


@pytest.fixture
def stage(es: Elasticsearch, es_url: str, index_prefix: str, broker_url: str, tmp_path: Path) -> Iterator[Stage]:
    """Workers, the shipper and a producer; whatever is still running at the end is killed."""
    procs: list[subprocess.Popen[bytes]] = []
    s = Stage(es=es, es_url=es_url, prefix=index_prefix, broker_url=broker_url, workdir=tmp_path)
    s.log_dir.mkdir()
    s.start_shipper(procs)
    try:
        yield s
    finally:
        for w in s.workers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(w.proc.pid, signal.SIGKILL)
            w.proc.wait(30)
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(30)
        if s.producer is not None:
            s.producer.close()
        es.options(ignore_status=404).indices.delete(index=s.tasks_index)
