"""How close the shipper comes to what the cluster can take, what it costs in CPU, and its memory.

In one run, against the same local node and the same records, interleaved repetitions of:

(a) the ceiling: a minimal client (urllib3, ``in_flight`` threads) posting pre-built ``_bulk`` bodies of
    the same operations, at each of several batch sizes; the best batch size's median is the ceiling;
(b) the shipper end to end, file to acknowledged (``Shipper.run_once`` with a client);

both without and with the entity index (``--tasks``). The node gets half the cores and the clients (ceiling
and shipper alike) the other half, as when the shipper runs on the workers' hosts (``--no-pin``: share them).
Then the shipper's CPU per record with Elasticsearch
replaced by :class:`NullSink`, and its peak RSS while shipping files of growing size to the null sink.
Targets (issue 4): (b)/(a) >= 0.9; <= 10 us of CPU per record; peak RSS < 150 MB and flat.

    python benchmarks/ship_throughput.py [--records 100000] [--reps 3] [--es URL] [--memory-mb 256,1024]
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from celery_logs._schema import tasks_index_body  # noqa: E402
from pipelines import NullSink, Shipper, ShipperConfig, install  # noqa: E402
from pipelines.ship.parse import Parser  # noqa: E402
from tests.ship import records  # noqa: E402


def _bodies(path: Path, batch: int, tasks: str | None) -> list[tuple[bytes, int]]:
    parser = Parser(index_prefix="PREFIX", tasks_index=tasks)
    ops: list[bytes] = []
    with path.open("rb") as fh:
        for raw in fh:
            parsed = parser.parse(raw.rstrip(b"\n"))
            assert parsed is not None
            ops.append(parsed.create)
            if parsed.update is not None:
                ops.append(parsed.update)
    return [(b"".join(ops[i : i + batch]), len(ops[i : i + batch])) for i in range(0, len(ops), batch)]


def ceiling(url: str, bodies: list[tuple[bytes, int]], prefix: str, tasks: str | None, in_flight: int) -> float:
    """Seconds to post every body with ``in_flight`` threads; checks every item succeeded."""
    import urllib3

    pool = urllib3.PoolManager(maxsize=in_flight)
    todo = [
        (b.replace(b'"PREFIX-', f'"{prefix}-'.encode()).replace(b'"TASKS"', f'"{tasks}"'.encode()), n)
        for b, n in bodies
    ]
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                body, _count = todo.pop(0)
            resp = pool.request("POST", f"{url}/_bulk?filter_path=errors,items.*.status", body=body,
                                headers={"content-type": "application/x-ndjson"})
            doc = json.loads(resp.data)
            if resp.status != 200 or doc.get("errors"):
                errors.append(f"{resp.status} {str(doc)[:200]}")

    threads = [threading.Thread(target=worker) for _ in range(in_flight)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise SystemExit(f"ceiling run had errors: {errors[:3]}")
    return elapsed


def shipper_run(client: object, path: Path, prefix: str, tasks: str | None, state: Path, in_flight: int,
                batch: int) -> float:
    cfg = ShipperConfig(paths=[str(path)], state_dir=state, index_prefix=prefix, tasks_index=tasks, follow=False,
                        in_flight=in_flight, batch_max_docs=batch)
    start = time.perf_counter()
    stats = Shipper(cfg, client=client).run_once()  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    if stats.shipped != sum(1 for _ in path.open("rb")) or stats.dead_lettered:
        raise SystemExit(f"shipper run incomplete: {stats}")
    return elapsed


def cpu_per_record(path: Path, n: int, tasks: str | None, work: Path, reps: int) -> float:
    samples = []
    for k in range(reps):
        cfg = ShipperConfig(paths=[str(path)], state_dir=work / f"cpu-{tasks}-{k}", tasks_index=tasks, follow=False)
        start = time.process_time()
        Shipper(cfg, sink=NullSink()).run_once()
        samples.append((time.process_time() - start) / n * 1e6)
    return statistics.median(samples)


# VmHWM, not getrusage: ru_maxrss survives exec on Linux, so it would report this parent's peak.
_RSS_CHILD = """
import re, sys
sys.path.insert(0, {root!r})
from pipelines import NullSink, Shipper, ShipperConfig
cfg = ShipperConfig(paths=[{path!r}], state_dir=__import__("pathlib").Path({state!r}), follow=False)
stats = Shipper(cfg, sink=NullSink()).run_once()
hwm = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(stats.shipped, hwm)
"""


def peak_rss(path: Path, state: Path) -> tuple[int, float]:
    code = _RSS_CHILD.format(root=str(ROOT), path=str(path), state=str(state))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return int(out[0]), int(out[1]) / 1024


def _grow(path: Path, megabytes: int) -> None:
    chunk = b"".join(records.lines(0, 2000, run="mem"))
    i = 0
    with path.open("ab") as fh:
        while path.stat().st_size < megabytes << 20:
            fh.write(chunk.replace(b'"mem-e0', f'"mem{i}-e0'.encode()))
            fh.flush()
            i += 1


def _pin_cores() -> tuple[set[int], set[int]] | None:
    """Half the cores for the node, the rest for the client under test; ``None`` with fewer than two.

    In production the shipper runs on the workers' hosts and Elasticsearch on its own: on one shared
    machine, (b)/(a) would otherwise measure how much CPU the shipper takes from the node rather than
    how well it keeps the node busy. The CPU the shipper spends is measured on its own (null sink).
    """
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None
    half = len(cores) // 2
    return set(cores[:half]), set(cores[half:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--es", help="an Elasticsearch URL (default: start a local node)")
    ap.add_argument("--in-flight", type=int, default=2)
    ap.add_argument("--batches", default="1000,2000,5000", help="batch sizes tried for the ceiling")
    ap.add_argument("--ship-batches", default="2000,5000", help="--batch-docs values tried for the shipper")
    ap.add_argument("--memory-mb", default="256,1024", help="file sizes for the RSS measurement (0: skip)")
    ap.add_argument("--skip-es", action="store_true", help="only the null-sink CPU and memory figures")
    ap.add_argument("--no-pin", dest="pin", action="store_false",
                    help="let the node and the clients share every core (default: split them, as across hosts)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ship-bench-"))
    data = work / "records.jsonl"
    records.write(data, 0, args.records, run="bench")
    size_mb = data.stat().st_size / 1e6
    print(f"{args.records} records, {size_mb:.1f} MB, {args.reps} interleaved repetitions")

    results: dict[str, Any] = {"records": args.records, "file_mb": round(size_mb, 1)}
    if not args.skip_es:
        from pipelines._connection import ConnectionSettings
        from pipelines.dev.stack import LocalElasticsearch

        node = None
        url = args.es
        pinned = _pin_cores() if args.pin else None
        if pinned is not None:
            os.sched_setaffinity(0, pinned[0])  # the node (a child) inherits this thread's cores ...
        if url is None:
            node = LocalElasticsearch(heap="1g").start()
            url = node.url
        if pinned is not None:
            os.sched_setaffinity(0, pinned[1])  # ... and the clients' threads this one's
            print(f"Elasticsearch on cores {sorted(pinned[0])}, clients and shipper on {sorted(pinned[1])}")
        else:
            print("Elasticsearch, clients and shipper share every core")
        es = ConnectionSettings(url=url, request_timeout=120).client()  # the client `celery-logs ship` builds
        try:
            install(es, index_prefix="bench", tasks_index=None)
            batches = [int(b) for b in args.batches.split(",")]
            ship_batches = [int(b) for b in args.ship_batches.split(",")]
            for tasks_on in (False, True):
                label = "with entity index" if tasks_on else "records only"
                bodies = {b: _bodies(data, b, "TASKS" if tasks_on else None) for b in batches}
                ceil: dict[int, list[float]] = {b: [] for b in batches}
                ship: dict[int, list[float]] = {b: [] for b in ship_batches}
                run = 0
                # Untimed: the node's JIT and caches warm up on this pass, not on whichever run comes first.
                warm, warm_tasks = f"bench-w-{int(tasks_on)}", "benchtasks-w" if tasks_on else None
                if warm_tasks:
                    es.indices.create(index=warm_tasks, body=tasks_index_body())
                ceiling(url, bodies[max(batches)], warm, warm_tasks, args.in_flight)
                es.options(ignore_status=404).indices.delete(index=f"{warm}-*,{warm_tasks or warm}")
                for _rep in range(args.reps):
                    for b in batches:
                        run += 1
                        prefix, tasks = f"bench-c{run}-{int(tasks_on)}", f"benchtasks-c{run}" if tasks_on else None
                        if tasks:
                            es.indices.create(index=tasks, body=tasks_index_body())
                        ceil[b].append(ceiling(url, bodies[b], prefix, tasks, args.in_flight))
                        es.options(ignore_status=404).indices.delete(index=f"{prefix}-*,{tasks or prefix}")
                    for sb in ship_batches:
                        run += 1
                        prefix, tasks = f"bench-s{run}-{int(tasks_on)}", f"benchtasks-s{run}" if tasks_on else None
                        if tasks:
                            es.indices.create(index=tasks, body=tasks_index_body())
                        state = work / f"state-{int(tasks_on)}-{run}"
                        ship[sb].append(shipper_run(es, data, prefix, tasks, state, args.in_flight, sb))
                        es.options(ignore_status=404).indices.delete(index=f"{prefix}-*,{tasks or prefix}")
                best = min(batches, key=lambda b: statistics.median(ceil[b]))
                a = args.records / statistics.median(ceil[best])
                for bsize in batches:
                    rate = args.records / statistics.median(ceil[bsize])
                    print(f"[{label}] ceiling, batch {bsize}: {rate:,.0f} records/s")
                print(f"[{label}] (a) ceiling (batch {best}): {a:,.0f} records/s (median)")
                results[label] = {"ceiling": round(a), "ceiling_batch": best}
                for sb in ship_batches:
                    b_rate = args.records / statistics.median(ship[sb])
                    print(f"[{label}] (b) shipper end to end, --batch-docs {sb}: {b_rate:,.0f} records/s (median)"
                          f"; (b)/(a) = {b_rate / a:.2f}  (target >= 0.9)")
                    results[label][f"shipper_{sb}"] = round(b_rate)
                    results[label][f"ratio_{sb}"] = round(b_rate / a, 3)
            es.indices.delete_index_template(name="bench")
        finally:
            es.close()
            if node is not None:
                node.cleanup()

    for tasks in (None, "celery-tasks"):
        us = cpu_per_record(data, args.records, tasks, work, args.reps)
        label = "with entity updates" if tasks else "records only"
        print(f"[null sink, {label}] CPU per record: {us:.1f} us (median; target <= 10) -> "
              f"{1e6 / us:,.0f} records/s on a core")
        results[f"cpu_us_{'tasks' if tasks else 'records'}"] = round(us, 2)

    sizes = [int(s) for s in args.memory_mb.split(",") if s and int(s) > 0]
    big = work / "big.jsonl"
    for mb in sizes:
        _grow(big, mb)
        shipped, rss = peak_rss(big, work / f"rss-{mb}")
        print(f"[null sink] {mb} MB file ({shipped:,} records): peak RSS {rss:.0f} MB (target < 150, flat)")
        results[f"peak_rss_mb_{mb}"] = round(rss)
    print(json.dumps(results))
    subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
