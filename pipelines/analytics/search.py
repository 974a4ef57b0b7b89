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
from pipelines._errors import CliError
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
#: Records come in (@timestamp, event.id) order. Elasticsearch sorts on @timestamp (milliseconds);
#: records within one millisecond are ordered here by their event.id from _source, since event.id keeps
#: no doc values (they were 29 B of a 208 B record, benchmarks/storage.py). A page never ends inside a
#: millisecond it has not read whole, so the order and the page boundaries are the same as sorting on both.
#: One more than this is what one request may return (index.max_result_window, 10 000 by default).
MAX_SAME_MILLISECOND: Final = 9_999
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
        return ordered_page(es, index=index, query=_body(query, window, filters or Filters()), size=size,
                            descending=True)
    except BadRequestError as exc:
        raise QueryError(f"Elasticsearch refused the query {query!r}: {_reason(exc)}") from None
    except ShardFailure as exc:
        raise QueryError(f"Elasticsearch refused the query {query!r}: {exc}") from None


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
    return ordered_page(es, index=record_indices(prefix), query=_body(query, window, filters or Filters()), size=size,
                        descending=False, after=after)


class TooManyTies(CliError):
    """More records in one millisecond than one request returns: their order cannot be read whole."""


def _key(sort: tuple[Any, ...], descending: bool) -> tuple[int, bool, str]:
    """Key of a hit's ``sort`` in that direction; a missing event.id comes last either way, as in Elasticsearch."""
    ms, eid = sort
    missing_last = eid is not None if descending else eid is None
    return int(ms), missing_last, eid or ""


def ordered_page(
    es: Elasticsearch,
    *,
    index: str,
    query: dict[str, Any],
    size: int,
    descending: bool,
    after: tuple[Any, ...] | None = None,
) -> list[Hit]:
    """The first ``size`` records of ``query`` in (@timestamp, event.id) order, strictly after ``after``.

    ``after`` is the ``sort`` of a hit returned before: ``(epoch milliseconds, event.id)``.
    """
    order = "desc" if descending else "asc"

    def fetch(bound: dict[str, Any] | None, n: int) -> list[Hit]:
        q = query
        if bound:
            q = {"bool": {"must": [query], "filter": [{"range": {"@timestamp": {**bound, "format": "epoch_millis"}}}]}}
        resp = check_shards(es.search(index=index, query=q, size=n, sort=[{"@timestamp": order}],
                                      track_total_hits=False))
        return [_hit(h) for h in resp["hits"]["hits"]]

    def whole(ms: int) -> list[Hit]:
        hits = fetch({"gte": ms, "lte": ms}, MAX_SAME_MILLISECOND + 1)
        if len(hits) > MAX_SAME_MILLISECOND:
            when = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat()
            raise TooManyTies(f"more than {MAX_SAME_MILLISECOND} matching records at {when}: narrow the query")
        return hits

    def beyond(k: tuple[int, bool, str], cursor: tuple[int, bool, str]) -> bool:
        return k < cursor if descending else k > cursor

    page: list[Hit] = []
    rest_bound: dict[str, Any] | None = None
    if after is not None:
        cursor = _key(tuple(after), descending)
        page = [h for h in whole(cursor[0]) if beyond(_key(h.sort, descending), cursor)]
        rest_bound = {"lt" if descending else "gt": cursor[0]}
    if len(page) < size:
        rest = fetch(rest_bound, size)
        if len(rest) == size:
            # The page may end inside its last millisecond: read that millisecond whole.
            last = int(rest[-1].sort[0])
            rest = [h for h in rest if int(h.sort[0]) != last] + whole(last)
        page += rest
    page.sort(key=lambda h: _key(h.sort, descending), reverse=descending)
    return page[:size]


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
    source = h["_source"]
    eid = _schema.get_path(source, "event.id")
    # (epoch milliseconds of @timestamp, event.id): the cursor ordered_page continues after.
    return Hit(h["_index"], h["_id"], source, (h["sort"][0], eid if isinstance(eid, str) else None))


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
