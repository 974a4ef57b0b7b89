"""What a smaller entity document would cost: bytes per task of ``celery-tasks`` under variants of its contract.

The entity index takes about 264 B per task (``benchmarks/storage.py``); issue 13 asked for 200. This
measures, on the same synthetic histories (``pipelines.dev.synth``) and through the same partial upserts
the shipper sends, what each change to the document would save, alone and together:

- ``compact-id``: the ``_id`` is the task id's 16 bytes in URL-safe base64 (22 characters) instead of the
  36-character text, which Elasticsearch already stores as 27 bytes;
- ``no-task-id``: ``task_id`` is left out of ``_source`` (it is the ``_id``);
- ``no-self-root``: ``root_id`` is left out when it is the task's own id (every task that is not in a
  workflow);
- ``received-dv``: ``received_at`` (Kibana's time field) keeps doc values only, no index;
- ``queue-wait-dv``: ``queue_wait`` keeps doc values only instead of an index only;
- ``millis``: times in ``_source`` are epoch milliseconds instead of ISO-8601 text with microseconds;
- ``sorted``: the index is sorted on ``received_at``.

Each variant's index is force-merged to one segment and measured with ``_stats/store`` (primaries).

    python benchmarks/entity_storage.py [--tasks 20000] [--seed 100] [--variants base,compact-id,...] [--es URL]
"""

from __future__ import annotations

import argparse
import base64
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elasticsearch import Elasticsearch, helpers  # noqa: E402

from celery_logs import _schema  # noqa: E402
from pipelines.dev import LocalElasticsearch  # noqa: E402
from pipelines.dev import synth as _synth  # noqa: E402

Doc = dict[str, Any]
OnBody = Callable[[Doc], None]
OnId = Callable[[str], str]
OnDoc = Callable[[str, Doc], Doc]
_DATES = {f.name for f in _schema.TASK_FIELDS if f.type == "date"}


def _compact(task_id: str) -> str:
    try:
        return base64.urlsafe_b64encode(uuid.UUID(task_id).bytes).rstrip(b"=").decode()
    except ValueError:
        return task_id


def _millis(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    return int(datetime.fromisoformat(value).timestamp() * 1000)


#: name -> (change to the index body, change to the _id, change to each partial document).
CHANGES: dict[str, tuple[OnBody | None, OnId | None, OnDoc | None]] = {
    "compact-id": (None, _compact, None),
    "no-task-id": (None, None, lambda tid, d: {k: v for k, v in d.items() if k != "task_id"}),
    "no-self-root": (None, None, lambda tid, d: {k: v for k, v in d.items() if not (k == "root_id" and v == tid)}),
    "received-dv": (lambda b: b["mappings"]["properties"]["received_at"].update(index=False, doc_values=True),
                    None, None),
    "queue-wait-dv": (lambda b: b["mappings"]["properties"]["queue_wait"].update(index=False, doc_values=True),
                      None, None),
    "millis": (None, None, lambda tid, d: {k: (_millis(v) if k in _DATES else v) for k, v in d.items()}),
    "sorted": (lambda b: b["settings"]["index"].update({"sort.field": "received_at", "sort.order": "asc"}),
               None, None),
}  # fmt: skip

DEFAULT_VARIANTS = (
    "base", "compact-id", "no-task-id", "no-self-root", "received-dv", "millis", "sorted",
    "no-task-id+no-self-root+received-dv+queue-wait-dv",
    "no-task-id+no-self-root+received-dv+queue-wait-dv+millis",
    "compact-id+no-self-root+received-dv+queue-wait-dv+millis",
    "compact-id+no-task-id+no-self-root+received-dv+queue-wait-dv",
    "compact-id+no-task-id+no-self-root+received-dv+queue-wait-dv+millis",
)  # fmt: skip


def _chain(outer: OnDoc, inner: OnDoc) -> OnDoc:
    return lambda tid, d: inner(tid, outer(tid, d))


def _variant(name: str) -> tuple[Doc, OnId, OnDoc]:
    body = _schema.tasks_index_body()
    id_of: OnId = lambda tid: tid  # noqa: E731
    doc_of: OnDoc = lambda tid, d: d  # noqa: E731
    for part in name.split("+"):
        if part == "base":
            continue
        if part not in CHANGES:
            raise SystemExit(f"entity_storage.py: no variant part {part!r}; the parts are {', '.join(CHANGES)}")
        on_body, on_id, on_doc = CHANGES[part]
        if on_body is not None:
            on_body(body)
        if on_id is not None:
            id_of = on_id
        if on_doc is not None:
            doc_of = _chain(doc_of, on_doc)
    return body, id_of, doc_of


def measure(es: Elasticsearch, records: list[Doc], name: str) -> tuple[float, int]:
    """(bytes per task, tasks) of ``records``' entity documents under variant ``name``."""
    body, id_of, doc_of = _variant(name)
    index = "bench-entity-" + name.replace("+", ".")
    es.options(ignore_status=404).indices.delete(index=index)
    es.indices.create(index=index, **body)

    def actions() -> Iterator[Doc]:
        for rec in records:
            upd = _schema.task_entity_update(rec)
            if upd is not None:
                yield {"_op_type": "update", "_index": index, "_id": id_of(upd[0]), "doc": doc_of(upd[0], upd[1]),
                       "doc_as_upsert": True, "retry_on_conflict": 3}  # fmt: skip

    helpers.bulk(es.options(request_timeout=300), actions(), chunk_size=5000)
    es.indices.refresh(index=index)
    es.options(request_timeout=600).indices.forcemerge(index=index, max_num_segments=1, wait_for_completion=True)
    es.indices.refresh(index=index)
    stats = es.indices.stats(index=index, metric="store,docs")["_all"]["primaries"]
    es.indices.delete(index=index)
    return stats["store"]["size_in_bytes"] / stats["docs"]["count"], int(stats["docs"]["count"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="comma-separated; parts joined by +")
    ap.add_argument("--es", help="an Elasticsearch URL (default: start a local node)")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    for v in variants:
        _variant(v)  # a wrong name stops here, before a node starts
    node = None if args.es else LocalElasticsearch(heap="512m", startup_timeout=900)
    try:
        if node is not None:
            node.start()
        es = Elasticsearch(args.es or node.url, request_timeout=300)  # type: ignore[union-attr]
        records = _synth.generate(tasks=args.tasks, seed=args.seed).records
        base = None
        for v in variants:
            per_task, tasks = measure(es, records, v)
            base = per_task if v == "base" else base
            delta = "" if base is None or v == "base" else f"  ({per_task - base:+.1f})"
            print(f"{v:70s} {per_task:6.1f} B/task{delta}  [{tasks} tasks]", flush=True)
        es.close()
    finally:
        if node is not None:
            node.cleanup()


if __name__ == "__main__":
    main()
