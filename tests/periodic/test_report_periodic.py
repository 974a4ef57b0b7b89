"""The report's Periodic tasks section on a generated beat history with known answers, beat still away at the end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest
from elasticsearch import Elasticsearch

from pipelines.analytics import ReportSettings, Window, build_report
from pipelines.dev import synth as _synth

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)
#: Beat stops for good at 09:00; the report runs at 09:30 over 06:00-09:30.
WINDOW = Window(START, START + timedelta(hours=3, minutes=30))


@pytest.fixture(scope="module")
def loaded(es_url: str) -> Iterator[tuple[Elasticsearch, str, str, _synth.SynthBeat]]:
    es = Elasticsearch(es_url, request_timeout=120)
    prefix = f"t{uuid.uuid4().hex[:10]}-celery-logs"
    tasks_index = f"tasks-{prefix}"
    generated = _synth.generate_periodic(start=START)
    _synth.load(es, generated.history, prefix=prefix, tasks_index=tasks_index)
    yield es, prefix, tasks_index, generated
    es.options(ignore_status=404).indices.delete(index=f"{prefix}-*,{tasks_index}", expand_wildcards="all")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-template")
    es.close()


def test_periodic_section_counts_sent_missed_stuck_and_failed(
    loaded: tuple[Elasticsearch, str, str, _synth.SynthBeat],
) -> None:
    """Per entry, exact counts; beat away since 09:00 adds the due times up to 09:29 (interval entries only)."""
    es, prefix, tasks_index, generated = loaded
    report = build_report(es, ReportSettings(window=WINDOW, prefix=prefix, tasks_index=tasks_index, lost=False,
                                             stuck_after=timedelta(minutes=5), missed_grace=timedelta(minutes=1)),
                          now=WINDOW.end)
    got = {p.entry: p for p in report.periodic}
    # Due times 09:00 .. 09:29 nobody sent: every 10 min -> 3, every 5 min -> 6; the crontab entry's is unknown.
    trailing: dict[str, int | None] = {"nightly-report": 3, "node1-cleanup": 6, "hourly-sync": None}
    assert sorted(got) == sorted(trailing)
    for entry, extra in trailing.items():
        ds = [d for d in generated.dispatches if d.entry == entry]
        p = got[entry]
        assert (p.sent, p.started, p.succeeded, p.failed) == (
            len(ds), sum(d.started for d in ds), sum(d.outcome == "success" for d in ds),
            sum(d.outcome == "failure" for d in ds)), entry
        assert p.stuck == sum(not d.started for d in ds)
        assert p.missed == (None if extra is None else sum(d.missed for d in ds) + extra)
        assert p.expected == (None if p.missed is None else p.sent + p.missed)
        assert p.worst_lateness == max(d.lateness_ns for d in ds)
        oks = [d for d in ds if d.outcome == "success"]
        assert (p.last_success is None) == (not oks)
    assert got["node1-cleanup"].stuck == 12
    assert got["nightly-report"].missed == 2 + 3
    assert got["hourly-sync"].schedule == "crontab 0 * * * *"


def test_a_window_before_the_outage_misses_nothing(loaded: tuple[Elasticsearch, str, str, _synth.SynthBeat]) -> None:
    """06:00-07:30, reported at 07:30: everything due was sent, node1 still consumed: nothing missed or stuck."""
    es, prefix, tasks_index, _generated = loaded
    window = Window(START, START + timedelta(minutes=90))
    report = build_report(es, ReportSettings(window=window, prefix=prefix, tasks_index=tasks_index, lost=False),
                          now=window.end)
    assert {p.entry: (p.missed, p.stuck) for p in report.periodic} == {
        "nightly-report": (0, 0), "node1-cleanup": (0, 0), "hourly-sync": (0, 0)}
