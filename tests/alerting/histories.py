"""Histories for the alert rules: a healthy one, and the same one with breaches whose alerts are known.

Three hours of records (task starts and ends, worker heartbeats, beat sends) plus entity documents in the
tasks index, built from plain numbers so each breach is known exactly: which rule must fire, for which
key, with which count. The healthy history has the same tasks, workers and entries; no rule may fire on
it. Windows are the rules' 15-minute windows counted from ``start``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

WINDOW = timedelta(minutes=15)
SPAN = timedelta(hours=3)
#: Task name -> (queue, runs per window, typical run seconds).
TASKS: dict[str, tuple[str, int, float]] = {
    "billing.charge": ("billing", 24, 0.2),
    "mail.send": ("mail", 20, 0.05),
    "reports.build": ("reports", 12, 1.5),
    "search.reindex": ("default", 20, 0.4),
}
WORKERS = ("celery@w1", "celery@w2", "celery@w3")
#: Beat entry -> minutes between sends.
BEAT_ENTRIES = {"cleanup-every-10-min": 10, "digest-every-30-min": 30}
#: Exception groups seen before the range (a day earlier): not new.
KNOWN_GROUPS = ("g-known-timeout", "g-known-keyerror")
HEARTBEAT = timedelta(seconds=30)


@dataclass(frozen=True)
class Expected:
    """One alert a breach must cause: the rule, the key it names, and its count or value (None: none)."""

    rule: str
    key: str
    count: int | None


@dataclass
class History:
    start: datetime
    end: datetime
    records: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    expected: list[Expected] = field(default_factory=list)


def _ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _id(n: int) -> str:
    return str(uuid.UUID(int=n))


class _Builder:
    def __init__(self, start: datetime) -> None:
        self.h = History(start=start, end=start + SPAN)
        self.n = 0

    def _next(self) -> int:
        self.n += 1
        return self.n

    def record(self, t: datetime, action: str, dataset: str, **sections: Any) -> None:
        rec: dict[str, Any] = {
            "@timestamp": _ts(t),
            "message": action,
            "event": {"id": _id(self._next()), "kind": "event", "dataset": dataset, "action": action},
            "service": {"name": "shop", "environment": "test"},
        }
        for key, value in sections.items():
            rec[key] = {**rec.get(key, {}), **value}
        self.h.records.append(rec)

    def run(
        self,
        t: datetime,
        name: str,
        *,
        worker: str,
        wait_s: float = 0.1,
        run_s: float | None = None,
        group: str | None = None,
    ) -> None:
        queue, _, typical = TASKS.get(name, ("default", 0, 0.1))
        run_s = typical if run_s is None else run_s
        task = {"id": _id(self._next()), "name": name, "root_id": "r"}
        where = {"queue": queue, "worker": worker}
        self.record(t, "task-started", "celery.task", celery={"task": task, **where, "queue_wait": int(wait_s * 1e9)})
        end = t + timedelta(seconds=run_s)
        outcome = {"outcome": "failure" if group else "success", "duration": int(run_s * 1e9)}
        action = "task-failed" if group else "task-succeeded"
        extra: dict[str, Any] = {}
        if group:
            extra["error"] = {"type": f"shop.errors.{group}", "message": "boom", "grouping_key": group}
        self.record(end, action, "celery.task", event=outcome, celery={"task": task, **where}, **extra)


def build(*, start: datetime, breaches: bool) -> History:
    """The history over ``[start, start + 3 h)``; with ``breaches`` the known breaches are in it."""
    b = _Builder(start)
    h = b.h
    windows = int(SPAN / WINDOW)

    # A day earlier, the known exception groups fail once each (what a new-term rule learns first).
    for i, group in enumerate(KNOWN_GROUPS):
        b.run(start - timedelta(days=1) + timedelta(minutes=i), "billing.charge", worker=WORKERS[0], group=group)

    for w in range(windows):
        w_start = start + w * WINDOW
        for t_index, (name, (_queue, runs, _typical)) in enumerate(TASKS.items()):
            for i in range(runs):
                # Runs evenly over the window, never on its edges.
                t = w_start + (WINDOW * (i + 0.5)) / runs + timedelta(seconds=t_index)
                worker = WORKERS[i % len(WORKERS)]
                if breaches and worker == WORKERS[2] and t >= start + timedelta(minutes=80):
                    worker = WORKERS[0]  # the silent worker runs nothing any more
                group = None
                # Healthy: one known failure every few windows (far below 10 %).
                if i == 0 and (w + t_index) % 3 == 0:
                    group = KNOWN_GROUPS[(w + t_index) % 2]
                wait_s, run_s = 0.1, None
                if breaches:
                    # Failure rate: billing.charge fails 12 of 24 runs in window 3, mail.send 8 of 20 in window 7.
                    if name == "billing.charge" and w == 3 and i % 2 == 1:
                        group = KNOWN_GROUPS[0]
                    if name == "mail.send" and w == 7 and i % 5 in (1, 3):
                        group = KNOWN_GROUPS[1]
                    # New exception groups: g-new-one in windows 7 and 8 (once each, 1 of 20 runs: 5 %, in
                    # windows without a known failure of the task), g-new-two once in window 10.
                    if name == "search.reindex" and ((w in (7, 8) and i == 5) or (w == 10 and i == 9)):
                        group = "g-new-one" if w in (7, 8) else "g-new-two"
                    # Queue wait: half of mail.send's starts in window 9 wait 30 s (bound 5 s).
                    if name == "mail.send" and w == 9 and i % 2 == 0:
                        wait_s = 30.0
                    # Run time: reports.build runs 20 s in window 10 (bound 10 s).
                    if name == "reports.build" and w == 10:
                        run_s = 20.0
                b.run(t, name, worker=worker, wait_s=wait_s, run_s=run_s, group=group)
        # A rarely run task failing every time: below min-runs, so never a failure-rate alert.
        if w == 5:
            for i in range(3):
                b.run(w_start + timedelta(minutes=2 + i), "ops.rare", worker=WORKERS[0], group=KNOWN_GROUPS[0])

    if breaches:
        h.expected += [
            Expected("celery-logs-failure-rate", "billing.charge", 24),
            Expected("celery-logs-failure-rate", "mail.send", 20),
            Expected("celery-logs-new-exception-group", "g-new-one", None),
            Expected("celery-logs-new-exception-group", "g-new-two", None),
            # The p95 (ns): the top 5 % of the window's values are all the breaching value.
            Expected("celery-logs-queue-wait-p95", "mail.send", 30_000_000_000),
            Expected("celery-logs-run-time-p95", "reports.build", 20_000_000_000),
        ]

    # Heartbeats from before the range to its end; with breaches, w3 falls silent at +80 min.
    for worker in WORKERS:
        t = start - timedelta(minutes=6)
        stop = start + timedelta(minutes=80) if breaches and worker == WORKERS[2] else h.end
        while t < stop:
            b.record(t, "worker-heartbeat", "celery.worker", celery={"worker": worker, "worker_stats": {"active": 1}})
            t += HEARTBEAT
    if breaches:
        h.expected.append(Expected("celery-logs-worker-silent", WORKERS[2], 0))

    # Beat: each entry sent on its schedule; with breaches, the 10-minute entry stops after +90 min.
    for entry, every in BEAT_ENTRIES.items():
        t = start - timedelta(minutes=every) + timedelta(seconds=5)
        stop = start + timedelta(minutes=90) if breaches and entry == "cleanup-every-10-min" else h.end
        while t < stop:
            b.record(t, "beat-sent", "celery.beat", celery={"beat": {"entry": entry}, "task": {"name": "ops.cleanup"}})
            t += timedelta(minutes=every)
    if breaches:
        h.expected.append(Expected("celery-logs-periodic-task-missed", "cleanup-every-10-min", 0))

    # The tasks index: tasks in the other lost classes (never an alert), and with breaches, lost ones.
    def task_doc(name: str, detected: datetime, **marks: Any) -> dict[str, Any]:
        doc = {"task_id": _id(b._next()), "name": name, "worker": WORKERS[2], "lost_detected_at": _ts(detected)}
        return {**doc, **marks}

    at = start + timedelta(minutes=71)
    h.tasks += [
        task_doc("billing.charge", at, lost=True, lost_class="redelivery-pending", lost_reason="heartbeat-timeout"),
        task_doc("mail.send", at, lost=True, lost_class="requeued", lost_reason="worker-offline"),
        task_doc("billing.charge", at, lost=False),
    ]
    if breaches:
        h.tasks += [
            task_doc("billing.charge", at + timedelta(seconds=s), lost=True, lost_class="lost", lost_reason="timeout")
            for s in range(3)
        ]
        h.tasks.append(task_doc("mail.send", at, lost=True, lost_class="lost", lost_reason="heartbeat-timeout"))
        # Marked before lost_class existed: lost true alone means the same class.
        old_style = task_doc("reports.build", start + timedelta(minutes=131), lost=True, lost_reason="worker-offline")
        h.tasks.append(old_style)
        h.expected += [
            Expected("celery-logs-lost-tasks", "billing.charge", 3),
            Expected("celery-logs-lost-tasks", "mail.send", 1),
            Expected("celery-logs-lost-tasks", "reports.build", 1),
        ]
    h.records.sort(key=lambda r: r["@timestamp"])
    return h


def aligned_start(now: datetime | None = None) -> datetime:
    """Four hours before now, on a window boundary (so windows are the rules' windows)."""
    now = now or datetime.now(timezone.utc)
    floored = now.replace(minute=now.minute - now.minute % 15, second=0, microsecond=0)
    return floored - timedelta(hours=4)
