"""Periodic tasks: per beat schedule entry, what was due, sent, started, finished, missed and stuck.

Every number comes from the entity index (one document per task id): ``beat-sent`` writes the entry's
fields into the document of the task it sent (``beat_entry``, ``sent_at``, ``beat_due``, ...), and the
worker's records write ``started_at`` and the outcome into the same document, in any arrival order.

Definitions (docs/periodic.md):

- *sent*: dispatches of the entry in the window (by ``sent_at``);
- *missed*: due times that passed with nothing sent. Beat itself counts them when it sends again after
  a downtime (``celery.beat.missed``: its catch-up run is one *sent*, late); while it is still away, the
  report counts the due times from the last dispatch's ``next_due`` up to ``now - missed_grace`` (interval
  schedules only; for crontab or solar ones that count is unknown and shown as absent);
- *expected*: sent + missed;
- *stuck*: sent, and not started within ``stuck_after`` (never started, or started later than that):
  nobody consumes its queue;
- *failed* / *succeeded*: the task's terminal outcome.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Final

from pipelines.analytics.query import Filters, check_shards
from pipelines.analytics.timeparse import Window, iso

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: Filter option -> the entity index's field it applies to.
ENTITY_FILTER_FIELDS: Final = {
    "tasks": "name",
    "queues": "queue",
    "workers": "worker",
    "services": "service",
    "environments": "environment",
}
PAGE_SIZE: Final = 500


@dataclass(frozen=True, kw_only=True, slots=True)
class PeriodicEntry:
    """One beat schedule entry over the report's window."""

    entry: str
    task: str
    schedule: str
    sent: int
    started: int
    succeeded: int
    failed: int
    #: ``None`` when it cannot be known (see the module's definitions).
    missed: int | None
    stuck: int
    #: Largest lateness of a dispatch, nanoseconds; ``None`` without a known due time.
    worst_lateness: int | None
    last_success: datetime | None
    next_due: datetime | None

    @property
    def expected(self) -> int | None:
        return None if self.missed is None else self.sent + self.missed


def _entity_clauses(filters: Filters) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for option, field in ENTITY_FILTER_FIELDS.items():
        values: tuple[str, ...] = getattr(filters, option)
        if values:
            out.append({"terms": {field: list(values)}})
    return out


def _parse(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def trailing_missed(next_due: datetime | None, interval_ns: Any, *, window: Window, cutoff: datetime) -> int | None:
    """Due times in ``[window.start, cutoff]`` from ``next_due`` on, every ``interval_ns`` (nothing sent since).

    ``None`` when there are some but their spacing is unknown (not an interval schedule).
    """
    if next_due is None or next_due > cutoff or next_due >= window.end:
        return 0
    if not isinstance(interval_ns, int) or interval_ns <= 0:
        return None
    period = interval_ns / 1e9
    first = next_due
    if first < window.start:
        first += timedelta(seconds=period * math.ceil((window.start - first).total_seconds() / period))
    last = min(cutoff, window.end - timedelta(microseconds=1))
    if first > last:
        return 0
    return math.floor((last - first).total_seconds() / period) + 1


def periodic_entries(es: Elasticsearch, *, tasks_index: str, window: Window, filters: Filters, now: datetime,
                     stuck_after: timedelta, missed_grace: timedelta) -> tuple[PeriodicEntry, ...]:
    """Every entry that sent something in the window or the one before it, with its counts in the window."""
    cutoff = min(now, window.end)
    lookback = window.start - window.length
    in_window = {"range": {"sent_at": {"gte": iso(window.start), "lt": iso(window.end)}}}
    stuck_ns = int(stuck_after.total_seconds() * 1e9)
    stuck = {
        "bool": {
            "should": [
                {"bool": {
                    "must_not": [{"exists": {"field": "started_at"}}, {"exists": {"field": "ended_at"}}],
                    "filter": [{"range": {"sent_at": {"lt": iso(cutoff - stuck_after)}}}],
                }},
                {"range": {"queue_wait": {"gt": stuck_ns}}},
            ],
            "minimum_should_match": 1,
        }
    }
    aggs = {
        "w": {
            "filter": in_window,
            "aggs": {
                "started": {"filter": {"exists": {"field": "started_at"}}},
                "succeeded": {"filter": {"term": {"outcome": "success"}}},
                "failed": {"filter": {"term": {"outcome": "failure"}}},
                "stuck": {"filter": stuck},
                "unknown_missed": {"filter": {"bool": {"must_not": [{"exists": {"field": "beat_missed"}}]}}},
                "missed": {"sum": {"field": "beat_missed"}},
                "lateness": {"max": {"field": "beat_lateness"}},
            },
        },
        "ok": {"filter": {"term": {"outcome": "success"}}, "aggs": {"last": {"max": {"field": "ended_at"}}}},
        "latest": {
            "top_hits": {
                "size": 1,
                "sort": [{"sent_at": "desc"}],
                "_source": ["name", "beat_schedule", "beat_next_due", "beat_interval"],
            }
        },
    }
    query = {
        "bool": {
            "filter": [
                {"exists": {"field": "beat_entry"}},
                {"range": {"sent_at": {"gte": iso(lookback), "lt": iso(window.end)}}},
                *_entity_clauses(filters),
            ]
        }
    }
    out: list[PeriodicEntry] = []
    after: dict[str, Any] | None = None
    while True:
        comp: dict[str, Any] = {"size": PAGE_SIZE, "sources": [{"k": {"terms": {"field": "beat_entry"}}}]}
        if after is not None:
            comp["after"] = after
        resp = check_shards(
            es.search(index=tasks_index, size=0, track_total_hits=False, query=query,
                      aggs={"c": {"composite": comp, "aggs": aggs}}).body
        )
        agg = resp["aggregations"]["c"]
        for b in agg["buckets"]:
            out.append(_entry(b, window=window, cutoff=cutoff - missed_grace))
        after = agg.get("after_key")
        if after is None or len(agg["buckets"]) < PAGE_SIZE:
            break
    out.sort(key=lambda e: e.entry)
    return tuple(out)


def _entry(b: dict[str, Any], *, window: Window, cutoff: datetime) -> PeriodicEntry:
    w = b["w"]
    src = b["latest"]["hits"]["hits"][0]["_source"]
    next_due = _parse(src.get("beat_next_due"))
    trailing = trailing_missed(next_due, src.get("beat_interval"), window=window, cutoff=cutoff)
    missed: int | None = None
    if trailing is not None and not w["unknown_missed"]["doc_count"]:
        missed = int(w["missed"]["value"] or 0) + trailing
    lateness = w["lateness"]["value"]
    last_ok = b["ok"]["last"]["value"]
    return PeriodicEntry(
        entry=str(b["key"]["k"]),
        task=str(src.get("name") or ""),
        schedule=str(src.get("beat_schedule") or ""),
        sent=int(w["doc_count"]),
        started=int(w["started"]["doc_count"]),
        succeeded=int(w["succeeded"]["doc_count"]),
        failed=int(w["failed"]["doc_count"]),
        missed=missed,
        stuck=int(w["stuck"]["doc_count"]),
        worst_lateness=None if lateness is None else int(lateness),
        last_success=None if last_ok is None else datetime.fromtimestamp(last_ok / 1000, tz=timezone.utc),
        next_due=next_due,
    )
