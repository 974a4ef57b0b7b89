"""Beat fields from real Celery schedules on a fixed clock, and beat-sent from real schedulers in-process."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery import Celery
from celery.beat import ScheduleEntry, Scheduler
from celery.schedules import crontab, schedule

import celery_logs
from celery_logs._beat import beat_fields, schedule_text
from pipelines.analytics.periodic import trailing_missed
from pipelines.analytics.timeparse import Window

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def _clock(at: datetime) -> Any:
    return lambda: at


def _entry(sched: Any, last_run_at: datetime) -> ScheduleEntry:
    return ScheduleEntry(name="nightly", task="jobs.clean", schedule=sched, last_run_at=last_run_at, app=Celery())


def test_interval_dispatch_after_an_outage_counts_the_due_times_in_between() -> None:
    """Every 10 s, last run 12:00:00, sent 12:00:35: due 12:00:10, 25 s late, 12:00:20 and :30 missed."""
    sched = schedule(timedelta(seconds=10), nowfun=_clock(T0 + timedelta(seconds=35)))
    assert beat_fields(_entry(sched, T0)) == {
        "entry": "nightly",
        "schedule": "every 10s",
        "due": "2026-11-30T12:00:10.000000Z",
        "lateness": 25_000_000_000,
        "missed": 2,
        "interval": 10_000_000_000,
        "next_due": "2026-11-30T12:00:45.000000Z",
    }


def test_on_time_interval_dispatch_misses_nothing() -> None:
    """Sent 3 ms after its due time: lateness 3 ms, nothing missed."""
    sched = schedule(timedelta(seconds=10), nowfun=_clock(T0 + timedelta(seconds=10, milliseconds=3)))
    fields = beat_fields(_entry(sched, T0))
    assert (fields["lateness"], fields["missed"]) == (3_000_000, 0)


def test_crontab_dispatch_walks_the_schedule_for_missed_runs() -> None:
    """*/5 minutes, last run 12:00, sent 12:17:30: due 12:05, 12:10 and 12:15 missed, next 12:20, no interval."""
    sched = crontab(minute="*/5", nowfun=_clock(T0 + timedelta(minutes=17, seconds=30)))
    assert beat_fields(_entry(sched, T0)) == {
        "entry": "nightly",
        "schedule": "crontab */5 * * * *",
        "due": "2026-11-30T12:05:00.000000Z",
        "lateness": 750_000_000_000,
        "missed": 2,
        "next_due": "2026-11-30T12:20:00.000000Z",
    }


def test_schedule_text_of_a_daily_crontab() -> None:
    """A crontab reads as its five fields in cron order."""
    assert schedule_text(crontab(minute=0, hour=4, day_of_week="mon-fri")) == "crontab 0 4 * * mon-fri"


@pytest.mark.parametrize(
    ("next_due_s", "cutoff_s", "interval_s", "expected"),
    [
        (100, 99, 10, 0),  # not due yet
        (100, 100, 10, 1),  # due exactly at the cutoff
        (100, 135, 10, 4),  # 100, 110, 120, 130
        (-25, 35, 10, 4),  # before the window: only 5, 15, 25, 35 count
        (100, 135, None, None),  # a crontab: how many is unknown
        (100, 50, None, 0),  # a crontab not due yet
    ],
)
def test_trailing_missed(next_due_s: int, cutoff_s: int, interval_s: int | None, expected: int | None) -> None:
    """Due times from the last dispatch's next_due up to the cutoff, inside the window."""
    window = Window(T0, T0 + timedelta(hours=1))
    interval = None if interval_s is None else interval_s * 1_000_000_000
    got = trailing_missed(T0 + timedelta(seconds=next_due_s), interval, window=window,
                          cutoff=T0 + timedelta(seconds=cutoff_s))
    assert got == expected


class _AdvancingScheduler(Scheduler):
    """Sends like RedBeat does: its own loop calls ``apply_async`` with ``advance=True``."""

    def tick(self, *args: Any, **kwargs: Any) -> float:
        for entry in list(self.schedule.values()):
            is_due, _ = entry.is_due()
            if is_due:
                self.apply_async(entry, producer=self.producer)
        return 1.0


@pytest.mark.integration
@pytest.mark.parametrize("scheduler_cls", [Scheduler, _AdvancingScheduler])
def test_beat_sent_names_the_entry_for_each_scheduler_kind(broker_url: str, scheduler_cls: type[Scheduler]) -> None:
    """A due entry sent by the stock scheduler and by an advancing one gives one beat-sent each, with its due time."""
    app = Celery("beatunit", broker=broker_url)
    out = io.StringIO()
    celery_logs.install(app, service="beatunit", stream=out)
    app.conf.beat_schedule = {
        "first": {"task": "jobs.same", "schedule": timedelta(seconds=30), "options": {"queue": "q1"}},
        "second": {"task": "jobs.same", "schedule": timedelta(hours=1), "args": (1,)},
    }
    scheduler = scheduler_cls(app=app, lazy=False)
    last_run = datetime.now(timezone.utc) - timedelta(seconds=45)
    scheduler.schedule["first"].last_run_at = last_run
    try:
        for _ in range(3):  # the stock scheduler sends one due entry per tick
            scheduler.tick()
    finally:
        scheduler.close()
        app.close()
    sent = [r for r in map(json.loads, out.getvalue().splitlines()) if r["event"].get("action") == "beat-sent"]
    assert len(sent) == 1
    beat = sent[0]["celery"]["beat"]
    assert beat["entry"] == "first"
    assert sent[0]["celery"]["queue"] == "q1"
    due = datetime.fromisoformat(beat["due"].replace("Z", "+00:00"))
    assert abs((due - (last_run + timedelta(seconds=30))).total_seconds()) < 0.001
    assert 15e9 <= beat["lateness"] < 25e9
    assert beat["missed"] == 0


def test_trend_line_scales_to_the_queue_and_leaves_gaps_blank() -> None:
    """Two hours in 5-minute buckets: 24 cells, blank where no sample, the largest depth a full bar."""
    from pipelines.analytics.backlog import trend_line

    window = Window(T0, T0 + timedelta(hours=2))
    series = ((T0, 0), (T0 + timedelta(minutes=30), 3), (T0 + timedelta(minutes=90), 12))
    assert trend_line(series, window=window, bucket=timedelta(minutes=5)) == "▁     ▂           █     "
