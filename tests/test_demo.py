"""The README's main command: the end-to-end demo runs by itself, finds the lost task, and cleans up."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from pipelines.dev.demo import run_demo


def _children() -> set[int]:
    me = str(os.getpid())
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


@pytest.mark.integration
@pytest.mark.parametrize("engine", ["elasticsearch", "opensearch"])
def test_demo_end_to_end(tmp_path: Path, engine: str) -> None:
    """Every line the worker wrote is indexed, the crash's task is the one lost task, nothing is left running."""
    lines: list[str] = []
    before = _children()
    result = run_demo(out_dir=tmp_path, say=lines.append, engine=engine)

    records = [json.loads(raw) for p in (tmp_path / "logs").glob("*.jsonl*") for raw in p.read_text().splitlines()]
    assert result.records == len(records)
    assert result.lost_task_ids == [result.killed_task_id]
    killed = result.killed_task_id
    actions = [r["event"].get("action") for r in records if r.get("celery", {}).get("task", {}).get("id") == killed]
    assert sorted(a for a in actions if a) == ["task-published", "task-received", "task-started"]
    by_action = Counter(r["event"].get("action", "") for r in records)
    # 2 rounds: 3 orders without a customer + 2 hard time limits; 2 receipts retried twice; 1 revoke.
    assert (by_action["task-failed"], by_action["task-retried"], by_action["task-revoked"]) == (5, 4, 1)
    assert by_action["worker-online"] == 2
    assert "shop.charge" in result.report_text
    assert "pipelines.dev.demo_app.PaymentDeclined" in result.report_text
    assert result.report_html.read_text().startswith("<!DOCTYPE html>")
    assert _children() == before
