"""Beat records: ``beat-sent`` for every periodic dispatch, and beat's own online / heartbeat / offline.

Where the hooks are, and why they fit every scheduler (celery's PersistentScheduler, django-celery-beat,
RedBeat, or a custom one) without patching any of them:

* ``beat_init`` (sender: the ``celery.beat.Service``) tells that this process runs beat: ``beat-online``,
  then a heartbeat thread; ``beat-offline`` is written at interpreter exit (``celery beat`` leaves through
  ``SystemExit`` on SIGTERM / SIGINT; Celery has no beat-shutdown signal).
* ``after_task_publish`` sees every message beat sent: ``celery.beat.Scheduler.apply_async`` (which every
  scheduler above inherits) stamps the ``celery_beat_task`` header. After, not before, the publish: a beat
  stopped in the middle of a publish must not leave a ``beat-sent`` for a message that never left. The
  schedule entry is the ``entry`` local of the outermost scheduler frame on the stack that sends this
  task (``tick`` for the default scheduler and django-celery-beat, ``maybe_due`` for RedBeat): the entry
  *before* it was advanced, whose ``last_run_at`` gives the due time. Reading frames changes nothing,
  and only happens for beat's messages.
"""

from __future__ import annotations

import atexit
import math
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from types import FrameType
from typing import Any, Final

from ._encode import iso_from_seconds, truncate
from ._runtime import Runtime, current

#: Header ``celery.beat.Scheduler.apply_async`` puts on every message beat sends.
BEAT_HEADER: Final = "celery_beat_task"
_LOGGER: Final = "celery_logs.beat"
#: Bound on the schedule walk that counts due times skipped while beat was away (non-interval schedules).
_MAX_MISSED_WALK: Final = 1000
#: Bound on how far up the stack the entry is looked for.
_MAX_FRAMES: Final = 64


# --- beat-sent --------------------------------------------------------------------------------------


def _find_entry(task_name: Any) -> Any:
    """The schedule entry being sent: ``entry`` of the outermost ``Scheduler`` frame sending ``task_name``."""
    from celery.beat import ScheduleEntry, Scheduler  # already imported in a beat process

    found = None
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_MAX_FRAMES):
        if frame is None:
            break
        local = frame.f_locals
        entry = local.get("entry")
        if (isinstance(entry, ScheduleEntry) and isinstance(local.get("self"), Scheduler)
                and entry.task == task_name):
            found = entry
        frame = frame.f_back
    return found


def schedule_text(schedule: Any) -> str:
    """The schedule as text: ``every 30s``, a crontab as its five fields, otherwise Celery's repr."""
    from celery.schedules import crontab
    from celery.schedules import schedule as interval

    if type(schedule) is interval:
        return f"every {schedule.run_every.total_seconds():g}s" + (" (relative)" if schedule.relative else "")
    if isinstance(schedule, crontab):
        fields = (schedule._orig_minute, schedule._orig_hour, schedule._orig_day_of_month,
                  schedule._orig_month_of_year, schedule._orig_day_of_week)
        return "crontab " + " ".join(str(f) for f in fields)
    return truncate(repr(schedule), 200)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def _interval_seconds(schedule: Any) -> float | None:
    """The period of a plain (non-relative) interval schedule, whose due times are evenly spaced."""
    from celery.schedules import schedule as interval

    if type(schedule) is interval and not schedule.relative:
        seconds = float(schedule.run_every.total_seconds())
        return seconds if seconds > 0 else None
    return None


def _next_after(schedule: Any, at: datetime) -> datetime:
    """The schedule's first due time after ``at`` (its estimate is relative to its own clock)."""
    following: datetime = _aware(schedule.now()) + schedule.remaining_estimate(at)
    return following


def _missed(schedule: Any, due: datetime, now: datetime) -> int | None:
    """Due times after ``due`` that passed by ``now`` with nothing sent (beat was away); ``None``: unknown."""
    period = _interval_seconds(schedule)
    if period is not None:
        return max(math.floor((now - due).total_seconds() / period), 0)
    count, at = 0, due
    for _ in range(_MAX_MISSED_WALK):
        following = _next_after(schedule, at)
        if following > now or following <= at:
            return count
        count, at = count + 1, following
    return None


def beat_fields(entry: Any) -> dict[str, Any]:
    """``celery.beat.*`` of a dispatch of ``entry`` now (by the schedule's clock), from its ``last_run_at``."""
    schedule = entry.schedule
    beat: dict[str, Any] = {"entry": str(entry.name), "schedule": schedule_text(schedule)}
    try:
        now = _aware(schedule.now())
        due = _next_after(schedule, _aware(entry.last_run_at))
    except Exception:  # a custom schedule without a usable estimate: the due time is not known
        return beat
    beat["due"] = iso_from_seconds(due.timestamp())
    beat["lateness"] = round((now - due) / timedelta(microseconds=1)) * 1000
    missed = _missed(schedule, due, now)
    if missed is not None:
        beat["missed"] = missed
    period = _interval_seconds(schedule)
    if period is not None:
        beat["interval"] = round(period * 1e9)
    beat["next_due"] = iso_from_seconds(_next_after(schedule, now).timestamp())
    return beat


def _queue_of(entry: Any, routing_key: Any) -> str | None:
    queue = entry.options.get("queue") if entry is not None and isinstance(entry.options, dict) else None
    name = getattr(queue, "name", queue)
    if isinstance(name, str) and name:
        return name
    return routing_key if isinstance(routing_key, str) and routing_key else None


def _after_task_publish(sender: Any = None, *, headers: dict[str, Any] | None = None, exchange: Any = None,
                         routing_key: Any = None, **_: Any) -> None:
    runtime = current()
    if runtime is None or not headers or not headers.get(BEAT_HEADER):
        return
    try:
        now_ns = time.time_ns()
        name = headers.get("task") or sender
        entry = _find_entry(name)
        beat = beat_fields(entry) if entry is not None else {}
        label = beat.get("entry", name)
        late = f" ({beat['lateness'] / 1e9:.3f} s late)" if "lateness" in beat else ""
        record = runtime.new_record(now_ns, dataset="celery.beat", level="info", logger=_LOGGER,
                                    message=f"beat sent: {label} ({name}){late}", action="beat-sent")
        task: dict[str, Any] = {"name": name}
        if isinstance(headers.get("id"), str):
            task["id"] = headers["id"]
        celery: dict[str, Any] = {"task": task}
        if beat:
            celery["beat"] = beat
        queue = _queue_of(entry, routing_key)
        if queue:
            celery["queue"] = queue
        if isinstance(exchange, str) and exchange:
            celery["exchange"] = exchange
        if isinstance(routing_key, str) and routing_key:
            celery["routing_key"] = routing_key
        record["celery"] = celery
        runtime.emit(record)
    except Exception as exc:
        runtime.fault(exc, "handling a beat dispatch")


# --- beat's own records -----------------------------------------------------------------------------


class _BeatState:
    """The beat service of this process, its heartbeat thread, and whether offline was written."""

    def __init__(self, runtime: Runtime, service: Any) -> None:
        self.runtime = runtime
        scheduler = service.__dict__.get("scheduler")  # built by Service.start before beat_init; never build it
        kind = type(scheduler) if scheduler is not None else getattr(service, "scheduler_cls", None)
        self.scheduler = f"{kind.__module__}.{kind.__qualname__}" if isinstance(kind, type) else str(kind)
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="celery-logs-beat-heartbeat", daemon=True)
        self.offline_written = False

    def record(self, action: str) -> None:
        now = time.time_ns()
        word = action.removeprefix("beat-")
        record = self.runtime.new_record(now, dataset="celery.beat", level="info", logger=_LOGGER,
                                         message=f"beat {word}: {self.scheduler}", action=action)
        record["celery"] = {"beat": {"scheduler": self.scheduler,
                                     "heartbeat_interval": self.runtime.settings.heartbeat_interval}}
        self.runtime.emit(record)

    def _loop(self) -> None:
        while not self.stop_event.wait(self.runtime.settings.heartbeat_interval):
            try:
                self.record("beat-heartbeat")
            except Exception as exc:
                self.runtime.fault(exc, "writing a beat heartbeat")

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(5)


_state: list[_BeatState] = []


def _beat_init(sender: Any = None, **_: Any) -> None:
    runtime = current()
    if runtime is None:
        return
    try:
        stop()
        state = _BeatState(runtime, sender)
        _state.append(state)
        state.record("beat-online")
        state.thread.start()
        atexit.register(_at_exit)
    except Exception as exc:
        runtime.fault(exc, "handling beat_init")


def _at_exit() -> None:
    """``beat-offline`` as the beat process ends (not on SIGKILL: then the heartbeats stop)."""
    if not _state:
        return
    state = _state[-1]
    try:
        state.stop()
        if not state.offline_written and current() is state.runtime:
            state.offline_written = True
            state.record("beat-offline")
    except Exception as exc:
        state.runtime.fault(exc, "writing beat-offline")


def stop() -> None:
    """Stop the beat heartbeat of this process, if any (``reset()`` and a new ``beat_init``)."""
    atexit.unregister(_at_exit)
    while _state:
        _state.pop().stop()


#: (signal name, receiver) connected by ``install()`` and disconnected by ``reset()``.
RECEIVERS: Final = (("after_task_publish", _after_task_publish), ("beat_init", _beat_init))
