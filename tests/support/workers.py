"""Run a real ``celery worker`` subprocess (prefork) for integration tests, and stop it cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery


@dataclass
class WorkerProcess:
    """A running worker: its node name, process and where its console output went."""

    nodename: str
    proc: subprocess.Popen[bytes]
    output: Path
    broker_url: str
    extra: dict[str, str] = field(default_factory=dict)

    def ping(self, timeout: float = 0.5) -> bool:
        """True when the worker answers a broadcast ping through the broker."""
        probe = Celery(broker=self.broker_url)
        try:
            replies = probe.control.ping(destination=[self.nodename], timeout=timeout)
        finally:
            probe.close()
        return any(self.nodename in r for r in replies)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}: {self.console_tail()}")
            if self.ping():
                return
        raise TimeoutError(f"worker {self.nodename} not ready after {timeout} s: {self.console_tail()}")

    def console_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.output.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 30.0) -> int:
        """Warm shutdown (SIGTERM), then SIGKILL of the whole process group after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    def kill(self) -> None:
        """Kill the main process and its children at once, as the OOM killer or `kill -9` would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)


@contextlib.contextmanager
def run_worker(
    app: str,
    *,
    broker_url: str,
    workdir: Path,
    concurrency: int = 2,
    pool: str = "prefork",
    queues: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    extra_args: Sequence[str] = (),
    ready_timeout: float = 60.0,
) -> Iterator[WorkerProcess]:
    """Start ``celery -A app worker`` and yield it once it answers pings; stop it on exit."""
    nodename = f"w{uuid.uuid4().hex[:8]}@localhost"
    output = workdir / f"{nodename.split('@', maxsplit=1)[0]}.console.log"
    cmd = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--hostname",
        nodename,
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
        "INFO",
        *extra_args,
    ]
    if queues:
        cmd += ["--queues", ",".join(queues)]
    full_env = {**os.environ, "CELERY_BROKER_URL": broker_url, **(env or {})}
    root = Path(__file__).resolve().parents[2]
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), full_env.get("PYTHONPATH", "")]))
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    worker = WorkerProcess(nodename=nodename, proc=proc, output=output, broker_url=broker_url)
    try:
        worker.wait_ready(ready_timeout)
        yield worker
    finally:
        worker.stop()
