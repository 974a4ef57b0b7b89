"""Search finds records by words inside tracebacks, newest first; the task timeline shows one history."""

from __future__ import annotations

from datetime import timedelta

import pytest
from elasticsearch import Elasticsearch

from pipelines.analytics.search import PLAIN, QueryError, Style, follow, render_hit, search, search_newer, to_lucene
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
