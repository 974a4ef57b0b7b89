"""The shipper: read -> parse -> batch -> bulk -> acknowledge -> checkpoint, with a few requests in flight.

The main thread reads, parses and batches; ``in_flight`` sender threads each carry one batch through
:class:`BulkSender` (retries included) and hand the outcome back on a queue. Only the main thread touches
the inputs, the checkpoint and the dead-letter file, so none of them needs a lock. Reading pauses while
the operations in flight exceed a bound, which is what keeps memory flat during an outage or against a
slow cluster.

At-least-once: a file's checkpoint moves only past lines whose every operation is done (acknowledged by
Elasticsearch, or dead-lettered and synced to disk). No duplicates: every document has a deterministic
index and ``_id``, so what is shipped twice after a crash is a ``409`` and counts as done.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from celery_logs._schema import DEFAULT_INDEX_PREFIX, DEFAULT_TASKS_INDEX
from pipelines.ship.batch import BOTH, Batch, Batcher, Op
from pipelines.ship.bulk import Backoff, BatchResult, BulkSender, BulkSink, ElasticsearchSink
from pipelines.ship.checkpoint import CheckpointStore
from pipelines.ship.deadletter import DeadLetterFile
from pipelines.ship.parse import Parser, Rejected
from pipelines.ship.reader import STDIN, Line, Source, Tailer

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger("celery_logs.shipper")


class ShipperError(Exception):
    """The shipper cannot run or cannot go on (state directory in use, credentials refused)."""


DEFAULT_BATCH_DOCS = 5000


@dataclass(frozen=True, kw_only=True)
class ShipperConfig:
    """Everything a shipper run needs besides the connection. ``paths`` are globs or ``-`` for stdin."""

    paths: Sequence[str]
    state_dir: Path
    index_prefix: str = DEFAULT_INDEX_PREFIX
    #: The entity index kept by partial upserts; ``None`` turns it off.
    tasks_index: str | None = DEFAULT_TASKS_INDEX
    #: Keep reading as files grow and rotate; ``False`` stops at the end of the input (``--once``).
    follow: bool = True
    #: Bulk items per request. 5000 (2.7 MB of records) kept a node as busy as the best pre-built-body
    #: client did; 2000 reached 0.81-0.88 of it (benchmarks/ship_throughput.py).
    batch_max_docs: int = DEFAULT_BATCH_DOCS
    batch_max_bytes: int = 8 << 20
    batch_max_wait: float = 1.0
    in_flight: int = 2
    max_line_bytes: int = 1 << 20
    scan_interval: float = 1.0
    checkpoint_interval: float = 1.0
    #: How long a stopping shipper waits for requests in flight before abandoning them.
    shutdown_timeout: float = 10.0
    backoff_base: float = 0.1
    backoff_max: float = 5.0
    #: How long a rotated-away file must stay unchanged at its end before it is closed.
    rotated_close_after: float = 5.0

    @property
    def checkpoint_path(self) -> Path:
        return self.state_dir / "checkpoint.json"

    @property
    def dead_letter_path(self) -> Path:
        return self.state_dir / "dead-letter.jsonl"


@dataclass
class ShipStats:
    """Counters of one run (``--stats`` prints them as one JSON line)."""

    lines: int = 0
    shipped: int = 0
    duplicates: int = 0
    tasks_updated: int = 0
    retried: int = 0
    request_retries: int = 0
    dead_lettered: int = 0
    bytes_read: int = 0
    lag_bytes: int = 0
    elapsed: float = 0.0
    stopped_by_signal: bool = False
    per_second: float = 0.0
    files: int = 0
    _started: float = field(default_factory=time.monotonic, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


_IDLE_WAIT = 0.05


class Shipper:
    """Ships JSON-lines files to Elasticsearch; :meth:`run` follows, :meth:`run_once` stops at the end.

    Give either ``client`` (an :class:`elasticsearch.Elasticsearch`) or ``sink`` (any :class:`BulkSink`).
    :meth:`request_stop` may be called from a signal handler or another thread.
    """

    def __init__(
        self,
        config: ShipperConfig,
        *,
        client: Elasticsearch | None = None,
        sink: BulkSink | None = None,
        on_progress: Callable[[ShipStats], None] | None = None,
        progress_interval: float = 1.0,
    ) -> None:
        if (client is None) == (sink is None):
            raise ValueError("give exactly one of client= or sink=")
        self.config = config
        self.sink: BulkSink = sink if sink is not None else ElasticsearchSink(client)  # type: ignore[arg-type]
        self.on_progress = on_progress
        self.progress_interval = progress_interval
        self.stats = ShipStats()
        #: Stop reading (a signal, the end of --once, a fatal error).
        self._stop = threading.Event()
        #: Stop sending: set when the shutdown bound has passed; senders give up retries and queued batches.
        self._abandon = threading.Event()
        self._signalled = False
        self._results: queue.SimpleQueue[BatchResult] = queue.SimpleQueue()
        self._work: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._outstanding_batches = 0
        self._pending_ops = 0
        self._pending_bytes = 0
        self._fatal: str | None = None
        self._started = False

    # --- public -----------------------------------------------------------------------------------------

    def request_stop(self, *, signalled: bool = True) -> None:
        """Stop reading, finish (or, after ``shutdown_timeout``, abandon) requests in flight, save, return."""
        self._signalled = signalled
        self._stop.set()

    def run_once(self) -> ShipStats:
        """Ship what the inputs hold now and return (the configuration's ``follow`` is ignored)."""
        with _young_collections_every(_GC_YOUNG_THRESHOLD):
            return self._run(follow=False)

    def run(self) -> ShipStats:
        """Ship, following the inputs when the configuration says so, until the input ends or a stop."""
        with _young_collections_every(_GC_YOUNG_THRESHOLD):
            return self._run(follow=self.config.follow)

    # --- the loop -----------------------------------------------------------------------------------------

    def _run(self, *, follow: bool) -> ShipStats:
        if self._started:
            raise RuntimeError("a Shipper runs once; make a new one to ship again")
        self._started = True
        cfg = self.config
        files_only = [p for p in cfg.paths if p != STDIN]
        lock = self._lock_state_dir() if files_only else None
        store = CheckpointStore(cfg.checkpoint_path).load() if files_only else None
        self._dead = DeadLetterFile(cfg.dead_letter_path)
        tailer = Tailer(
            cfg.paths,
            store=store,
            follow=follow,
            max_line_bytes=cfg.max_line_bytes,
            rotated_close_after=cfg.rotated_close_after,
        )
        parser = Parser(index_prefix=cfg.index_prefix, tasks_index=cfg.tasks_index)
        batcher = Batcher(max_docs=cfg.batch_max_docs, max_bytes=cfg.batch_max_bytes, max_wait=cfg.batch_max_wait)
        sender = BulkSender(self.sink, backoff=Backoff(base=cfg.backoff_base, cap=cfg.backoff_max), stop=self._abandon)
        threads = [
            threading.Thread(target=self._sender_loop, args=(sender,), name=f"ship-sender-{i}", daemon=True)
            for i in range(cfg.in_flight)
        ]
        for t in threads:
            t.start()
        max_pending_ops = cfg.batch_max_docs * (cfg.in_flight + 1)
        max_pending_bytes = cfg.batch_max_bytes * (cfg.in_flight + 1)
        stats = self.stats
        stats._started = time.monotonic()
        try:
            tailer.start()
            log.info(
                "shipping",
                extra={"inputs": list(cfg.paths), "files": len(tailer.sources), "follow": follow,
                       "index_prefix": cfg.index_prefix, "tasks_index": cfg.tasks_index},
            )
            next_scan = next_save = next_progress = time.monotonic()
            while not self._stop.is_set():
                self._drain(block=False)
                if self._fatal is not None:
                    break
                progressed = False
                if self._pending_ops < max_pending_ops and self._pending_bytes < max_pending_bytes:
                    lines = tailer.read(max_lines=cfg.batch_max_docs, max_bytes=cfg.batch_max_bytes)
                    progressed = tailer.last_read_bytes > 0
                    if lines:
                        self._route(lines, parser, batcher)
                batch = batcher.due()
                if batch is not None:
                    self._dispatch(batch)
                now = time.monotonic()
                if follow and now >= next_scan:
                    tailer.scan()
                    next_scan = now + cfg.scan_interval
                if store is not None and now >= next_save:
                    self._save(tailer, store)
                    next_save = now + cfg.checkpoint_interval
                if self.on_progress is not None and now >= next_progress:
                    self._progress(tailer)
                    next_progress = now + self.progress_interval
                if (not follow or tailer.finished) and not progressed and tailer.exhausted:
                    batch = batcher.flush()
                    if batch is not None:
                        self._dispatch(batch)
                    if self._outstanding_batches == 0:
                        break
                if not progressed:
                    self._drain(block=True)
            self._finish(tailer, store, batcher)
        finally:
            self._abandon.set()
            for _ in threads:
                self._work.put(None)
            tailer.close()
            self._dead.close()
            if lock is not None:
                lock.close()
        stats.files = len(tailer.sources)
        if self._fatal is not None:
            raise ShipperError(self._fatal)
        return stats

    def _route(self, lines: list[Line], parser: Parser, batcher: Batcher) -> None:
        stats = self.stats
        parse = parser.parse
        add = batcher.add
        dispatch = self._dispatch
        nops = nbytes = nlines = nread = 0
        for line in lines:
            src = line.source
            src.pending.append(line)
            nread += line.end - line.start
            if line.oversize:
                self._dead_letter(line, None, f"line of {line.oversize} bytes exceeds the bound of "
                                  f"{self.config.max_line_bytes} bytes")
                continue
            try:
                ops = parse(line.data)
            except Rejected as exc:
                self._dead_letter(line, None, exc.reason)
                continue
            if ops is None:  # a blank line: nothing to ship, nothing wrong
                src.ack(line)
                continue
            nlines += 1
            payload, split = ops
            if split:
                full = add(Op(line, payload, BOTH, split))
                nops += 2
            else:
                full = add(Op(line, payload))
                nops += 1
            nbytes += len(payload)
            if full is not None:
                dispatch(full)
        stats.bytes_read += nread
        stats.lines += nlines
        self._pending_ops += nops
        self._pending_bytes += nbytes

    def _dispatch(self, batch: Batch) -> None:
        self._outstanding_batches += 1
        self._work.put(batch)

    def _sender_loop(self, sender: BulkSender) -> None:
        while True:
            batch = self._work.get()
            if batch is None:
                return
            if self._abandon.is_set():
                # Not started before the shutdown bound: abandon it; its lines ship again after the restart.
                self._results.put(BatchResult(abandoned=batch.ops))
                continue
            try:
                result = sender.send(batch.ops)
            except Exception as exc:  # a bug must not hang the shipper with a batch never answered
                log.exception("sender failed")
                result = BatchResult(abandoned=batch.ops, fatal=f"internal error in the sender: {exc}")
            self._results.put(result)

    def _drain(self, *, block: bool, timeout: float = _IDLE_WAIT) -> None:
        try:
            result = self._results.get(timeout=timeout) if block else self._results.get_nowait()
        except queue.Empty:
            return
        while True:
            self._apply(result)
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                return

    def _apply(self, result: BatchResult) -> None:
        self._outstanding_batches -= 1
        stats = self.stats
        stats.shipped += result.created
        stats.duplicates += result.conflicts
        stats.tasks_updated += result.updated
        stats.retried += result.item_retries
        stats.request_retries += result.request_retries
        n = 0
        nbytes = 0
        touched: set[Source] = set()
        for op in result.done:
            # Source.ack inlined, each source advanced once at the end: this loop runs once per line shipped.
            line = op.line
            src = line.source
            if line.generation == src.generation:
                line.remaining -= 1
                touched.add(src)
            n += op.items
            nbytes += len(op.payload)
        for src in touched:
            src.advance()
        for op, status, reason in result.dead:
            self._dead_letter(op.line, status, reason, kind=op.kind)
            n += op.items
            nbytes += len(op.payload)
        for op in result.abandoned:
            n += op.items
            nbytes += len(op.payload)
        self._pending_ops -= n
        self._pending_bytes -= nbytes
        if result.fatal is not None and self._fatal is None:
            self._fatal = result.fatal
            self._abandon.set()
            self._stop.set()

    def _dead_letter(self, line: Line, status: int | None, reason: str, *, kind: str = "create") -> None:
        label = reason if kind == "create" else f"{kind} of the task document: {reason}"
        self._dead.write(line, status=status, reason=label)
        self.stats.dead_lettered += 1
        line.source.ack(line)

    def _finish(self, tailer: Tailer, store: CheckpointStore | None, batcher: Batcher) -> None:
        """After the loop: wait for what is in flight (bounded when stopping), then save."""
        self.stats.stopped_by_signal = self._signalled and self._stop.is_set()
        if self._stop.is_set():
            # What was read is sent too, so the restart has as little as possible to send again.
            batch = batcher.flush()
            if batch is not None and not self._abandon.is_set():
                self._dispatch(batch)
            deadline = time.monotonic() + self.config.shutdown_timeout
            while self._outstanding_batches and time.monotonic() < deadline:
                self._drain(block=True, timeout=min(0.2, max(0.0, deadline - time.monotonic())))
            if self._outstanding_batches:
                self._abandon.set()
                # Senders waiting to retry give up at once; their answers are worth collecting.
                self._drain(block=True, timeout=0.5)
            if self._outstanding_batches:
                log.warning(
                    "abandoned requests still in flight at shutdown; their lines ship again after a restart",
                    extra={"batches": self._outstanding_batches},
                )
        if store is not None:
            self._save(tailer, store, force=True)
        self._progress(tailer, final=True)

    def _save(self, tailer: Tailer, store: CheckpointStore, *, force: bool = False) -> None:
        if tailer.update_store() or force:
            # A dead-letter record must be on disk before the checkpoint passes its line.
            self._dead.sync()
            store.save()

    def _progress(self, tailer: Tailer, *, final: bool = False) -> None:
        stats = self.stats
        stats.elapsed = time.monotonic() - stats._started
        stats.per_second = stats.shipped / stats.elapsed if stats.elapsed > 0 else 0.0
        stats.lag_bytes = tailer.lag_bytes()
        if self.on_progress is not None and not final:
            self.on_progress(stats)

    def _lock_state_dir(self) -> IO[bytes]:
        state = self.config.state_dir
        state.mkdir(parents=True, exist_ok=True)
        fh = (state / "lock").open("ab")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise ShipperError(
                f"the state directory {state} is used by another running shipper; give each its own --state-dir"
            ) from None
        os.set_inheritable(fh.fileno(), False)
        return fh


#: Container allocations between two collections of the young generation while shipping (Python's default
#: is 700). Lines and ops in flight are thousands of objects that live just long enough to be examined
#: over and over; parsed records are freed by reference counting and need no collector at all. At the
#: default, collecting cost the shipper about 1 us per record (8 %).
_GC_YOUNG_THRESHOLD = 100_000


_gc_lock = threading.Lock()
_gc_users: list[tuple[int, int, int]] = []  # the thresholds found by the first of the shippers running now


@contextlib.contextmanager
def _young_collections_every(allocations: int) -> Iterator[None]:
    """Collect the young generation less often while any shipper of this process runs; then restore the
    thresholds found before the first one started."""
    with _gc_lock:
        before = gc.get_threshold()
        _gc_users.append(before)
        gc.set_threshold(max(allocations, before[0]), *before[1:])
    try:
        yield
    finally:
        with _gc_lock:
            first = _gc_users[0]
            _gc_users.pop()
            if not _gc_users:
                gc.set_threshold(*first)
