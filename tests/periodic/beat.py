"""Run a real ``celery beat`` subprocess for the periodic-task tests, and stop it cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass
class BeatProcess:
    proc: subprocess.Popen[bytes]
    output: Path

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (beat saves its schedule and exits), then SIGKILL of its group after ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        return self.proc.returncode


def start_beat(app: str, *, broker_url: str, schedule: Path, workdir: Path, env: Mapping[str, str]) -> BeatProcess:
    """``celery -A app beat`` with the default PersistentScheduler keeping its state in ``schedule``."""
    output = workdir / "beat.console.log"
    cmd = [sys.executable, "-m", "celery", "-A", app, "beat", "--schedule", str(schedule), "--loglevel", "INFO"]
    full_env = {**os.environ, "CELERY_BROKER_URL": broker_url, **env}
    root = Path(__file__).resolve().parents[2]
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), full_env.get("PYTHONPATH", "")]))
    with output.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, start_new_session=True)
    return BeatProcess(proc=proc, output=output)
