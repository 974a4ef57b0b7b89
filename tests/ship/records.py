"""Realistic task lifecycle records, as the worker side writes them, for the shipper's tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

_ACTIONS = ("task-received", "task-started", "task-succeeded")


def record(i: int, *, run: str = "r", day: int = 22) -> dict[str, object]:
    """Record number ``i``: three lifecycle records per task, ids unique per ``run``."""
    task = i // 3
    action = _ACTIONS[i % 3]
    rec: dict[str, object] = {
        "@timestamp": f"2026-11-{day:02d}T10:{(i // 60) % 60:02d}:{i % 60:02d}.{i % 1000000:06d}Z",
        "message": f"{action}: billing.charge[{run}-t{task}]",
        "log": {"level": "info", "logger": "celery_logs.task"},
        "event": {
            "id": f"{run}-e{i:08d}",
            "kind": "event",
            "dataset": "celery.task",
            "action": action,
        },
        "service": {"name": "billing", "environment": "test"},
        "host": {"hostname": "worker-1"},
        "process": {"pid": 4242},
        "celery": {
            "task": {"id": f"{run}-t{task}", "name": "billing.charge", "retries": 0, "args": "(1, 2)"},
            "queue": "celery",
            "worker": "celery@worker-1",
        },
        "labels": {"tenant": f"tenant-{task % 7}"},
    }
    if action == "task-succeeded":
        rec["event"] = {**rec["event"], "outcome": "success", "duration": 1_000_000 + i}  # type: ignore[dict-item]
        rec["celery"]["task"]["state"] = "SUCCESS"  # type: ignore[index]
    return rec


def lines(start: int, stop: int, *, run: str = "r") -> Iterator[bytes]:
    """Serialised records ``start`` .. ``stop - 1``, newline-terminated."""
    for i in range(start, stop):
        yield json.dumps(record(i, run=run), separators=(",", ":")).encode() + b"\n"


def write(path: Path, start: int, stop: int, *, run: str = "r", mode: str = "ab") -> None:
    """Append records ``start`` .. ``stop - 1`` to ``path``."""
    with path.open(mode) as fh:
        fh.writelines(lines(start, stop, run=run))
