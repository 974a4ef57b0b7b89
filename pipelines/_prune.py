"""Retention: delete the daily record indices older than a bound (the entity index is never touched)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

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
