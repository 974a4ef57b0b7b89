"""Records per second into a 3-node cluster: 1, 2 and 3 shippers against a raw ``_bulk`` client, same run.

For each k in ``--shippers`` (default 1,2,3), interleaved, ``--reps`` times after ``--warmup`` uncounted rounds:

(a) raw: k minimal clients (urllib3, ``--in-flight`` threads each) post pre-built ``_bulk`` bodies of the
    same operations (record ``create`` + entity upsert) round-robin over the nodes;
(b) k ``celery-logs ship --once`` processes, each with its own file and state, every node in ``--es``.

Each shipper has its own ``--records`` records (distinct ids), so k shippers move k times the records;
indices have 1 replica, as the shipper chooses on a cluster. The figure is records acknowledged per
second over all clients, wall clock from the first start to the last end; the ratio (b)/(a) is quoted.

    python benchmarks/cluster_throughput.py [--records 50000] [--reps 3] [--shippers 1,2,3] [--es URL,URL,URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from itertools import cycle, islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from elasticsearch import Elasticsearch  # noqa: E402

from pipelines import install  # noqa: E402
from pipelines.dev import LocalCluster  # noqa: E402
from pipelines.ship.parse import Parser  # noqa: E402
from tests.ship import records  # noqa: E402


def _bodies(path: Path, prefix: str, tasks: str, batch: int) -> list[bytes]:
    parser = Parser(index_prefix=prefix, tasks_index=tasks)
    ops: list[bytes] = []
    with path.open("rb") as fh:
        for raw in fh:
            parsed = parser.parse(raw.rstrip(b"\n"))
            assert parsed is not None
            ops.append(parsed.create)
            if parsed.update is not None:
                ops.append(parsed.update)
    return [b"".join(ops[i : i + batch]) for i in range(0, len(ops), batch)]


def raw_run(urls: list[str], bodies_per_client: list[list[bytes]], in_flight: int, *, refresh: str) -> float:
    """Seconds for k clients to post their bodies, each with ``in_flight`` threads, then each to refresh
    ``refresh`` (as ``ship --once`` does when its input ends); every item must succeed."""
    import urllib3

    pool = urllib3.PoolManager(maxsize=in_flight * len(bodies_per_client) * len(urls))
    lock = threading.Lock()
    nodes = cycle(urls)
    errors: list[str] = []
    todos = [list(b) for b in bodies_per_client]

    def worker(todo: list[bytes]) -> None:
        while True:
            with lock:
                if not todo:
                    return
                body = todo.pop(0)
                url = next(nodes)
            resp = pool.request("POST", f"{url}/_bulk?filter_path=errors,items.*.status", body=body,
                                headers={"content-type": "application/x-ndjson"})
            doc = json.loads(resp.data)
            if resp.status != 200 or doc.get("errors"):
                errors.append(f"{resp.status} {str(doc)[:200]}")

    threads = [threading.Thread(target=worker, args=(todo,)) for todo in todos for _ in range(in_flight)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for url in islice(cycle(urls), len(bodies_per_client)):
        resp = pool.request("POST", f"{url}/{refresh}/_refresh")
        if resp.status != 200:
            errors.append(f"refresh {resp.status} {resp.data[:200]!r}")
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"raw run had errors: {errors[:3]}")
    return elapsed


def shipper_run(es_url: str, paths: list[Path], prefix: str, tasks: str, work: Path, in_flight: int) -> float:
    """Seconds for one ``ship --once`` process per path, run side by side, to ship everything."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmds = [
        [sys.executable, "-m", "pipelines.cli", "ship", "--once", "--es", es_url, "--index-prefix", prefix,
         "--tasks-index", tasks, "--state-dir", str(work / f"state-{i}"), "--in-flight", str(in_flight),
         "--stats", "--log-level", "warning", "--skip-setup", str(path)]
        for i, path in enumerate(paths)
    ]  # fmt: skip
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for c in cmds]
    outs = [p.communicate(timeout=1800) for p in procs]
    elapsed = time.perf_counter() - start
    for proc, (out, err), path in zip(procs, outs, paths, strict=True):
        stats = json.loads(out.decode().strip().splitlines()[-1]) if out.strip() else {}
        lines = sum(1 for _ in path.open("rb"))
        if proc.returncode != 0 or stats.get("shipped", 0) + stats.get("duplicates", 0) != lines:
            raise SystemExit(f"shipper run incomplete (exit {proc.returncode}): {stats} {err.decode()[-300:]}")
    return elapsed


def _fresh(es: Elasticsearch, prefix: str, tasks: str) -> None:
    es.options(ignore_status=404).indices.delete(index=f"{prefix}-*,{tasks}", expand_wildcards="all")
    result = install(es, index_prefix=prefix, tasks_index=tasks)
    assert result.replicas == 1, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=50_000, help="records per shipper (default 50000)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1,
                    help="rounds run first, not counted (the nodes warm up: a first round ran at a third of the speed)")
    ap.add_argument("--shippers", default="1,2,3")
    ap.add_argument("--in-flight", type=int, default=2, help="requests in flight per client (default 2)")
    ap.add_argument("--batch", type=int, default=5000, help="operations per raw request (default 5000)")
    ap.add_argument("--es", help="comma-separated node URLs (default: start a local 3-node cluster)")
    ap.add_argument("--heap", default="512m", help="heap per node of the local cluster (default 512m)")
    args = ap.parse_args()
    ks = [int(k) for k in args.shippers.split(",")]
    cluster = None if args.es else LocalCluster(nodes=3, heap=args.heap)
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        if cluster is not None:
            cluster.start()
        es_url = args.es or cluster.url  # type: ignore[union-attr]
        urls = es_url.split(",")
        es = Elasticsearch(urls, request_timeout=300)
        paths = []
        for i in range(max(ks)):
            path = work / f"records-{i}.log"
            records.write(path, 0, args.records, run=f"s{i}")
            paths.append(path)
        raw: dict[int, list[float]] = {k: [] for k in ks}
        ship: dict[int, list[float]] = {k: [] for k in ks}
        for rep in range(-args.warmup, args.reps):
            for k in ks:
                n = k * args.records
                prefix, tasks = f"bench-raw-{k}", f"bench-raw-{k}.tasks"
                _fresh(es, prefix, tasks)
                bodies = [_bodies(p, prefix, tasks, args.batch) for p in paths[:k]]
                raw_rate = n / raw_run(urls, bodies, args.in_flight, refresh=f"{prefix}-2*,{tasks}")
                prefix, tasks = f"bench-ship-{k}", f"bench-ship-{k}.tasks"
                _fresh(es, prefix, tasks)
                ship_rate = n / shipper_run(es_url, paths[:k], prefix, tasks, work / f"r{rep}-k{k}", args.in_flight)
                label = f"rep {rep + 1}" if rep >= 0 else "warm-up"
                print(f"{label}, {k} shipper(s): raw {raw_rate:,.0f}/s, shippers {ship_rate:,.0f}/s "
                      f"({ship_rate / raw_rate:.2f})", flush=True)
                if rep >= 0:
                    raw[k].append(raw_rate)
                    ship[k].append(ship_rate)
        for k in ks:
            r, s = statistics.median(raw[k]), statistics.median(ship[k])
            ratio = statistics.median(b / a for a, b in zip(raw[k], ship[k], strict=True))
            print(f"median of {args.reps}, {k} shipper(s): raw _bulk {r:,.0f} records/s, shippers {s:,.0f} records/s,"
                  f" ratio {ratio:.2f}")
        es.options(ignore_status=404).indices.delete(index="bench-raw-*,bench-ship-*", expand_wildcards="all")
        es.close()
    finally:
        if cluster is not None:
            cluster.cleanup()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
