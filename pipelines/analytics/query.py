"""Pieces every read command shares: which indices to read, the filters a user gives, and the check
that there is anything to read at all."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from celery_logs import _schema
from pipelines._errors import CliError
from pipelines.analytics.timeparse import Window, iso

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: Exit code when the indices a command reads do not exist yet.
EXIT_NO_DATA: Final = 5


class NoDataError(CliError):
    """The record indices (or the entity index) do not exist yet: nothing has been shipped."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=EXIT_NO_DATA)


def record_indices(prefix: str) -> str:
    """The daily record indices of ``prefix`` and nothing else (not an entity index named ``<prefix>-x``)."""
    return _schema.daily_indices(prefix)


def require_indices(es: Elasticsearch, pattern: str, *, what: str) -> None:
    """Raise :class:`NoDataError` naming ``pattern`` when no index matches it."""
    resolved = es.indices.resolve_index(name=pattern)
    if not resolved.get("indices"):
        raise NoDataError(f"no {what} index matches {pattern!r} yet: has the shipper sent anything there?")


#: CLI option -> record field it filters on. Data, so every command filters the same way.
FILTER_FIELDS: Final[dict[str, str]] = {
    "tasks": "celery.task.name",
    "queues": "celery.queue",
    "workers": "celery.worker",
    "services": "service.name",
    "environments": "service.environment",
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Filters:
    """Values a record must have (each non-empty tuple is an OR of values; tuples are ANDed)."""

    tasks: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()

    def clauses(self, *, skip: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
        """``terms`` clauses for a bool ``filter``; ``skip`` names options not to apply."""
        out: list[dict[str, Any]] = []
        for option, field in FILTER_FIELDS.items():
            values: tuple[str, ...] = getattr(self, option)
            if values and option not in skip:
                out.append({"terms": {field: list(values)}})
        return out

    def describe(self) -> dict[str, list[str]]:
        """Non-empty filters, for the report's header."""
        return {option: list(getattr(self, option)) for option in FILTER_FIELDS if getattr(self, option)}


def time_range(window: Window) -> dict[str, Any]:
    """A half-open ``@timestamp`` range clause."""
    return {"range": {"@timestamp": {"gte": iso(window.start), "lt": iso(window.end)}}}


class ShardFailure(CliError):
    """Some shards failed to answer: the result would be partial, so it is refused."""


def check_shards(response: Any) -> Any:
    """Return ``response`` unless a shard failed (Elasticsearch answers 200 with partial results then)."""
    shards = response.get("_shards") or {}
    if shards.get("failed"):
        failures = shards.get("failures") or [{}]
        reason = failures[0].get("reason") or {}
        detail = reason.get("reason") or reason.get("type") or "unknown reason"
        raise ShardFailure(f"{shards['failed']} of {shards.get('total')} shards failed: {str(detail).splitlines()[0]}")
    return response
