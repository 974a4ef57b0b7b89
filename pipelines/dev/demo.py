"""``celery-logs demo``: the whole product, end to end, on this machine, in about a minute.

A local Elasticsearch and Redis; a real prefork worker on the sample shop app (:mod:`pipelines.dev.demo_app`)
with successes, chained failures, retries, slow runs, a revoked task and a pool process killed by a
hard time limit; then the worker itself is killed with ``SIGKILL`` mid-task and restarted, which loses
that task. The shipper indexes the JSON lines, lost-task detection marks the lost one, and the report is
printed and written as HTML. Everything it started is stopped; the logs and the report stay in ``out``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery_logs import _schema
from pipelines.dev.stack import DevStackError, LocalRedis, local_node

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

Say = Callable[[str], None]

_PRODUCTS = {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}

#: The worker's node name: the restarted worker takes the same one, as a supervisor would.
NODE = "shop@demo"
HEARTBEAT_SECONDS = 1


@dataclass
class DemoResult:
    """What the demo produced, for the caller (and the test) to check."""

    out_dir: Path
    report_html: Path
    report_text: str
    records: int
    lost_task_ids: list[str] = field(default_factory=list)
    killed_task_id: str = ""


class _LogWatch:
    """Reads the worker's JSON-lines files to know when the work it waits for has happened."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir

    def records(self) -> Iterator[dict[str, Any]]:
        for path in sorted(self.log_dir.glob("*.jsonl*")):
            with path.open("rb") as fh:
                for raw in fh:
                    if raw.endswith(b"\n"):
                        with contextlib.suppress(ValueError):
                            yield json.loads(raw)

    def actions_by_task(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for rec in self.records():
            task_id = _schema.get_path(rec, "celery.task.id")
            action = _schema.get_path(rec, "event.action")
            if isinstance(task_id, str) and isinstance(action, str):
                out.setdefault(task_id, []).append(action)
        return out

    def wait_until(self, what: str, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.2)
        raise DevStackError(f"the demo waited {timeout:.0f} s for {what} and gave up; see the logs in {self.log_dir}")


class _Worker:
    """A ``celery worker`` subprocess on the demo app."""

    def __init__(self, env: dict[str, str], console: Path) -> None:
        self.env = env
        self.console = console
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "celery", "-A", "pipelines.dev.demo_app", "worker", "--pool", "prefork",
            "--concurrency", "3", "--hostname", NODE, "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ]  # fmt: skip
        with self.console.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self) -> None:
        """``SIGKILL`` the worker and its pool at once: no record can say what it was doing."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self) -> None:
        """Warm shutdown, so the worker writes ``worker-offline``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()


def _run_producer(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.dev.demo_app", *args], env=env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise DevStackError(f"the demo producer failed (exit {proc.returncode}): {tail}")
    return proc.stdout.strip()


def run_demo(*, out_dir: Path, say: Say, es_heap: str = "768m", engine: str = "elasticsearch") -> DemoResult:
    """Run the demo; ``say`` gets one line per step. Raises :class:`DevStackError` when a part can't run."""
    from pipelines._setup import install as install_es
    from pipelines.analytics import ReportSettings, Window, build_report, mark_lost_tasks, render
    from pipelines.ship import Shipper, ShipperConfig

    log_dir = out_dir / "logs"
    state_dir = out_dir / "shipper-state"
    for d in (log_dir, state_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    start = datetime.now(timezone.utc)

    product = _PRODUCTS[engine]
    say(f"starting {product} (local, 127.0.0.1) and Redis ...")
    with local_node(engine, heap=es_heap) as es_node, LocalRedis() as redis:
        say(f"  {product} at {es_node.url}, Redis at {redis.url}")
        env = {
            **os.environ,
            "CELERY_BROKER_URL": redis.url,
            "CELERY_LOGS_LOG_DIR": str(log_dir),
            "CELERY_LOGS_ENVIRONMENT": "demo",
            "CELERY_LOGS_VERSION": "1.0.0",
            "CELERY_LOGS_HEARTBEAT_INTERVAL": str(HEARTBEAT_SECONDS),
        }
        watch = _LogWatch(log_dir)
        worker = _Worker(env, out_dir / "worker-console.log")
        try:
            killed_task = _drive_worker(worker, env, watch, say)
        finally:
            worker.stop()

        say(f"shipping the JSON lines to {product} ...")
        es: Elasticsearch = _client(es_node.url, engine)
        install_es(es, index_prefix=_schema.DEFAULT_INDEX_PREFIX, tasks_index=_schema.DEFAULT_TASKS_INDEX)
        stats = Shipper(ShipperConfig(paths=[str(log_dir / "*.jsonl*")], state_dir=state_dir), client=es).run_once()
        es.indices.refresh(index=f"{_schema.DEFAULT_INDEX_PREFIX}-*,{_schema.DEFAULT_TASKS_INDEX}")
        say(f"  {stats.shipped} records indexed, {stats.tasks_updated} task documents updated")

        now = datetime.now(timezone.utc)
        marked = mark_lost_tasks(es, now=now, heartbeat_timeout=timedelta(seconds=10 * HEARTBEAT_SECONDS), refresh=True)
        say(f"  lost-task detection: {sum(t.lost_class == 'lost' for t in marked.lost)} lost, "
            f"{sum(t.lost_class == 'redelivery-pending' for t in marked.lost)} pending redelivery")

        settings = ReportSettings(window=Window(start - timedelta(minutes=1), now + timedelta(minutes=1)),
                                  heartbeat_timeout=timedelta(seconds=10 * HEARTBEAT_SECONDS))
        report = build_report(es, settings, now=now)
        text = render(report, "table")
        html_path = out_dir / "report.html"
        html_path.write_text(render(report, "html"), encoding="utf-8")
        es.close()
        return DemoResult(
            out_dir=out_dir,
            report_html=html_path,
            report_text=text,
            records=stats.shipped,
            lost_task_ids=[t.task_id for t in marked.lost if t.lost_class == "lost"],
            killed_task_id=killed_task,
        )


def _client(url: str, engine: str) -> Elasticsearch:
    from pipelines._connection import ConnectionSettings

    return ConnectionSettings(url=url, engine=engine, request_timeout=60).client()


def _drive_worker(worker: _Worker, env: dict[str, str], watch: _LogWatch, say: Say) -> str:
    """Run the scripted workload; return the id of the task the worker crash loses."""
    say(f"starting a real prefork worker ({NODE}, 3 processes) on the sample shop app ...")
    worker.start()

    def online() -> bool:
        return any(True for r in watch.records() if _schema.get_path(r, "event.action") == "worker-online")

    watch.wait_until("the worker to come online", online, 60)
    say("producing tasks: successes, chained failures, retries, slow reports, a time-limit kill, a revoke ...")
    published = json.loads(_run_producer(env, "produce", "--rounds", "2", "--revoke", "--json"))
    expected = set(published)

    def all_finished() -> bool:
        acts = watch.actions_by_task()
        return all(set(acts.get(t, ())) & _schema.TERMINAL_ACTIONS for t in expected)

    watch.wait_until(f"{len(expected)} tasks to finish", all_finished, 120)
    say(f"  {len(expected)} tasks finished")

    say("starting a long export, then killing the whole worker with SIGKILL while it runs ...")
    export_id = _run_producer(env, "export")

    def export_started() -> bool:
        return "task-started" in watch.actions_by_task().get(export_id, [])

    watch.wait_until("the export to start", export_started, 60)
    worker.kill()
    say(f"  worker killed while running task {export_id}; restarting it as a supervisor would ...")
    worker.start()

    def back_online() -> bool:
        return sum(1 for r in watch.records() if _schema.get_path(r, "event.action") == "worker-online") >= 2

    watch.wait_until("the restarted worker to come online", back_online, 60)
    return export_id
