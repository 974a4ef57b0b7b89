"""``worker-shutting-down``: the worker's own word that it is going away, and what it holds.

Celery sends ``worker_shutting_down`` from its signal handler in the main process when TERM, INT or QUIT
arrives. From then on this module writes a ``worker-shutting-down`` record every :data:`SHUTDOWN_BEAT`
seconds until the process ends, each naming the tasks running in the pool and those prefetched and not
started, and announcing that interval. Lost-task detection reads them: a warm shutdown that completes ends
with ``worker-offline``; one whose records stop without it was killed, and that silence is judged against
one second, not against the heartbeat.

The receiver runs inside a Python signal handler, possibly while the main thread is in the middle of
writing a line under the output's lock: it only takes a snapshot (the main thread is the one that changes
Celery's worker state, so it reads it consistently) and hands it to a thread started with the worker.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Final

from ._runtime import Runtime, current

#: Seconds between ``worker-shutting-down`` records while the worker shuts down.
SHUTDOWN_BEAT: Final = 1.0
#: Ids listed per kind in one record, at most (prefetch is bounded by Celery's own prefetch limit).
MAX_IDS: Final = 1000
_LOGGER: Final = "celery_logs.lifecycle"


class _Snapshot:
    __slots__ = ("active", "how", "node", "prefetched", "signal")

    def __init__(self, node: str, how: str, signal: str, active: list[str], prefetched: list[str]) -> None:
        self.node = node
        self.how = how
        self.signal = signal
        self.active = active
        self.prefetched = prefetched


def in_flight() -> tuple[list[str], list[str]]:
    """Ids of the requests running in the pool, and of those reserved or scheduled but not started."""
    from celery.worker import state

    for _ in range(5):
        try:
            # Sets of weak references the main thread changes; from another thread a copy may race.
            active = {r.id for r in list(state.active_requests)}
            waiting = {r.id for r in list(state.reserved_requests)}
            waiting.update(r.id for r in list(getattr(state, "scheduled_requests", ())))
        except RuntimeError:
            continue
        return sorted(active)[:MAX_IDS], sorted(waiting - active)[:MAX_IDS]
    return [], []


class _Watch:
    """The thread that writes the records, idle until the first shutdown signal."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._pending: collections.deque[_Snapshot] = collections.deque()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="celery-logs-shutdown", daemon=True)

    def start(self) -> _Watch:
        self._thread.start()
        return self

    def signalled(self, snapshot: _Snapshot) -> None:
        """From the signal handler: no lock is taken but the event's own."""
        self._pending.append(snapshot)
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5)

    def _loop(self) -> None:
        self._wake.wait()
        last: _Snapshot | None = None
        while not self._stopped:
            self._wake.clear()
            try:
                if self._pending:
                    while self._pending:  # each signal its own record (a second TERM may turn warm to cold)
                        last = self._pending.popleft()
                        _write(self._runtime, last)
                elif last is not None:
                    active, prefetched = in_flight()
                    last = _Snapshot(last.node, last.how, last.signal, active, prefetched)
                    _write(self._runtime, last)
            except Exception as exc:
                self._runtime.fault(exc, "writing worker-shutting-down")
            self._wake.wait(SHUTDOWN_BEAT)


def _write(runtime: Runtime, snap: _Snapshot) -> None:
    now = time.time_ns()
    message = (
        f"worker shutting down ({snap.how}, {snap.signal}): {snap.node}: "
        f"{len(snap.active)} running, {len(snap.prefetched)} prefetched"
    )
    record = runtime.new_record(now, dataset="celery.worker", level="info", message=message, logger=_LOGGER,
                                action="worker-shutting-down")
    celery: dict[str, Any] = {
        "worker_stats": {"active": len(snap.active), "heartbeat_interval": SHUTDOWN_BEAT},
        "shutdown": {"how": snap.how, "signal": snap.signal, "active_ids": snap.active,
                     "prefetched_ids": snap.prefetched},
    }
    if snap.node:
        celery["worker"] = snap.node
    record["celery"] = celery
    runtime.emit(record)


#: The watch thread of this process, when it is a worker's main process.
_watch: list[_Watch] = []


def _signal_text(sig: Any) -> str:
    if isinstance(sig, int):
        import signal

        try:
            return signal.Signals(sig).name
        except ValueError:
            return str(sig)
    return str(sig or "")


def _worker_ready(sender: Any = None, **_: Any) -> None:
    runtime = current()
    if runtime is None:
        return
    try:
        stop()
        _watch.append(_Watch(runtime).start())
    except Exception as exc:
        runtime.fault(exc, "handling worker_ready")


def _worker_shutting_down(sender: Any = None, *, sig: Any = None, how: Any = None, **_: Any) -> None:
    runtime = current()
    if runtime is None:
        return
    try:
        active, prefetched = in_flight()
        snapshot = _Snapshot(str(sender or ""), str(how or "").lower(), _signal_text(sig), active, prefetched)
        if not _watch:  # a signal before the worker was ready
            _watch.append(_Watch(runtime).start())
        _watch[-1].signalled(snapshot)
    except Exception as exc:
        runtime.fault(exc, "handling worker_shutting_down")


def _worker_shutdown(sender: Any = None, **_: Any) -> None:
    stop()


def stop() -> None:
    """Stop this process's watch thread, if any."""
    while _watch:
        _watch.pop().stop()


def forget() -> None:
    """A forked child is not the worker's main process: no watch thread."""
    _watch.clear()


#: (signal name, receiver) connected by ``install()`` and disconnected by ``reset()``.
RECEIVERS: Final = (
    ("worker_ready", _worker_ready),
    ("worker_shutting_down", _worker_shutting_down),
    ("worker_shutdown", _worker_shutdown),
)
