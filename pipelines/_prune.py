"""Retention: delete the daily record indices older than a bound, and the entity documents of the tasks
whose every record was in them.

The entity index is one index, not daily, so it is pruned document by document: a task's document goes
when every time in it that a record wrote (``published_at``, ``received_at``, ... : the entity fields fed
from ``@timestamp``) is before the cutoff, the same rule that puts the task's records in deleted days.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any

from celery_logs._schema import TASK_FIELD_SOURCES, TASK_FIELDS

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: Entity fields that hold a record's own time: data from the schema table, not a list kept by hand.
RECORD_TIMES: tuple[str, ...] = tuple(
    sorted({field for sources in TASK_FIELD_SOURCES.values() for field, source in sources.items()
            if source == "@timestamp"})
)
#: Of those, the ones the index can answer a range on; the others are checked in ``_source``.
_INDEXED_TIMES: tuple[str, ...] = tuple(f.name for f in TASK_FIELDS if f.name in RECORD_TIMES and f.index)

_DURATION = re.compile(r"(\d+)\s*([dw])")
_UNITS = {"d": 1, "w": 7}


def parse_keep(text: str) -> timedelta:
    """``30d`` / ``8w`` -> a number of days; raises ``ValueError`` with a sentence otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"--keep takes a number of days or weeks like 30d or 8w, not {text!r}")
    return timedelta(days=int(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class PrunePlan:
    """The daily indices of a prefix, split into those past the bound and those kept."""

    delete: tuple[str, ...]
    keep: tuple[str, ...]
    cutoff: date


def plan(client: Elasticsearch, *, index_prefix: str, keep: timedelta, today: date | None = None) -> PrunePlan:
    """Which ``<prefix>-YYYY.MM.DD`` indices hold only days before ``today - keep``."""
    today = today or datetime.now(timezone.utc).date()
    cutoff = today - keep
    daily = re.compile(re.escape(index_prefix) + r"-(\d{4})\.(\d{2})\.(\d{2})")
    resp = client.options(ignore_status=404).indices.get(index=f"{index_prefix}-*", expand_wildcards="open,closed")
    delete: list[str] = []
    kept: list[str] = []
    for name in sorted(resp.body):
        match = daily.fullmatch(name)
        if match is None:
            continue
        try:
            day = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        except ValueError:
            continue  # not a real date: not one of ours, leave it alone
        (delete if day < cutoff else kept).append(name)
    return PrunePlan(delete=tuple(delete), keep=tuple(kept), cutoff=cutoff)


def apply(client: Elasticsearch, prune_plan: PrunePlan) -> None:
    """Delete the indices of ``prune_plan`` (one request per index: a name, never a wildcard)."""
    for name in prune_plan.delete:
        client.options(ignore_status=404).indices.delete(index=name)


@dataclass(frozen=True)
class StaleTask:
    """An entity document found stale, with the version it was found at (deleted only at that version)."""

    id: str
    seq_no: int
    primary_term: int


@dataclass(frozen=True)
class TaskPruneResult:
    """What pruning the entity index found and did."""

    tasks_index: str
    cutoff: date
    #: Documents whose every record time is before the cutoff.
    stale: int
    deleted: int = 0
    #: Written again (a late record) between the scan and the delete: kept.
    changed: int = 0
    exists: bool = True


def _as_utc(value: Any) -> datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=timezone.utc)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def is_stale(source: Mapping[str, Any], cutoff: datetime) -> bool:
    """Whether an entity ``_source`` has at least one record time and all of them before ``cutoff``.

    A time that cannot be read keeps the document: its age is unknown, and an absent answer beats a
    deleted task.
    """
    seen = False
    for name in RECORD_TIMES:
        if name not in source or source[name] is None:
            continue
        when = _as_utc(source[name])
        if when is None or when >= cutoff:
            return False
        seen = True
    return seen


def stale_tasks(client: Elasticsearch, *, tasks_index: str, cutoff: date, page: int = 1000) -> Iterator[StaleTask]:
    """The entity documents of ``tasks_index`` whose every record time is before ``cutoff`` (00:00 UTC).

    A scroll, so the pages are one snapshot however many documents are deleted meanwhile.
    """
    from elasticsearch import helpers

    bound = datetime.combine(cutoff, time(0), tzinfo=timezone.utc)
    query = {"bool": {"must_not": [{"range": {f: {"gte": bound.isoformat()}}} for f in _INDEXED_TIMES]}}
    for hit in helpers.scan(
        client, index=tasks_index, query={"query": query, "_source": list(RECORD_TIMES), "seq_no_primary_term": True},
        size=page, scroll="5m",
    ):  # fmt: skip
        if is_stale(hit.get("_source") or {}, bound):
            yield StaleTask(id=hit["_id"], seq_no=int(hit["_seq_no"]), primary_term=int(hit["_primary_term"]))


class TaskPruneError(Exception):
    """The entity index refused a delete for a reason a retry will not change; carries the first item."""

    def __init__(self, tasks_index: str, item: Mapping[str, Any]) -> None:
        reason = item.get("error", {}).get("reason") if isinstance(item.get("error"), dict) else item.get("error")
        super().__init__(f"{tasks_index} refused a delete ({item.get('status')}): {reason}")
        self.tasks_index = tasks_index
        self.item = dict(item)


def delete_tasks(client: Elasticsearch, *, tasks_index: str, tasks: list[StaleTask]) -> tuple[int, int]:
    """Delete ``tasks``, each only at the version it was found at; returns (deleted, changed since)."""
    if not tasks:
        return 0, 0
    operations: list[dict[str, Any]] = [
        {"delete": {"_index": tasks_index, "_id": t.id, "if_seq_no": t.seq_no, "if_primary_term": t.primary_term}}
        for t in tasks
    ]
    resp = client.bulk(operations=operations)
    deleted = changed = 0
    for entry in resp["items"]:
        item = entry["delete"]
        status = int(item.get("status", 0))
        if status == 200:
            deleted += 1
        elif status == 409:
            changed += 1
        elif status != 404:  # 404: gone already (another prune); nothing to do
            raise TaskPruneError(tasks_index, item)
    return deleted, changed


def prune_tasks(
    client: Elasticsearch, *, tasks_index: str, cutoff: date, apply: bool = False, page: int = 1000
) -> TaskPruneResult:
    """Find (and with ``apply``, delete) the entity documents whose every record time is before ``cutoff``."""
    if not client.indices.exists(index=tasks_index):
        return TaskPruneResult(tasks_index=tasks_index, cutoff=cutoff, stale=0, exists=False)
    stale = deleted = changed = 0
    batch: list[StaleTask] = []
    for task in stale_tasks(client, tasks_index=tasks_index, cutoff=cutoff, page=page):
        stale += 1
        if apply:
            batch.append(task)
            if len(batch) >= page:
                d, c = delete_tasks(client, tasks_index=tasks_index, tasks=batch)
                deleted, changed, batch = deleted + d, changed + c, []
    d, c = delete_tasks(client, tasks_index=tasks_index, tasks=batch)
    return TaskPruneResult(
        tasks_index=tasks_index, cutoff=cutoff, stale=stale, deleted=deleted + d, changed=changed + c
    )
