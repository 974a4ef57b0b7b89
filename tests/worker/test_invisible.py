"""celery-logs is invisible to Celery: a real worker's console and --logfile read the same with and without it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery import Celery

from tests.periodic.beat import start_beat
from tests.support.workers import run_worker
from tests.worker.conftest import read_records

pytestmark = pytest.mark.integration

_APP = "tests.worker.apps.console_app"


def _normalise(text: str, nodename: str) -> list[str]:
    """The lines with what differs from run to run (times, pids, ids, ports, paths, addresses) masked."""
    text = text.replace(nodename, "NODE").replace(nodename.split("@", maxsplit=1)[0], "NODE")
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
    text = re.sub(r"0x[0-9a-f]+", "ADDR", text)
    text = re.sub(r"/tmp/\S+", "PATH", text)
    text = re.sub(r"\d+(\.\d+)?(e-\d+)?", "N", text)
    return text.splitlines()


def _wait_out(where: Path, any_of: tuple[str, ...], timeout: float = 60) -> None:
    """Poll ``where`` (a file, or a directory of files) until one of ``any_of`` is in it."""
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(where.glob("*")) if where.is_dir() else [where]
        text = "".join(f.read_text() for f in files if f.is_file())
        if any(s in text for s in any_of):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"none of {any_of} in {where} after {timeout:.0f} s")
        time.sleep(0.05)


def _run(broker_url: str, workdir: Path, *, celery_logs: bool, logfile: bool, env: dict[str, str] | None = None,
         ) -> tuple[list[str], list[str], Path, str]:
    """One worker run of the same two tasks: its console lines and its --logfile lines (normalised), its log
    dir and its console as it is."""
    workdir.mkdir(parents=True, exist_ok=True)
    tag = "with" if celery_logs else "without"
    log_dir = workdir / f"records-{tag}"
    logfile_path = workdir / f"worker-{tag}.log"
    full_env = {"CONSOLE_APP_CELERY_LOGS": "1" if celery_logs else "0", "CELERY_LOGS_LOG_DIR": str(log_dir),
                **(env or {})}
    extra = ["--logfile", str(logfile_path)] if logfile else []
    with run_worker(_APP, broker_url=broker_url, workdir=workdir, concurrency=1, env=full_env,
                    extra_args=extra) as worker:
        shown = logfile_path if logfile else worker.output
        client = Celery(broker=broker_url, backend=broker_url)
        try:
            assert client.send_task("console.work", args=(7,)).get(timeout=60) == 7
            # The result is stored before the pool child logs the success (and writes its record): send the
            # next task only once both are out, or the main process's "received" line may come first.
            _wait_out(shown, ("succeeded in", '"task-succeeded"'))
            if celery_logs and not full_env.get("CELERY_LOGS_STDOUT"):
                _wait_out(log_dir, ('"task-succeeded"',))
            with pytest.raises(Exception, match="boom"):
                client.send_task("console.fail").get(timeout=60)
        finally:
            client.close()
        # The same for the failure: stop only once the line is out.
        _wait_out(shown, ("raised unexpected",))
    raw = worker.output.read_text()
    file_lines = _normalise(logfile_path.read_text(), worker.nodename) if logfile else []
    return _normalise(raw, worker.nodename), file_lines, log_dir, raw


@pytest.mark.parametrize(
    ("logfile", "hijack"), [(False, "1"), (True, "1"), (False, "0")], ids=["console", "logfile", "no-hijack"]
)
def test_console_and_logfile_are_what_celery_prints_without_celery_logs(
    broker_url: str, tmp_path: Path, logfile: bool, hijack: str
) -> None:
    """`celery worker -l INFO` (console or --logfile, root logger hijacked or not) prints the same lines with
    celery-logs installed, while celery-logs writes its records, task lines included, to its own files."""
    env = {"CONSOLE_APP_HIJACK": hijack}
    plain_console, plain_file, _, _ = _run(broker_url, tmp_path, celery_logs=False, logfile=logfile, env=env)
    console, file_lines, log_dir, _ = _run(broker_url, tmp_path, celery_logs=True, logfile=logfile, env=env)
    assert console == plain_console
    assert file_lines == plain_file
    shown = "\n".join(file_lines if logfile else console)
    for line in ("INFO/MainProcess] Task console.work[UUID] received", "WARNING/ForkPoolWorker-N] own warning N",
                 "INFO/ForkPoolWorker-N] console.work[UUID]: working on N", "WARNING/ForkPoolWorker-N] printed",
                 "ERROR/ForkPoolWorker-N] Task console.fail[UUID] raised unexpected: ValueError('boom')"):
        assert line in shown
    records = sorted(read_records(log_dir), key=lambda r: r["event"]["id"])
    actions = [r["event"].get("action") for r in records if r["event"]["dataset"] == "celery.task"]
    assert actions == ["task-received", "task-started", "task-succeeded", "task-received", "task-started",
                       "task-failed"]
    messages = {r["message"] for r in records if r["event"]["dataset"] == "celery.app"}
    assert {"working on 7", "own warning 7", "printed"} <= messages
    # Celery's per-task INFO lines are kept out of our files by our handler's filter, not silenced.
    assert not any(m.startswith("Task console.work[") for m in messages)


def test_json_on_stdout_when_asked_replaces_the_console_not_the_logfile(broker_url: str, tmp_path: Path) -> None:
    """With stdout asked for (CELERY_LOGS_STDOUT=1) the console carries our JSON lines and not Celery's human
    lines; with --logfile as well, that file still gets exactly Celery's lines."""
    env = {"CELERY_LOGS_STDOUT": "1"}
    console, _, _, raw = _run(broker_url, tmp_path / "console", celery_logs=True, logfile=False, env=env)
    records = sorted((json.loads(line) for line in raw.splitlines() if line.startswith("{")),
                     key=lambda r: r["event"]["id"])
    assert [r["event"].get("action") for r in records if r["event"]["dataset"] == "celery.task"] == [
        "task-received", "task-started", "task-succeeded", "task-received", "task-started", "task-failed"]
    assert not [line for line in console if "INFO/MainProcess]" in line or "ForkPoolWorker-N]" in line]
    _, plain_file, _, _ = _run(broker_url, tmp_path / "plain", celery_logs=False, logfile=True)
    _, file_lines, _, _ = _run(broker_url, tmp_path / "both", celery_logs=True, logfile=True, env=env)
    assert file_lines == plain_file


def test_a_program_that_configures_logging_late_prints_the_same(tmp_path: Path) -> None:
    """Warnings before any configuration, basicConfig() after install(), the program's own levels and a
    dictConfig that replaces the root's handlers all print as without celery-logs, which records exactly the
    lines those levels let through, before and after the dictConfig."""
    outputs = {}
    for with_celery_logs in (False, True):
        log_dir = tmp_path / f"records-{with_celery_logs}"
        env = {**os.environ, "CONSOLE_APP_CELERY_LOGS": "1" if with_celery_logs else "0",
               "CELERY_LOGS_LOG_DIR": str(log_dir)}  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "tests.worker.apps.plain_program"], capture_output=True,
                              text=True, env=env, timeout=60, check=True)  # fmt: skip
        outputs[with_celery_logs] = (proc.stdout, proc.stderr)
    assert outputs[True] == outputs[False] == ("", (
        "before any configuration\n"
        "WARNING plain.app after basicConfig\n"
        "INFO plain.app info once the program asked for it\n"
        "DICT INFO after dictConfig\n"
    ))  # fmt: skip
    records = read_records(tmp_path / "records-True")
    assert [(r["log.level"], r["message"]) for r in records] == [
        ("warning", "before any configuration"),
        ("warning", "after basicConfig"),
        ("info", "info once the program asked for it"),
        ("info", "after dictConfig"),
    ]


def _beat_console(broker_url: str, workdir: Path, *, celery_logs: bool, hijack: str) -> tuple[list[str], Path]:
    """A real `celery beat -l INFO` run until it sent its entry twice: its console up to there, normalised."""
    workdir.mkdir(parents=True)
    log_dir = workdir / "records"
    env = {"CONSOLE_APP_CELERY_LOGS": "1" if celery_logs else "0", "CONSOLE_APP_HIJACK": hijack,
           "CELERY_LOGS_LOG_DIR": str(log_dir)}  # fmt: skip
    beat = start_beat("tests.worker.apps.beat_console_app", broker_url=broker_url, schedule=workdir / "schedule",
                      workdir=workdir, env=env)  # fmt: skip
    sent = "Scheduler: Sending due task tick"
    try:
        deadline = time.monotonic() + 60
        while beat.output.read_text().count(sent) < 2 or (celery_logs and len(_beat_sent(log_dir)) < 2):
            assert time.monotonic() < deadline, beat.output.read_text()
            assert beat.proc.poll() is None, beat.output.read_text()
            time.sleep(0.05)
    finally:
        beat.stop()
    lines = _normalise(beat.output.read_text(), "no-node@no-host")
    second = [i for i, line in enumerate(lines) if sent in line][1]
    return lines[: second + 1], log_dir


def _beat_sent(log_dir: Path) -> list[str]:
    if not log_dir.is_dir():
        return []
    return [r["celery"]["beat"]["entry"] for r in read_records(log_dir) if r["event"].get("action") == "beat-sent"]


@pytest.mark.parametrize("hijack", ["1", "0"], ids=["hijack", "no-hijack"])
def test_beat_prints_what_it_prints_without_celery_logs(broker_url: str, tmp_path: Path, hijack: str) -> None:
    """`celery beat -l INFO`, root logger hijacked or not, prints the same lines with celery-logs installed,
    which writes a beat-sent record per dispatch."""
    plain, _ = _beat_console(broker_url, tmp_path / "without", celery_logs=False, hijack=hijack)
    console, log_dir = _beat_console(broker_url, tmp_path / "with", celery_logs=True, hijack=hijack)
    assert console == plain
    assert any(line.endswith("INFO/MainProcess] beat: Starting...") for line in console), console
    assert _beat_sent(log_dir)[:2] == ["tick", "tick"]
