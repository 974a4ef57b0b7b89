"""How long a full report takes over 1 000 000 records, and whether its memory stays flat.

Starts its own Elasticsearch node, loads two synthetic datasets (about 100 000 and 1 000 000 records,
each spread over the same 24 hours) under two index prefixes, then builds the full report (every
section, rendered as HTML) over each, interleaving the two so machine noise hits both alike. Reports
medians, and the 1M/100k ratios of time and of Python's peak allocated memory (tracemalloc).

Targets (issue 6): the 1M report in <= 3 s; peak memory flat between 100k and 1M (ratio near 1).

    python benchmarks/report_speed.py [--records 1000000] [--baseline 100000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from elasticsearch import Elasticsearch, helpers

from celery_logs import _schema
from pipelines.analytics.render import render
from pipelines.analytics.report import ReportSettings, build_report
from pipelines.analytics.timeparse import Window
from pipelines.dev import synth as _synth
from pipelines.dev.stack import LocalElasticsearch

START = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
SPAN = timedelta(hours=24)
RECORDS_PER_TASK = 5.0  # published, received, started, app line, end; retries add a few
HEARTBEATS = 3 * int(SPAN / timedelta(seconds=30))  # three workers beating every 30 s
CHUNK_TASKS = 10_000


def _chunks(records: int, seed: int) -> Iterator[_synth.SynthHistory]:
    """Histories of CHUNK_TASKS tasks each, back to back over SPAN, until about ``records`` records."""
    tasks_total = int(max(records - HEARTBEATS, 1000) / RECORDS_PER_TASK)
    n_chunks = max(1, round(tasks_total / CHUNK_TASKS))
    piece = SPAN / n_chunks
    for i in range(n_chunks):
        yield _synth.generate(
            tasks=tasks_total // n_chunks,
            start=START + piece * i,
            span=piece,
            seed=seed * 1000 + i,
            lost_tasks=2 if i == n_chunks - 1 else 0,
            heartbeat_every=timedelta(seconds=30),
        )


def _entity_docs(hist: _synth.SynthHistory) -> dict[str, dict[str, Any]]:
    """What the shipper's partial upserts would leave in the entity index, merged here in one pass."""
    docs: dict[str, dict[str, Any]] = {}
    for rec in hist.records:
        upd = _schema.task_entity_update(rec)
        if upd is not None:
            docs.setdefault(upd[0], {}).update(upd[1])
    return docs


def load(es: Elasticsearch, *, prefix: str, tasks_index: str, records: int, seed: int) -> int:
    template = _schema.index_template(prefix=prefix)
    # No refreshes while loading: one at the end is far cheaper on two cores.
    template["template"]["settings"]["index"]["refresh_interval"] = "-1"
    es.indices.put_index_template(name=f"{prefix}-template", **template)
    es.options(ignore_status=400).indices.create(index=tasks_index, **_schema.tasks_index_body())
    loaded = 0
    client = es.options(request_timeout=300)
    for hist in _chunks(records, seed):
        actions = (
            {
                "_op_type": "create",
                "_index": _schema.daily_index(prefix, r["@timestamp"]),
                "_id": r["event"]["id"],
                "_source": r,
            }
            for r in hist.records
        )
        ok, _ = helpers.bulk(client, actions, chunk_size=5000, max_chunk_bytes=50 * 1024 * 1024)
        loaded += ok
        entity = ({"_index": tasks_index, "_id": k, "_source": v} for k, v in _entity_docs(hist).items())
        helpers.bulk(client, entity, chunk_size=5000)
        print(f"  {prefix}: {loaded:,} records", file=sys.stderr, flush=True)
    es.indices.put_settings(index=f"{prefix}-*", settings={"index": {"refresh_interval": "5s"}})
    es.indices.refresh(index=f"{prefix}-*,{tasks_index}")
    es.options(request_timeout=600).indices.forcemerge(index=f"{prefix}-*", max_num_segments=1)
    return loaded


def one_report(es: Elasticsearch, prefix: str, tasks_index: str) -> tuple[float, int, int]:
    """Seconds, peak traced bytes, and HTML size of one full report."""
    settings = ReportSettings(window=Window(START, START + SPAN), prefix=prefix, tasks_index=tasks_index)
    # Identical size-0 searches are answered from the shard request cache; measure the real work.
    es.indices.clear_cache(index=f"{prefix}-*", request=True)
    tracemalloc.start()
    t0 = time.perf_counter()
    report = build_report(es, settings, now=START + SPAN)
    html = render(report, "html")
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return elapsed, peak, len(html)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--baseline", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--heap", default="2g")
    args = parser.parse_args()

    with LocalElasticsearch(heap=args.heap) as node:
        es = Elasticsearch(node.url, request_timeout=120)
        sets = {"small": ("bench-small", args.baseline, 1), "large": ("bench-large", args.records, 2)}
        counts = {}
        for name, (prefix, records, seed) in sets.items():
            t0 = time.perf_counter()
            counts[name] = load(es, prefix=prefix, tasks_index=f"{prefix}-tasks-entity", records=records, seed=seed)
            print(
                f"loaded {counts[name]:,} records into {prefix}-* in {time.perf_counter() - t0:.0f} s", file=sys.stderr
            )
        # Warm-up: first queries pay for loading field data and caches, which is not what we measure.
        for prefix, *_ in sets.values():
            one_report(es, prefix, f"{prefix}-tasks-entity")
        times: dict[str, list[float]] = {k: [] for k in sets}
        peaks: dict[str, list[int]] = {k: [] for k in sets}
        for _ in range(args.repeat):
            for name, (prefix, *_) in sets.items():
                seconds, peak, _size = one_report(es, prefix, f"{prefix}-tasks-entity")
                times[name].append(seconds)
                peaks[name].append(peak)
        es.close()

    med_t = {k: statistics.median(v) for k, v in times.items()}
    med_m = {k: statistics.median(v) for k, v in peaks.items()}
    print(f"records            small {counts['small']:>10,}   large {counts['large']:>10,}")
    print(
        f"report median      small {med_t['small']:>9.3f}s   large {med_t['large']:>9.3f}s   "
        f"ratio {med_t['large'] / med_t['small']:.2f}   (target: large <= 3 s)"
    )
    print(
        f"peak memory median small {med_m['small'] / 1e6:>8.2f}MB   large {med_m['large'] / 1e6:>8.2f}MB   "
        f"ratio {med_m['large'] / med_m['small']:.2f}   (target: flat, ~1)"
    )
    print(
        f"all runs (s)       small {[round(x, 3) for x in times['small']]}  "
        f"large {[round(x, 3) for x in times['large']]}"
    )
    ok = med_t["large"] <= 3.0 and med_m["large"] / med_m["small"] < 1.5
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
