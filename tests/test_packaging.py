"""The built wheel, installed with the documented extra into a clean venv, runs a real worker task end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import venv
from pathlib import Path

import pytest
from celery import Celery

from pipelines.dev.stack import LocalRedis

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]

APP = """
import os
from celery import Celery
import celery_logs

app = Celery("packaged", broker=os.environ["BROKER"])
app.conf.broker_connection_retry_on_startup = True
celery_logs.install(app, service="packaged", log_dir=os.environ["LOG_DIR"])


@app.task(name="packaged.add")
def add(x, y):
    return x + y
"""


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(  # type: ignore[call-overload]
        cmd, capture_output=True, text=True, timeout=600, check=False, **kw
    )
    assert proc.returncode == 0, f"{cmd[:4]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc  # type: ignore[no-any-return]


def test_wheel_with_the_redis_extra_runs_a_worker_task(redis_server: LocalRedis, tmp_path: Path) -> None:
    """`pip install celery-logs[redis]` from the built wheel: a worker whose first task succeeds and is recorded."""
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)])
    (wheel,) = dist.glob("celery_logs-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", f"{wheel}[redis]"])
    work = tmp_path / "app"
    work.mkdir()
    (work / "packaged_app.py").write_text(textwrap.dedent(APP))
    log_dir = tmp_path / "logs"
    broker = f"redis://127.0.0.1:{redis_server.port}/15"
    # Nothing of the checkout on the path: only what the wheel and its dependencies installed.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "BROKER": broker, "LOG_DIR": str(log_dir)}
    with (tmp_path / "worker.log").open("wb") as out:
        worker = subprocess.Popen(
            [str(python), "-m", "celery", "-A", "packaged_app", "worker", "--pool", "prefork", "--concurrency", "1",
             "--without-gossip", "--without-mingle", "-l", "INFO"],
            cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    producer = Celery(broker=broker)
    try:
        task_id = producer.send_task("packaged.add", args=(2, 3)).id
        deadline = time.monotonic() + 120
        actions: list[str] = []
        while time.monotonic() < deadline and "task-succeeded" not in actions:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            lines = [json.loads(x) for p in log_dir.glob("*.jsonl") for x in p.read_text().splitlines()]
            actions = [r["event"].get("action") for r in lines
                       if r.get("celery", {}).get("task", {}).get("id") == task_id]
            time.sleep(0.2)  # poll interval, not a wait for an outcome
        assert sorted(actions) == ["task-received", "task-started", "task-succeeded"], (
            (tmp_path / "worker.log").read_text()[-3000:])
    finally:
        producer.close()
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(30)
    assert "packaging" not in (tmp_path / "worker.log").read_text()
