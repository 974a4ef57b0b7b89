"""Bytes on disk per record and per task: the celery-logs mappings against Elasticsearch's dynamic default.

In one run, on one node, the same synthetic records (``pipelines.dev.synth``: task lifecycles with
failures, retries, stack traces, heartbeats, the app's own lines) are loaded twice:

(a) into ``<prefix>-*`` under the celery-logs index template, with the entity index ``<prefix>.tasks``;
(b) into indices with no template at all (dynamic mapping, default codec), records and entity upserts alike.

Every index is force-merged to one segment, then measured with ``_stats/store`` (the figure quoted) and
``_disk_usage?run_expensive_tasks=true`` (the per-field breakdown, with ``--fields``). Targets (issue 13):
records <= 0.50x the dynamic default, the entity index <= 200 B per task. Repeated ``--reps`` times with
different seeds; medians.

    python benchmarks/storage.py [--tasks 20000] [--reps 3] [--es URL] [--fields]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elasticsearch import Elasticsearch, helpers  # noqa: E402

from pipelines import install  # noqa: E402
from pipelines.dev import LocalElasticsearch  # noqa: E402
from pipelines.dev import synth as _synth  # noqa: E402


def _store_bytes(es: Elasticsearch, index: str) -> tuple[int, int]:
    """(bytes on disk of the primaries, documents) of ``index`` after a merge to one segment."""
    es.indices.refresh(index=index)
    es.options(request_timeout=600).indices.forcemerge(index=index, max_num_segments=1, wait_for_completion=True)
    es.indices.refresh(index=index)
    stats = es.indices.stats(index=index, metric="store,docs")["_all"]["primaries"]
    return int(stats["store"]["size_in_bytes"]), int(stats["docs"]["count"])


def _fields(es: Elasticsearch, index: str) -> dict[str, int]:
    resp = es.options(request_timeout=600).perform_request(
        "POST", f"/{index}/_disk_usage", params={"run_expensive_tasks": "true"}, headers={"accept": "application/json"}
    )
    out: dict[str, int] = {}
    for name, body in resp.body.items():
        if name.startswith("_"):
            continue
        for field, usage in body.get("fields", {}).items():
            out[field] = out.get(field, 0) + int(usage["total_in_bytes"])
    return out


def measure(es: Elasticsearch, *, tasks: int, seed: int, show_fields: bool) -> dict[str, float]:
    history = _synth.generate(tasks=tasks, seed=seed)
    ours, dyn = f"bench-storage-{seed}", f"bench-dynamic-{seed}"
    es.options(ignore_status=404).indices.delete(index=f"{ours}*,{dyn}*", expand_wildcards="all")
    install(es, index_prefix=ours, tasks_index=f"{ours}.tasks", replicas=0)
    for prefix, tasks_index in ((ours, f"{ours}.tasks"), (dyn, f"{dyn}.tasks")):
        helpers.bulk(
            es.options(request_timeout=300),
            _synth.bulk_actions(history.records, prefix=prefix, tasks_index=tasks_index),
            chunk_size=5000,
        )
    n_tasks = len(history.tasks)
    out: dict[str, float] = {"records": len(history.records), "tasks": n_tasks}
    for label, prefix in (("ours", ours), ("dynamic", dyn)):
        rec_bytes, rec_docs = _store_bytes(es, f"{prefix}-*")
        task_bytes, task_docs = _store_bytes(es, f"{prefix}.tasks")
        assert rec_docs == len(history.records), (rec_docs, len(history.records))
        assert task_docs == n_tasks, (task_docs, n_tasks)
        out[f"{label}_per_record"] = rec_bytes / rec_docs
        out[f"{label}_per_task"] = task_bytes / task_docs
        if show_fields:
            for index in (f"{prefix}-*", f"{prefix}.tasks"):
                docs = rec_docs if index.endswith("*") else task_docs
                usage = sorted(_fields(es, index).items(), key=lambda kv: -kv[1])
                print(f"  {label} {index}: " + ", ".join(f"{k} {v / docs:.1f}" for k, v in usage[:25]))
    out["record_ratio"] = out["ours_per_record"] / out["dynamic_per_record"]
    out["total_ratio"] = (out["ours_per_record"] * out["records"] + out["ours_per_task"] * n_tasks) / (
        out["dynamic_per_record"] * out["records"] + out["dynamic_per_task"] * n_tasks
    )
    es.options(ignore_status=404).indices.delete(index=f"{ours}*,{dyn}*", expand_wildcards="all")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--es", help="an Elasticsearch URL (default: start a local node)")
    ap.add_argument("--fields", action="store_true", help="print bytes per document of the biggest fields")
    args = ap.parse_args()
    node = None if args.es else LocalElasticsearch(heap="512m", startup_timeout=900)
    try:
        if node is not None:
            node.start()
        es = Elasticsearch(args.es or node.url, request_timeout=300)  # type: ignore[union-attr]
        runs: list[dict[str, float]] = []
        for rep in range(args.reps):
            run = measure(es, tasks=args.tasks, seed=100 + rep, show_fields=args.fields and rep == 0)
            runs.append(run)
            print(
                f"rep {rep + 1}: {run['records']:.0f} records, {run['tasks']:.0f} tasks; per record "
                f"{run['ours_per_record']:.1f} B vs dynamic {run['dynamic_per_record']:.1f} B "
                f"({run['record_ratio']:.3f}x); per task {run['ours_per_task']:.1f} B vs dynamic "
                f"{run['dynamic_per_task']:.1f} B; records+tasks {run['total_ratio']:.3f}x of dynamic",
                flush=True,
            )
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"median of {len(runs)}: per record {med['ours_per_record']:.1f} B vs dynamic "
            f"{med['dynamic_per_record']:.1f} B = {med['record_ratio']:.3f}x (target <= 0.50); per task "
            f"{med['ours_per_task']:.1f} B (target <= 200) vs dynamic {med['dynamic_per_task']:.1f} B; "
            f"records+tasks {med['total_ratio']:.3f}x of dynamic"
        )
        es.close()
    finally:
        if node is not None:
            node.cleanup()


if __name__ == "__main__":
    main()
