"""What the shipper's integration tests share: reading back what Elasticsearch holds, running the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

ROOT = Path(__file__).resolve().parents[2]


def stored_ids(es: Elasticsearch, prefix: str) -> list[str]:
    """Every ``_id`` in the prefix's daily indices in event.id order (duplicates kept, so a test can see them).

    A scroll, ordered here: event.id keeps no doc values to sort on.
    """
    from elasticsearch import NotFoundError, helpers

    es.options(ignore_status=404).indices.refresh(index=f"{prefix}-*")
    rows: list[tuple[bool, str, str]] = []
    try:
        for hit in helpers.scan(es, index=f"{prefix}-*", query={"query": {"match_all": {}}},
                                _source=["event.id"], size=5_000):
            eid = (hit.get("_source") or {}).get("event", {}).get("id")
            rows.append((not isinstance(eid, str), eid if isinstance(eid, str) else "", hit["_id"]))
    except NotFoundError:
        return []
    return [doc_id for _missing, _eid, doc_id in sorted(rows)]


def expected_ids(start: int, stop: int, *, run: str = "r") -> list[str]:
    return [f"{run}-e{i:08d}" for i in range(start, stop)]


def count(es: Elasticsearch, index: str) -> int:
    es.options(ignore_status=404).indices.refresh(index=index)
    resp = es.options(ignore_status=404).count(index=index)
    return int(resp.body.get("count", 0))


def wait_for(predicate: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``predicate`` until it holds or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def ship_command(es_url: str, state: Path, prefix: str, paths: Sequence[str], *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "pipelines.cli", "ship", "--es", es_url, "--state-dir", str(state),
        "--index-prefix", prefix, "--tasks-index", f"{prefix}.tasks", *extra, *paths,
    ]


def start_shipper(cmd: list[str], log: Path, *, track: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Start a shipper process; ``track`` (the ``shipper_procs`` fixture) kills it if the test fails."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err)
    track.append(proc)
    return proc


def run_cli(cmd: list[str], *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def last_json(text: str) -> dict[str, Any]:
    """The last line of ``text`` parsed as JSON (the ``--stats`` line)."""
    result: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
    return result


def dead_letters(state: Path) -> list[dict[str, Any]]:
    path = state / "dead-letter.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
