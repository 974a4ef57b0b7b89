"""Search finds records by words inside tracebacks, newest first; the task timeline shows one history."""

from __future__ import annotations

import importlib
from datetime import datetime, timedelta, timezone

import pytest
from elasticsearch import Elasticsearch

from celery_logs import _schema
from pipelines.analytics.search import (
    PLAIN,
    QueryError,
    Style,
    TooManyTies,
    follow,
    render_hit,
    search,
    search_newer,
    to_lucene,
)
from pipelines.analytics.timeline import TaskNotFound, render_timeline, task_timeline
from pipelines.analytics.timeparse import Window
from pipelines.dev import synth as _synth
from pipelines.dev.synth import SynthTask

from .conftest import START, WINDOW, Loaded

pytestmark = pytest.mark.integration


def _failed(loaded: Loaded, kind: int) -> list[SynthTask]:
    return [t for t in loaded.tasks if t.error_kind == kind and t.ended_at and WINDOW.start <= t.ended_at < WINDOW.end]


def test_words_inside_tracebacks(loaded: Loaded) -> None:
    """A frame's function name, found only in the traceback, finds exactly that exception's failures."""
    want = _failed(loaded, 0)  # KeyError raised in billing.api.lookup_customer
    hits = search(loaded.es, query="lookup_customer", window=WINDOW, prefix=loaded.prefix, size=500)
    assert sorted(h.get("celery.task.id") for h in hits) == sorted(t.task_id for t in want)
    stamps = [h.timestamp for h in hits]
    assert stamps == sorted(stamps, reverse=True)


def test_kql_operators_fields_and_phrases(loaded: Loaded) -> None:
    """Lowercase and/or, field:value and quoted phrases behave as in Kibana."""
    timeouts = _failed(loaded, 1)
    phrase = search(loaded.es, query='"Read timed out"', window=WINDOW, prefix=loaded.prefix, size=500)
    assert {h.get("celery.task.id") for h in phrase} == {t.task_id for t in timeouts}
    charge_keyerrors = [t for t in _failed(loaded, 0) if t.name == "billing.charge"]
    both = search(
        loaded.es,
        query="error.type:builtins.KeyError and celery.task.name:billing.charge",
        window=WINDOW,
        prefix=loaded.prefix,
        size=500,
    )
    assert sorted(h.get("celery.task.id") for h in both) == sorted(t.task_id for t in charge_keyerrors)
    assert to_lucene('a and "b and c" or not d') == 'a AND "b and c" OR NOT d'


def test_bad_query_is_a_clear_error(loaded: Loaded) -> None:
    """An unparseable query raises QueryError quoting it."""
    with pytest.raises(QueryError, match=r"refused the query 'foo:\('"):
        search(loaded.es, query="foo:(", window=WINDOW, prefix=loaded.prefix)


def test_follow_cursor_returns_only_newer_records(loaded: Loaded) -> None:
    """search_newer continues after a hit, oldest first, without repeating it."""
    first = search_newer(loaded.es, query="lookup_customer", window=WINDOW, after=None, prefix=loaded.prefix, size=3)
    rest = search_newer(
        loaded.es, query="lookup_customer", window=WINDOW, after=first[-1].sort, prefix=loaded.prefix, size=500
    )
    ids = [h.id for h in first + rest]
    assert len(ids) == len(set(ids)) == len(_failed(loaded, 0))
    stamps = [h.timestamp for h in first + rest]
    assert stamps == sorted(stamps)


def test_traceback_rendering(loaded: Loaded) -> None:
    """A failure prints a header line then its traceback indented; colours only when asked."""
    hit = search(loaded.es, query="lookup_customer", window=WINDOW, prefix=loaded.prefix, size=1)[0]
    plain = render_hit(hit, style=PLAIN).splitlines()
    assert "ERROR" in plain[0] and "billing." in plain[0]
    assert plain[1] == "    Traceback (most recent call last):"
    assert plain[-1] == "    KeyError: 'customer_id'"
    assert "\x1b[" not in "\n".join(plain)
    assert "\x1b[31;1mKeyError: 'customer_id'\x1b[0m" in render_hit(hit, style=Style(colour=True))


def test_task_timeline(loaded: Loaded) -> None:
    """`task ID` lists every record of a retried task in order, with its workflow."""
    task = next(t for t in loaded.current.tasks if t.retries == 2)
    tl = task_timeline(loaded.es, task_id=task.task_id, prefix=loaded.prefix)
    want = [r for r in loaded.current.records if r.get("celery", {}).get("task", {}).get("id") == task.task_id]
    assert [h.source["event"]["id"] for h in tl.records] == [r["event"]["id"] for r in want]
    actions = [h.get("event.action") for h in tl.records if h.get("event.action")]
    assert actions.count("task-started") == 3
    assert actions.count("task-retried") == 2
    assert tl.root_id == task.task_id
    assert [w.task_id for w in tl.workflow] == [task.task_id]
    text = render_timeline(tl)
    assert text.splitlines()[0] == f"task {task.task_id}  (workflow root {task.task_id})"
    assert "task-retried" in text
    with pytest.raises(TaskNotFound, match="no record of task 'nope'"):
        task_timeline(loaded.es, task_id="nope", prefix=loaded.prefix)


def test_follow_yields_records_indexed_later(es: Elasticsearch, index_prefix: str) -> None:
    """--follow's generator returns nothing new, then exactly the record indexed after the first poll."""
    hist = _synth.generate(tasks=10, seed=4, start=START, lost_tasks=0, app_lines=False)
    _synth.load(es, hist, prefix=index_prefix, tasks_index=None)
    window = Window(START, START + timedelta(hours=7))
    newest = search(es, query="", window=window, prefix=index_prefix, size=1)[0]
    batches = follow(es, query="", window=window, after=newest.sort, prefix=index_prefix, until=window.end)
    assert next(batches) == []
    late = dict(hist.records[-1], **{"@timestamp": "2026-11-22T12:30:00.000000Z"})
    late["event"] = dict(late["event"], id="late-record")
    es.index(index=f"{index_prefix}-2026.11.22", id="late-record", document=late, refresh=True)
    assert [h.id for h in next(batches)] == ["late-record"]
    assert next(batches) == []


def test_ties_within_a_millisecond_follow_event_id(es: Elasticsearch, index_prefix: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Records sharing a millisecond come in event.id order (read from _source), pages cut inside it included."""
    index = f"{index_prefix}-2026.11.23"
    es.indices.create(index=index, settings={"number_of_shards": 2, "number_of_replicas": 0},
                      mappings=_schema.record_mappings())
    # (microseconds past 10:00:00.000, event.id): µs order and indexing order both differ from event.id order.
    rows = [(5_100, "e-1"), (5_900, "e-7"), (5_500, "e-3"), (5_050, "e-9"), (5_700, "e-2"), (5_200, "e-8"),
            (5_300, "e-5"), (4_100, "d-2"), (4_900, "d-1"), (6_000, "f-2"), (6_400, "f-1")]
    for us, eid in rows:
        doc = {"@timestamp": f"2026-11-23T10:00:00.{us:06d}Z", "message": f"line {eid}",
               "event": {"id": eid, "dataset": "celery.app"}}
        es.index(index=index, id=eid, document=doc)
    es.indices.refresh(index=index)
    want = sorted(rows, key=lambda r: (r[0] // 1000, r[1]))
    ascending = [eid for _us, eid in want]
    window = Window(datetime(2026, 11, 23, 10, tzinfo=timezone.utc), datetime(2026, 11, 23, 11, tzinfo=timezone.utc))
    for size in (1, 3, 4, 11):
        newest = search(es, query="", window=window, prefix=index_prefix, size=size)
        assert [h.id for h in newest] == ascending[::-1][:size]
        seen: list[str] = []
        after = None
        while page := search_newer(es, query="", window=window, after=after, prefix=index_prefix, size=size):
            assert len(page) <= size
            seen += [h.id for h in page]
            after = page[-1].sort
        assert seen == ascending
    older = search_newer(es, query="", window=window, after=(1_795_428_000_005, "e-3"), prefix=index_prefix, size=3)
    assert [h.id for h in older] == ["e-5", "e-7", "e-8"]
    # A millisecond with more records than one request returns is refused, not cut at random.
    # (the package's `search` is the function; the module is reached by name)
    monkeypatch.setattr(importlib.import_module("pipelines.analytics.search"), "MAX_SAME_MILLISECOND", 6)
    with pytest.raises(TooManyTies, match=r"more than 6 matching records at 2026-11-23T10:00:00.005000\+00:00"):
        search(es, query="", window=window, prefix=index_prefix, size=3)
