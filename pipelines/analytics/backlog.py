"""Queue backlog: the depth of each queue over time, from the workers' ``worker-queue-depth`` records.

Each worker samples the queues it consumes (and the ones it is told to watch) at every heartbeat, so a
queue's depth at a moment is the largest depth any worker saw in that bucket. A queue is flagged
*no consumer* when, at its last sample, messages were waiting and no worker sampling it in the
``recent`` period before consumes it: a watching worker still sees it grow, nobody drains it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final

from pipelines.analytics.query import Filters, check_shards, time_range
from pipelines.analytics.timeparse import Window, iso

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

PAGE_SIZE: Final = 500
ACTION: Final = "worker-queue-depth"


@dataclass(frozen=True, kw_only=True, slots=True)
class QueueDepth:
    """One queue's depth over the window."""

    queue: str
    #: Workers that consume the queue among those sampling it in the ``recent`` period before its last sample.
    consumers: int
    #: Largest depth seen in the ``recent`` period before the last sample.
    latest: int
    max: int
    last_sample: datetime
    #: (bucket start, largest depth any worker saw in it); buckets without samples are left out.
    series: tuple[tuple[datetime, int], ...]
    #: The series as a one-line chart over the whole window (blank: no sample), for the text formats.
    trend: str = ""

    @property
    def no_consumer(self) -> bool:
        return self.latest > 0 and self.consumers == 0


_BARS: Final = "▁▂▃▄▅▆▇█"
#: Widest trend line; neighbouring buckets merge (their largest depth) beyond this.
TREND_WIDTH: Final = 48


def trend_line(series: tuple[tuple[datetime, int], ...], *, window: Window, bucket: timedelta) -> str:
    """One character per bucket (merged to at most :data:`TREND_WIDTH`), scaled to the queue's largest depth."""
    count = max(1, math.ceil(window.length / bucket))
    per = math.ceil(count / TREND_WIDTH)
    cells: list[int | None] = [None] * math.ceil(count / per)
    for at, depth in series:
        i = int((at - window.start) / bucket) // per
        if 0 <= i < len(cells):
            cells[i] = max(cells[i] or 0, depth)
    top = max((c for c in cells if c is not None), default=0)
    return "".join(
        " " if c is None else _BARS[0] if top == 0 else _BARS[min(len(_BARS) - 1, c * len(_BARS) // (top + 1))]
        for c in cells
    )


def _ms(value: float) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


def queue_depths(es: Elasticsearch, *, index: str, window: Window, filters: Filters, bucket: timedelta,
                 recent: timedelta) -> tuple[QueueDepth, ...]:
    """Every queue sampled in the window, by name."""
    base = [time_range(window), {"term": {"event.action": ACTION}}, {"exists": {"field": "celery.queue_depth"}},
            *filters.clauses()]
    aggs = {
        "max": {"max": {"field": "celery.queue_depth"}},
        "last": {"max": {"field": "@timestamp"}},
        "t": {
            "date_histogram": {"field": "@timestamp", "fixed_interval": f"{int(bucket.total_seconds())}s"},
            "aggs": {"d": {"max": {"field": "celery.queue_depth"}}},
        },
    }
    found: dict[str, dict[str, Any]] = {}
    after: dict[str, Any] | None = None
    while True:
        comp: dict[str, Any] = {"size": PAGE_SIZE, "sources": [{"k": {"terms": {"field": "celery.queue"}}}]}
        if after is not None:
            comp["after"] = after
        resp = check_shards(es.search(index=index, size=0, track_total_hits=False, query={"bool": {"filter": base}},
                                      aggs={"c": {"composite": comp, "aggs": aggs}}).body)
        agg = resp["aggregations"]["c"]
        for b in agg["buckets"]:
            found[str(b["key"]["k"])] = b
        after = agg.get("after_key")
        if after is None or len(agg["buckets"]) < PAGE_SIZE:
            break
    if not found:
        return ()
    recent_of = {q: _ms(b["last"]["value"]) for q, b in found.items()}
    should = [
        {"bool": {"filter": [
            {"term": {"celery.queue": q}},
            {"range": {"@timestamp": {"gte": iso(last - recent), "lte": iso(last)}}},
        ]}}
        for q, last in recent_of.items()
    ]
    resp = check_shards(es.search(
        index=index, size=0, track_total_hits=False,
        query={"bool": {"filter": base, "should": should, "minimum_should_match": 1}},
        aggs={"q": {"terms": {"field": "celery.queue", "size": len(found)}, "aggs": {
            "latest": {"max": {"field": "celery.queue_depth"}},
            "consumers": {"filter": {"term": {"celery.queue_consumed": True}},
                          "aggs": {"n": {"cardinality": {"field": "celery.worker"}}}},
        }}},
    ).body)
    recent_stats = {str(b["key"]): b for b in resp["aggregations"]["q"]["buckets"]}
    out = []
    for queue, b in sorted(found.items()):
        r = recent_stats[queue]
        series = tuple((_ms(t["key"]), int(t["d"]["value"])) for t in b["t"]["buckets"] if t["doc_count"])
        out.append(QueueDepth(
            queue=queue,
            consumers=int(r["consumers"]["n"]["value"]),
            latest=int(r["latest"]["value"]),
            max=int(b["max"]["value"]),
            last_sample=recent_of[queue],
            series=series,
            trend=trend_line(series, window=window, bucket=bucket),
        ))
    return tuple(out)
