"""Search records with a Lucene / KQL-like query string, newest first, and render them for a terminal.

``KeyError customer_id``, ``error.type:builtins.KeyError and celery.task.name:billing.*``,
``"Read timed out" or SMTPServerDisconnected``: KQL's lowercase ``and``/``or``/``not`` are accepted and
turned into Lucene's operators; words without a field search the message, the error and its traceback.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from celery_logs import _schema
from pipelines.analytics.query import Filters, ShardFailure, check_shards, record_indices, require_indices, time_range
from pipelines.analytics.timeparse import Window

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: Fields a bare word searches (a query naming a field searches that field).
DEFAULT_FIELDS: Final = (
    "message",
    "error.message",
    "error.stack_trace",
    "error.type",
    "celery.task.name",
    "celery.task.id",
    "celery.task.root_id",
    "celery.worker",
    "celery.queue",
    "trace.id",
)
SORT: Final = ({"@timestamp": "desc"}, {"event.id": "desc"})
_KQL_OPERATORS: Final = {"and": "AND", "or": "OR", "not": "NOT"}
_TOKENS: Final = re.compile(r'"(?:\\.|[^"\\])*"|\S+')


def to_lucene(text: str) -> str:
    """Uppercase KQL's ``and``/``or``/``not`` outside quotes; everything else is Lucene already."""
    return " ".join(_KQL_OPERATORS.get(tok, tok) for tok in _TOKENS.findall(text))


@dataclass(frozen=True, slots=True)
class Hit:
    """One matching record."""

    index: str
    id: str
    source: dict[str, Any]
    sort: tuple[Any, ...]

    @property
    def timestamp(self) -> datetime:
        return datetime.fromisoformat(str(self.source["@timestamp"]).replace("Z", "+00:00"))

    def get(self, dotted: str) -> Any:
        return _schema.get_path(self.source, dotted)


def _body(query: str, window: Window, filters: Filters) -> dict[str, Any]:
    must: list[dict[str, Any]] = []
    if query.strip():
        must.append(
            {
                "query_string": {
                    "query": to_lucene(query),
                    "fields": list(DEFAULT_FIELDS),
                    "default_operator": "AND",
                    # A word compared with a date or number field must not fail the whole search.
                    "lenient": True,
                }
            }
        )
    return {"bool": {"must": must or [{"match_all": {}}], "filter": [time_range(window), *filters.clauses()]}}


def search(
    es: Elasticsearch,
    *,
    query: str,
    window: Window,
    prefix: str = _schema.DEFAULT_INDEX_PREFIX,
    filters: Filters | None = None,
    size: int = 50,
) -> list[Hit]:
    """The ``size`` newest records in ``window`` matching ``query``, newest first."""
    from elasticsearch import BadRequestError

    index = record_indices(prefix)
    require_indices(es, index, what="record")
    try:
        resp = es.search(
            index=index,
            query=_body(query, window, filters or Filters()),
            size=size,
            sort=list(SORT),
            track_total_hits=False,
        )
        check_shards(resp)
    except BadRequestError as exc:
        raise QueryError(f"Elasticsearch refused the query {query!r}: {_reason(exc)}") from None
    except ShardFailure as exc:
        raise QueryError(f"Elasticsearch refused the query {query!r}: {exc}") from None
    return [_hit(h) for h in resp["hits"]["hits"]]


def search_newer(
    es: Elasticsearch,
    *,
    query: str,
    window: Window,
    after: tuple[Any, ...] | None,
    prefix: str = _schema.DEFAULT_INDEX_PREFIX,
    filters: Filters | None = None,
    size: int = 500,
) -> list[Hit]:
    """Records matching ``query`` sorted *after* ``after`` in time order (oldest first): for ``--follow``.

    ``after`` is the ``sort`` of the newest hit already shown (``None``: from the window's start).
    """
    kwargs: dict[str, Any] = {"search_after": list(after)} if after is not None else {}
    resp = es.search(
        index=record_indices(prefix),
        query=_body(query, window, filters or Filters()),
        size=size,
        sort=[{"@timestamp": "asc"}, {"event.id": "asc"}],
        track_total_hits=False,
        **kwargs,
    )
    return [_hit(h) for h in check_shards(resp)["hits"]["hits"]]


class QueryError(ValueError):
    """The query string does not parse; the message quotes Elasticsearch's reason."""


def _reason(exc: Exception) -> str:
    info: Any = getattr(exc, "info", None) or getattr(exc, "body", None)
    try:
        causes = info["error"]["root_cause"]
        return str(causes[0].get("reason", "")).splitlines()[0][:200]
    except (KeyError, IndexError, TypeError):
        return str(exc).splitlines()[0][:200]


def _hit(h: dict[str, Any]) -> Hit:
    return Hit(index=h["_index"], id=h["_id"], source=h["_source"], sort=tuple(h.get("sort", ())))


# --- terminal rendering --------------------------------------------------------------------------

LEVEL_COLOURS: Final = {"error": "31;1", "critical": "31;1", "warning": "33", "info": "32", "debug": "2"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Style:
    """ANSI colours on or off (off when not a terminal or ``NO_COLOR`` is set)."""

    colour: bool = False

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text


#: No colours: the default for files, pipes and tests.
PLAIN: Final = Style()


def render_hit(hit: Hit, *, style: Style = PLAIN) -> str:
    """One record as a header line plus, for a failure, its traceback indented underneath."""
    level = str(hit.get("log.level") or "info").lower()
    when = hit.timestamp.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    who = " ".join(
        str(v) for v in (hit.get("celery.task.name"), _short(hit.get("celery.task.id")), hit.get("celery.worker")) if v
    )
    head = (
        f"{style.paint(when, '2')} {style.paint(level.upper().ljust(7), LEVEL_COLOURS.get(level, ''))} "
        f"{style.paint(who, '36')}  {hit.get('message') or ''}"
    ).rstrip()
    lines = [head]
    trace = hit.get("error.stack_trace")
    if isinstance(trace, str) and trace:
        lines += [_trace_line(line, style) for line in trace.splitlines()]
    return "\n".join(lines)


def _trace_line(line: str, style: Style) -> str:
    stripped = line.lstrip()
    if stripped.startswith("File "):
        return "    " + style.paint(line, "2")
    if line and not line.startswith(" ") and not line.startswith("Traceback") and ":" in line:
        return "    " + style.paint(line, "31;1")  # the exception line itself
    return "    " + line


def _short(task_id: Any) -> str:
    return f"[{str(task_id)[:8]}]" if task_id else ""


def hit_json(hit: Hit) -> str:
    """One record as one JSON line (its ``_source`` plus ``_index`` and ``_id``)."""
    return json.dumps({"_index": hit.index, "_id": hit.id, **hit.source}, ensure_ascii=False, sort_keys=False)


def follow(
    es: Elasticsearch,
    *,
    query: str,
    window: Window,
    after: tuple[Any, ...] | None,
    prefix: str = _schema.DEFAULT_INDEX_PREFIX,
    filters: Filters | None = None,
    until: datetime | None = None,
) -> Iterator[list[Hit]]:
    """Batches of newer matching records, one batch per call of ``next``; the caller paces the polling.

    ``window.end`` is moved forward to each poll's ``until`` (or now), so new records are found.
    """
    cursor = after
    while True:
        end = until or datetime.now(timezone.utc)
        current = Window(window.start, max(end, window.end))
        batch = search_newer(es, query=query, window=current, after=cursor, prefix=prefix, filters=filters)
        if batch:
            cursor = batch[-1].sort
        yield batch
