"""What celery-logs costs a worker, measured against baselines in the same run (interleaved, medians).

(a) CPU time added per task by the lifecycle records, in-process: a succeeding task run through Celery's
    real execution path (``Task.apply``: task-started + task-succeeded), plus the main process's
    task-received and the producer's task-published receivers, each timed with ``time.process_time``
    against the same work without celery-logs. Target: <= 25 us per task.
    Also in the same interleaved run: seed-style statsd handlers (``benchmarks/_statsd.py``: four UDP
    datagrams on the same two signals) on the same ``Task.apply()``. Target: celery-logs' run part adds at
    most half of what they add (the median of the per-repetition ratios is printed).
    Beside each figure, in the same interleaved run, the floor the record contract sets on this machine
    (every record one unbuffered ``write()`` of a whole line, task-started on disk before the task body
    runs): the same ``Task.apply`` with two receivers on ``task_prerun`` / ``task_postrun`` that do
    nothing but ``os.write`` a pre-built line as long as our task-started / task-succeeded line, and
    bare receivers that ``os.write`` a pre-built line as long as our task-received / task-published one.
    The difference between the two columns is all the formatting celery-logs does. (The received and
    published floors are bare writes in a loop, so unlike the run floor they leave out what a write costs
    the code that runs after it on machines where kernel entries flush caches: they understate a little.)
(b) Throughput of a real solo worker draining N no-op tasks from Redis, with celery-logs, against the
    same worker without it (target >= 90 %); beside them, statsd-style signal handlers (a counter and a
    timer per task over UDP) and Celery events (``-E``, what Flower and the Prometheus exporters need).

Run: ``python benchmarks/worker_overhead.py [--reps 5] [--tasks 2000]``. Needs ``redis-server`` on PATH.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import celery_logs  # noqa: E402
from benchmarks import _statsd  # noqa: E402
from celery_logs import _lifecycle  # noqa: E402
from pipelines.dev.stack import LocalRedis  # noqa: E402
from tests.support.workers import run_worker  # noqa: E402


def _cpu_per_call(func: Any, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        func()
    return (time.process_time() - start) / n


def _line_lengths(directory: str) -> dict[str, int]:
    """Length in bytes of the last line of each lifecycle action in celery-logs' files in ``directory``."""
    lengths: dict[str, int] = {}
    for path in Path(directory).glob("bench.*.jsonl"):
        for line in path.read_bytes().splitlines(keepends=True):
            lengths[json.loads(line)["event"]["action"]] = len(line)
    return lengths


def _floor_writer(directory: str, length: int, fds: list[int]) -> Any:
    """A receiver that does what the contract requires and nothing else: one write() of a whole line."""
    fd = os.open(os.path.join(directory, f"floor-{length}.jsonl"),
                 os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    fds.append(fd)
    line = b"x" * (length - 1) + b"\n"

    def receiver(sender: Any = None, **_: Any) -> None:
        os.write(fd, line)

    return receiver


def in_process(reps: int, n: int) -> dict[str, tuple[float, float | None]]:
    """Median microseconds of CPU per task added by celery-logs, per part and in total, each with its floor."""
    from celery import Celery, signals
    from celery.contrib.testing.mocks import TaskMessage
    from celery.worker.request import Request

    app = Celery("bench-inproc", broker="memory://")
    app.conf.task_store_eager_result = False

    @app.task(name="bench.noop")
    def noop() -> None:
        return None

    hook_fd: list[int] = []
    hook_lines: list[bytes] = [b"\n", b"\n"]

    class WritingTask(app.Task):  # type: ignore[name-defined,misc]
        """The other hook: the tracer calls a task class's before_start / after_return directly, no signal."""

        def before_start(self, task_id: Any, args: Any, kwargs: Any) -> None:
            os.write(hook_fd[0], hook_lines[0])

        def after_return(self, *args: Any, **kwargs: Any) -> None:
            os.write(hook_fd[0], hook_lines[1])

    @app.task(name="bench.noop_hooked", base=WritingTask)
    def noop_hooked() -> None:
        return None

    message = TaskMessage("bench.noop", args=(1, 2), kwargs={"a": 1})
    message.delivery_info = {"exchange": "", "routing_key": "celery", "priority": 0, "redelivered": False}
    request = Request(message, app=app, hostname="bench@localhost", task=noop)
    headers = dict(app.amqp.as_task_v2(str(uuid.uuid4()), "bench.noop", args=(1, 2), kwargs={"a": 1}).headers)
    body = ((1, 2), {"a": 1}, {})

    def run() -> None:
        noop.apply()

    def run_hooked() -> None:
        noop_hooked.apply()

    def received() -> None:
        _lifecycle._task_received(sender=None, request=request)

    def published() -> None:
        _lifecycle._before_task_publish(sender="bench.noop", body=body, exchange="", routing_key="celery",
                                        headers=dict(headers))

    parts = ("run (started+succeeded)", "received", "published")
    deltas: dict[str, list[float]] = {name: [] for name in parts}
    floors: dict[str, list[float]] = {name: [] for name in parts}
    baseline: list[float] = []
    statsd: list[float] = []
    tracer: list[float] = []
    ratios: list[float] = []
    fds: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        celery_logs.install(app, service="bench", log_dir=tmp, level="WARNING")
        for _ in range(n // 10):  # warm-up, and one line of each action to size the floor's lines
            run()
        received()
        published()
        celery_logs.reset()
        length = _line_lengths(tmp)
        floor_prerun = _floor_writer(tmp, length["task-started"], fds)
        floor_postrun = _floor_writer(tmp, length["task-succeeded"], fds)
        floor_received = _floor_writer(tmp, length["task-received"], fds)
        floor_published = _floor_writer(tmp, length["task-published"], fds)
        hook_fd.append(os.open(os.path.join(tmp, "tracer-floor.jsonl"),
                               os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644))
        fds.append(hook_fd[0])
        hook_lines[:] = [b"x" * (length["task-started"] - 1) + b"\n", b"x" * (length["task-succeeded"] - 1) + b"\n"]

        def floor_received_call() -> None:
            floor_received(sender=None, request=request)

        def floor_published_call() -> None:
            floor_published(sender="bench.noop", body=body, exchange="", routing_key="celery", headers=dict(headers))

        # The statsd datagrams go to a bound socket nobody reads: what they cost the sender is what counts.
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        modes = ("plain", "celery-logs", "floor", "statsd", "tracer-floor")
        for rep in range(reps):
            # Rotate the order so no mode always runs first (or right after another given one).
            order = modes[rep % len(modes):] + modes[: rep % len(modes)]
            cost: dict[str, float] = {}
            for mode in order:
                celery_logs.reset()
                disconnect = None
                if mode == "celery-logs":
                    celery_logs.install(app, service="bench", log_dir=tmp, level="WARNING")
                elif mode == "floor":
                    signals.task_prerun.connect(floor_prerun, weak=False)
                    signals.task_postrun.connect(floor_postrun, weak=False)
                elif mode == "statsd":
                    disconnect = _statsd.connect(sink.getsockname()[1])
                try:
                    cost[mode] = _cpu_per_call(run_hooked if mode == "tracer-floor" else run, n)
                finally:
                    signals.task_prerun.disconnect(floor_prerun)
                    signals.task_postrun.disconnect(floor_postrun)
                    if disconnect is not None:
                        disconnect()
            deltas[parts[0]].append(cost["celery-logs"] - cost["plain"])
            floors[parts[0]].append(cost["floor"] - cost["plain"])
            statsd.append(cost["statsd"] - cost["plain"])
            tracer.append(cost["tracer-floor"] - cost["plain"])
            ratios.append((cost["celery-logs"] - cost["plain"]) / (cost["statsd"] - cost["plain"]))
            baseline.append(cost["plain"])
            celery_logs.reset()
            celery_logs.install(app, service="bench", log_dir=tmp, level="WARNING")
            # The receivers are the whole added cost on these sides: time them directly, beside their floor.
            pairs = ((parts[1], received, floor_received_call), (parts[2], published, floor_published_call))
            for name, ours, floor in pairs:
                if rep % 2:
                    floors[name].append(_cpu_per_call(floor, n))
                    deltas[name].append(_cpu_per_call(ours, n))
                else:
                    deltas[name].append(_cpu_per_call(ours, n))
                    floors[name].append(_cpu_per_call(floor, n))
            celery_logs.reset()
        for fd in fds:
            os.close(fd)
        sink.close()
    ours = {name: statistics.median(deltas[name]) * 1e6 for name in parts}
    floor = {name: statistics.median(floors[name]) * 1e6 for name in parts}
    result: dict[str, tuple[float, float | None]] = {name: (ours[name], floor[name]) for name in parts}
    result["total per task"] = (sum(ours.values()), sum(floor.values()))
    # For scale: what Celery itself spends running the same task in-process, without celery-logs.
    result["(Celery's own Task.apply())"] = (statistics.median(baseline) * 1e6, None)
    # The baseline of the target: four statsd datagrams on the same signals, per Task.apply().
    result["(statsd handlers, run)"] = (statistics.median(statsd) * 1e6, None)
    result["(run: celery-logs / statsd)"] = (statistics.median(ratios), None)
    # The floor of the contract through the other hook the tracer offers (a Task class's before_start and
    # after_return, called directly): the same two writes without Celery's signal dispatch.
    result["(run floor, tracer hooks)"] = (statistics.median(tracer) * 1e6, None)
    return result


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _drain(redis_url: str, mode: str, tasks: int, workdir: Path) -> tuple[float, float]:
    """Start a solo worker in `mode`, queue `tasks` no-ops while it is paused, time how fast it drains them.

    Returns (tasks per wall-clock second, tasks per CPU second of the worker process). On a shared,
    loaded machine the second is the steadier measure of what the worker itself spends.
    """
    import redis
    from celery import Celery

    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {"BENCH_MODE": mode, "BENCH_LOG_DIR": str(workdir / f"logs-{mode}"), "PYTHONPATH": str(ROOT)}
    extra = ["-E"] if mode == "events" else []
    producer = Celery("bench-producer", broker=redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        with run_worker("benchmarks._worker_bench_app", broker_url=redis_url, workdir=workdir, pool="solo",
                        concurrency=1, queues=[queue], env=env, extra_args=extra) as worker:
            producer.control.cancel_consumer(queue, destination=[worker.nodename], reply=True, timeout=10)
            key = f"done-{uuid.uuid4().hex}"
            with producer.connection_for_write() as conn, producer.producer_or_acquire() as prod:
                del conn
                for _ in range(tasks):
                    producer.send_task("bench.noop", queue=queue, producer=prod)
                producer.send_task("bench.done", args=(key,), queue=queue, producer=prod)
            cpu_before = _cpu_seconds(worker.proc.pid)
            start = time.time()
            producer.control.add_consumer(queue, destination=[worker.nodename], reply=True, timeout=10)
            deadline = time.monotonic() + 600
            while client.get(key) is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{mode}: tasks not drained")
                time.sleep(0.02)  # polling the finish marker
            finished = float(client.get(key) or 0)
            cpu = _cpu_seconds(worker.proc.pid) - cpu_before
    finally:
        client.flushdb()
        client.close()
        producer.close()
    return tasks / (finished - start), tasks / cpu


def throughput(reps: int, tasks: int, modes: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Per mode: median tasks/s (wall and CPU) and medians of the per-repetition ratios to the first mode."""
    modes = modes or ["plain", "celery_logs", "statsd", "events"]
    wall: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    redis_server = LocalRedis()
    redis_server.start()
    try:
        url = f"redis://127.0.0.1:{redis_server.port}/0"
        with tempfile.TemporaryDirectory() as tmp:
            for rep in range(reps):
                # Rotate the order so no mode always runs first (or right after another given one).
                order = modes[rep % len(modes):] + modes[: rep % len(modes)]
                for mode in order:
                    w, c = _drain(url, mode, tasks, Path(tmp))
                    wall[mode].append(w)
                    cpu[mode].append(c)
                print(f"  rep {rep + 1}/{reps}: "
                      + ", ".join(f"{m} {wall[m][-1]:.0f}/s ({cpu[m][-1]:.0f}/cpu-s)" for m in modes), flush=True)
    finally:
        redis_server.stop()

    def ratio(series: dict[str, list[float]], mode: str) -> float:
        return statistics.median(x / p for x, p in zip(series[mode], series[modes[0]], strict=True))

    return {
        m: {"wall": statistics.median(wall[m]), "wall_ratio": ratio(wall, m),
            "cpu": statistics.median(cpu[m]), "cpu_ratio": ratio(cpu, m)}
        for m in modes
    }


def depth_sample_cost(reps: int, calls: int) -> tuple[float, float]:
    """(c) CPU and wall time of one heartbeat's queue-depth sample (one consumed + three watched Redis
    queues, 100 messages waiting in each), in-process, on the heartbeat thread's own connection: medians of
    ``reps`` runs of ``calls`` samples. Returns (CPU ms, wall ms) per sample of the four queues."""
    import io

    from celery import Celery

    from celery_logs import _queues, _runtime

    server = LocalRedis()
    server.start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0"
        app = Celery("depth-bench", broker=url)
        app.conf.task_default_queue = "consumed"
        for queue in ("consumed", "watched-1", "watched-2", "watched-3"):
            with app.producer_or_acquire() as prod:
                for _ in range(100):
                    app.send_task("bench.noop", queue=queue, producer=prod)
        celery_logs.install(app, service="bench", stream=io.StringIO(), heartbeat_interval=30,
                            watch_queues=["watched-1", "watched-2", "watched-3"])
        runtime = _runtime.current()
        assert runtime is not None

        class _Consumer:
            pass

        consumer = _Consumer()
        consumer.app = app  # type: ignore[attr-defined]
        cpu: list[float] = []
        wall: list[float] = []
        _queues.sample(runtime, consumer, "bench@host")  # connect once, as the first heartbeat does
        for _ in range(reps):
            c0, w0 = time.process_time(), time.perf_counter()
            for _ in range(calls):
                _queues.sample(runtime, consumer, "bench@host")
            cpu.append((time.process_time() - c0) / calls)
            wall.append((time.perf_counter() - w0) / calls)
        celery_logs.reset()
        app.close()
    finally:
        server.stop()
    return statistics.median(cpu) * 1e3, statistics.median(wall) * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5000, help="in-process calls per measurement")
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per throughput run")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-in-process", action="store_true")
    parser.add_argument("--depth-sample", action="store_true", help="(c) the cost of one queue-depth sample")
    parser.add_argument("--modes", help="comma-separated throughput modes, the first is the baseline (default "
                        "plain,celery_logs,statsd,events; queue-depth cost: heartbeat_fast,queue_depth_fast)")
    args = parser.parse_args()
    modes = args.modes.split(",") if args.modes else None

    if not args.skip_in_process:
        print(f"(a) CPU added per task, in-process (median of {args.reps}, {args.calls} calls each), against the "
              "floor")
        print("    of the record contract (the same dispatch, one os.write of a pre-built line per record, no "
              "formatting):")
        print(f"    {'':28s} {'celery-logs':>11s} {'floor':>10s}")
        for name, (micros, floor) in in_process(args.reps, args.calls).items():
            unit = "" if name.startswith("(run:") else " us"
            print(f"    {name:28s} {micros:8.2f}{unit}" + ("" if floor is None else f" {floor:7.1f} us"))
    if args.depth_sample:
        cpu_ms, wall_ms = depth_sample_cost(args.reps, 200)
        print(f"(c) one queue-depth sample of 4 Redis queues: {cpu_ms:.3f} ms CPU, {wall_ms:.3f} ms wall "
              f"(median of {args.reps} x 200); at the default 30 s heartbeat that is {cpu_ms / 30 / 10:.4f} % of a CPU")
    if args.skip_throughput:
        return 0
    print(f"(b) solo worker draining {args.tasks} no-op tasks from Redis (median of {args.reps}):")
    rates = throughput(args.reps, args.tasks, modes)
    base = next(iter(rates))
    print(f"    mode          tasks/s  % of {base}    tasks/CPU-s  % of {base}   (medians of per-rep ratios)")
    for mode, r in rates.items():
        print(f"    {mode:12s} {r['wall']:8.0f}  {r['wall_ratio'] * 100:8.1f} %"
              f"  {r['cpu']:11.0f}  {r['cpu_ratio'] * 100:8.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
