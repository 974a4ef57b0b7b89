"""Deploy comparison: runs, failure % and run-time p50 / p95 per task, side by side per version.

``report --by service.version`` puts every version seen in the window side by side; ``--compare A B``
only A and B, in that order, with the change from A to B. Definitions are the report's (a run is a
``task-succeeded``, ``task-failed`` or ``task-retried``; failure % is failures / (successes + failures)).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pipelines.analytics.query import Filters, check_shards, time_range
from pipelines.analytics.timeparse import Window

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: ``--by`` choices: keyword fields of the record a deploy or a placement is told apart by.
BY_FIELDS: Final = ("service.version", "service.environment", "host.hostname", "celery.worker", "celery.queue")
RUN_ACTIONS: Final = ("task-succeeded", "task-failed", "task-retried")
PAGE_SIZE: Final = 500


@dataclass(frozen=True, kw_only=True, slots=True)
class VersionStats:
    """One task's runs under one value of the compared field."""

    successes: int
    failures: int
    retries: int
    run_p50: float | None
    run_p95: float | None

    @property
    def runs(self) -> int:
        return self.successes + self.failures + self.retries

    @property
    def failure_pct(self) -> float | None:
        finished = self.successes + self.failures
        return 100.0 * self.failures / finished if finished else None


@dataclass(frozen=True, kw_only=True, slots=True)
class VersionRow:
    """One task, with its stats per compared value (absent: no runs under that value)."""

    task: str
    stats: tuple[tuple[str, VersionStats], ...]

    def get(self, value: str) -> VersionStats | None:
        return dict(self.stats).get(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class Comparison:
    """The side-by-side table: the field, its values in column order, and a row per task."""

    field: str
    values: tuple[str, ...]
    rows: tuple[VersionRow, ...]
    #: ``--compare A B``: the values were chosen, and the change from the first to the second is shown.
    pairwise: bool = False


def _pct(agg: dict[str, Any], percent: float) -> float | None:
    value = agg["values"].get(f"{percent:.1f}")
    return None if value is None else float(value)


def compare(es: Elasticsearch, *, index: str, window: Window, filters: Filters, field: str,
            values: tuple[str, ...] = ()) -> Comparison:
    """Per task and value of ``field`` (all values seen, or only ``values`` in that order)."""
    clauses = [time_range(window), {"terms": {"event.action": list(RUN_ACTIONS)}}, *filters.clauses()]
    if values:
        clauses.append({"terms": {field: list(values)}})
    aggs = {
        "a": {"filters": {"filters": {
            "successes": {"term": {"event.action": "task-succeeded"}},
            "failures": {"term": {"event.action": "task-failed"}},
            "retries": {"term": {"event.action": "task-retried"}},
        }}},
        "pct": {"percentiles": {"field": "event.duration", "percents": [50.0, 95.0]}},
    }
    by_task: dict[str, dict[str, VersionStats]] = {}
    after: dict[str, Any] | None = None
    while True:
        comp: dict[str, Any] = {"size": PAGE_SIZE, "sources": [
            {"t": {"terms": {"field": "celery.task.name"}}}, {"v": {"terms": {"field": field}}}]}
        if after is not None:
            comp["after"] = after
        resp = check_shards(es.search(index=index, size=0, track_total_hits=False,
                                      query={"bool": {"filter": clauses}},
                                      aggs={"c": {"composite": comp, "aggs": aggs}}).body)
        agg = resp["aggregations"]["c"]
        for b in agg["buckets"]:
            counts = b["a"]["buckets"]
            by_task.setdefault(str(b["key"]["t"]), {})[str(b["key"]["v"])] = VersionStats(
                successes=int(counts["successes"]["doc_count"]),
                failures=int(counts["failures"]["doc_count"]),
                retries=int(counts["retries"]["doc_count"]),
                run_p50=_pct(b["pct"], 50.0),
                run_p95=_pct(b["pct"], 95.0),
            )
        after = agg.get("after_key")
        if after is None or len(agg["buckets"]) < PAGE_SIZE:
            break
    seen = values or tuple(sorted({v for per in by_task.values() for v in per}))
    rows = tuple(
        VersionRow(task=task, stats=tuple((v, per[v]) for v in seen if v in per))
        for task, per in sorted(by_task.items())
    )
    return Comparison(field=field, values=seen, rows=rows, pairwise=bool(values))
