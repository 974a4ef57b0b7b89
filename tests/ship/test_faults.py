"""Faults against the real Elasticsearch, with real `celery-logs ship` processes: exact counts every time.

Each test ends by comparing the exact set of ``_id`` values stored with the set written: nothing missing,
nothing twice, and no dead letters. Sizes are scaled to the suite's budget; ``CELERY_LOGS_SOAK=1`` runs
the full sizes of the issue (100 000 records and 10 ``kill -9``; a 30 s outage in ``test_outage_429``).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

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

pytestmark = pytest.mark.integration

SOAK = os.environ.get("CELERY_LOGS_SOAK") == "1"


def _count(es: Elasticsearch, prefix: str) -> int:
    es.options(ignore_status=404).indices.refresh(index=f"{prefix}-*")
    # 503: a daily index just created has no started primary yet on a loaded machine; poll again.
    return int(es.options(ignore_status=(404, 503)).count(index=f"{prefix}-*").body.get("count", 0))


def _stop(proc: subprocess.Popen[bytes], *, timeout: float = 30) -> tuple[int, dict[str, object]]:
    """SIGTERM the shipper; its exit code and its --stats line."""
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, last_json(out.decode())


class _Writer:
    """Appends records to ``<dir>/app.jsonl`` in small writes, rotating by rename or copytruncate."""

    def __init__(self, d: Path, *, rotate_every: int = 0, copytruncate_every: int = 0, per_write: int = 50) -> None:
        self.d, self.per_write = d, per_write
        self.rotate_every, self.copytruncate_every = rotate_every, copytruncate_every
        self.written = 0
        self.rotations = 0
        self._since = 0
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, stop: int) -> None:
        """Write records up to ``stop`` in a background thread (the load the shipper runs under)."""
        self._thread = threading.Thread(target=self._guarded, args=(stop,), daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the writer did not finish"
        assert self.error is None, self.error

    def write(self, stop: int) -> None:
        """Write records up to ``stop`` now, in this thread."""
        live = self.d / "app.jsonl"
        while self.written < stop:
            n = min(self.per_write, stop - self.written)
            records.write(live, self.written, self.written + n)
            self.written += n
            self._since += n
            if self.rotate_every and self._since >= self.rotate_every:
                self.rotations += 1
                live.rename(self.d / f"app.jsonl.{self.rotations:04d}")
                self._since = 0
            elif self.copytruncate_every and self._since >= self.copytruncate_every:
                self.rotations += 1
                shutil.copyfile(live, self.d / f"app.jsonl.{self.rotations:04d}")
                with live.open("r+b") as fh:
                    fh.truncate(0)
                self._since = 0
            threading.Event().wait(0.01)  # a steady writer, not a flood: the shipper reads while it writes

    def _guarded(self, stop: int) -> None:
        try:
            self.write(stop)
        except BaseException as exc:  # surfaced by join()
            self.error = exc


def test_kill_9_at_random_points_loses_nothing_and_duplicates_nothing(
    es: Elasticsearch, es_url: str, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path,
    shipper_procs: list[subprocess.Popen[bytes]],
) -> None:
    """kill -9 of the shipper at random points while shipping; after restarts every record is there once."""
    total, kills = (100_000, 10) if SOAK else (20_000, 5)
    half = total // 2
    records.write(logs / "a.jsonl", 0, half)
    records.write(logs / "b.jsonl", half, total)
    rng = random.Random(4)
    targets = sorted(rng.sample(range(total // 20, total - total // 20), kills))
    cmd = ship_command(es_url, tmp_path / "state", index_prefix, [str(logs / "*.jsonl")], "--batch-docs", "500")
    for target in targets:
        proc = start_shipper(cmd, tmp_path / "ship.log", track=shipper_procs)
        try:
            wait_for(lambda t=target: _count(es, index_prefix) >= t, timeout=120, what=f"{target} documents",
                     interval=0.05)
        finally:
            proc.kill()
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
    final = run_cli([*cmd, "--once", "--stats"])
    assert final.returncode == 0, final.stderr
    stats = last_json(final.stdout)
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, total)
    assert dead_letters(tmp_path / "state") == []
    # The checkpoint was used: the last run did not start again from the beginning.
    assert stats["shipped"] + stats["duplicates"] < total


def test_sigterm_under_load_stops_cleanly_and_the_restart_resumes_there(
    es: Elasticsearch, es_url: str, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path,
    shipper_procs: list[subprocess.Popen[bytes]],
) -> None:
    """SIGTERM while a writer is busy: exit 0 with the checkpoint saved; the restart re-sends nothing."""
    total = 12_000
    writer = _Writer(logs, per_write=200)
    writer.start(total)
    cmd = ship_command(es_url, tmp_path / "state", index_prefix, [str(logs / "*.jsonl")], "--stats",
                       "--batch-docs", "500")
    proc = start_shipper(cmd, tmp_path / "ship.log", track=shipper_procs)
    wait_for(lambda: _count(es, index_prefix) >= 3000, timeout=120, what="3000 documents")
    code, first = _stop(proc)
    assert code == 0
    assert first["stopped_by_signal"] is True
    writer.join(120)
    again = run_cli([*cmd, "--once"])
    assert again.returncode == 0, again.stderr
    second = last_json(again.stdout)
    assert (first["shipped"] + second["shipped"], second["duplicates"]) == (total, 0)
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, total)
    assert dead_letters(tmp_path / "state") == []


def test_rename_rotation_under_load_and_while_stopped(
    es: Elasticsearch, es_url: str, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path,
    shipper_procs: list[subprocess.Popen[bytes]],
) -> None:
    """Rotation every 300 lines while shipping, and several rotations while the shipper is stopped."""
    total = 9_000
    writer = _Writer(logs, rotate_every=300, per_write=50)
    cmd = ship_command(es_url, tmp_path / "state", index_prefix, [str(logs / "*.jsonl")], "--stats",
                       "--batch-docs", "500")
    # The shipper must have seen the live file once: files rotated away before its first look are
    # outside the glob and unknown to it (ship "logs/*.jsonl*" to include them).
    writer.write(50)
    proc = start_shipper(cmd, tmp_path / "ship.log", track=shipper_procs)
    wait_for(lambda: _count(es, index_prefix) >= 50, timeout=120, what="the first 50 documents")
    writer.start(4_000)
    writer.join(120)
    code, _ = _stop(proc)
    assert code == 0
    writer.write(6_000)  # five more rotations while the shipper is stopped
    proc = start_shipper(cmd, tmp_path / "ship.log", track=shipper_procs)
    writer.start(total)
    writer.join(120)
    assert writer.rotations == 30
    wait_for(lambda: _count(es, index_prefix) >= total, timeout=180, what=f"{total} documents")
    code, _ = _stop(proc)
    assert code == 0
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, total)
    assert dead_letters(tmp_path / "state") == []


def test_copytruncate_under_load(
    es: Elasticsearch, es_url: str, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path,
    shipper_procs: list[subprocess.Popen[bytes]],
) -> None:
    """copytruncate every 400 lines: the live file is re-read after each truncation, the copies fill any gap."""
    total = 6_000
    writer = _Writer(logs, copytruncate_every=400, per_write=50)
    # The copies must be read too: lines written after the shipper's last read and before the
    # truncation exist only in the copy (copytruncate's known window, as with any tailer).
    cmd = ship_command(es_url, tmp_path / "state", index_prefix, [str(logs / "app.jsonl*")], "--stats",
                       "--batch-docs", "500")
    proc = start_shipper(cmd, tmp_path / "ship.log", track=shipper_procs)
    writer.start(total)
    writer.join(180)
    assert writer.rotations == 15
    wait_for(lambda: _count(es, index_prefix) >= total, timeout=180, what=f"{total} documents")
    code, stats = _stop(proc)
    assert code == 0
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, total)
    assert dead_letters(tmp_path / "state") == []
    assert stats["shipped"] == total
