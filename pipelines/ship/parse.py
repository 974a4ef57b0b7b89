"""Parsing: one raw line -> the bulk operations that index it, or the reason it cannot be indexed.

The record's own bytes are the document source: a valid JSON line is sent as written, never re-encoded,
so what Elasticsearch stores is exactly what the worker wrote. Parsing only finds the routing:

- ``_index`` = ``<prefix>-YYYY.MM.DD`` of the record's ``@timestamp`` in UTC (:func:`daily_index`);
- ``_id`` = ``event.id``; a record without one (third-party JSON) gets ``raw-`` + the BLAKE2b-128 hex
  digest of its line, so a replay of the same line lands on the same document (two byte-identical lines
  without ``event.id`` are one document, which for identical content is what a reader expects);
- when the entity index is on, the record's partial task document (:func:`task_entity_update`) becomes a
  bulk ``update`` with ``doc_as_upsert``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from datetime import datetime, timezone
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple, cast

import orjson

from celery_logs._schema import TASK_FIELD_SOURCES, daily_index, get_path, task_entity_update

#: Elasticsearch refuses longer ``_id`` values.
MAX_ID_BYTES = 512
#: Retries Elasticsearch does itself when two upserts of one task document race.
UPDATE_RETRY_ON_CONFLICT = 5

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})")
_UTC_SUFFIXES = ("Z", "+00:00", "+0000")
#: ``len("2026-11-22T10:00:01.123456Z")``, the @timestamp celery-logs writes.
_CANONICAL_LEN = 27
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_scan_once: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__
#: A JSON string literal (ASCII-escaped) of a str: what json.dumps does for one, without its overhead.
_quote = encode_basestring_ascii
_fast_loads = orjson.loads
_fast_dumps = orjson.dumps

#: One step of an entity plan: a key of the record's object, the entity field its value fills (when it is a
#: leaf), and the steps below it (when it is an object).
_Step = tuple[str, "str | None", tuple[Any, ...]]


def _plan(sources: dict[str, str]) -> tuple[_Step, ...]:
    """:data:`TASK_FIELD_SOURCES` for one action as a tree of record keys, so each object of the record
    is looked up once per record rather than once per field taken from it (the shipper's hot path)."""
    tree: dict[str, Any] = {}
    for target, source in sources.items():
        *parents, leaf = source.split(".")
        node = tree
        for key in parents:
            node = node.setdefault(key, {}).setdefault("", {})
        node.setdefault(leaf, {})[None] = target

    def freeze(node: dict[str, Any]) -> tuple[_Step, ...]:
        return tuple((key, sub.get(None), freeze(sub.get("", {}))) for key, sub in node.items())

    return freeze(tree)


def _compile(plan: tuple[_Step, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The plan as straight-line code (``record.get``, ``is not None``, ``doc[...] = ...``), as dataclasses
    compile their methods: half the cost of walking the plan, and this runs for every record shipped.
    Keys and fields come from :data:`TASK_FIELD_SOURCES` and enter the source only through ``repr``."""
    lines = ["def extract(record):", "    doc = {}"]
    names = iter(range(1, 1_000_000))

    def emit(node: str, steps: tuple[_Step, ...], depth: int) -> None:
        pad = "    " * depth
        for key, target, below in steps:
            value = f"v{next(names)}"
            lines.append(f"{pad}{value} = {node}.get({key!r})")
            lines.append(f"{pad}if {value} is not None:")
            if target is not None:
                lines.append(f"{pad}    doc[{target!r}] = {value}")
            if below:
                lines.append(f"{pad}    if type({value}) is dict:")
                emit(value, below, depth + 2)

    emit("record", plan, 1)
    lines.append("    return doc")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # noqa: S102 - our own constant table, see above
    return cast("Callable[[dict[str, Any]], dict[str, Any]]", namespace["extract"])


#: The source names a record could also hold as flat keys (``{"celery.task.id": ...}``), which the schema's
#: own :func:`get_path` honours and the compiled plans do not look for.
_FLAT_SOURCES = frozenset(
    source for table in TASK_FIELD_SOURCES.values() for source in table.values() if "." in source
) | {"event.action"}

#: Per action, the function that takes its task's entity fields out of a (nested) record.
_ENTITY_EXTRACT: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    action: _compile(_plan({**TASK_FIELD_SOURCES["*"], **fields}))
    for action, fields in TASK_FIELD_SOURCES.items()
    if action != "*"
}


class Rejected(Exception):
    """A line that can never be indexed; ``reason`` is one sentence for the dead-letter record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Operations(NamedTuple):
    """The bulk lines (each ending in a newline) that index one record (a tuple: cheap to make per line).

    ``payload`` holds the ``create`` action and source, then, from ``split`` on (when it is not 0), the
    ``update`` of the task's entity document: made with one copy of the line, sent as they are.
    """

    payload: bytes
    split: int

    @property
    def create(self) -> bytes:
        return self.payload[: self.split] if self.split else self.payload

    @property
    def update(self) -> bytes | None:
        return self.payload[self.split :] if self.split else None


#: ``Operations((payload, split))`` without the generated ``__new__``'s Python frame (once per line shipped).
_operations: Callable[[tuple[bytes, int]], Operations] = functools.partial(tuple.__new__, Operations)


class Parser:
    """Turns raw lines into :class:`Operations` for one index prefix and optional entity index."""

    def __init__(self, *, index_prefix: str, tasks_index: str | None) -> None:
        self.index_prefix = index_prefix
        self.tasks_index = tasks_index
        self._create_heads: dict[str, bytes] = {}
        self._update_head = (
            b'{"update":{"_index":' + json.dumps(tasks_index).encode() + b',"retry_on_conflict":%d,"_id":'
            % UPDATE_RETRY_ON_CONFLICT
            if tasks_index
            else b""
        )

    def parse(self, data: bytes) -> Operations | None:
        """Operations for one line; ``None`` for a blank line; raises :class:`Rejected` for a bad one."""
        try:
            # orjson validates UTF-8 and JSON in one pass, twice as fast as the standard scanner; what it
            # refuses (a blank line, an error, a lone surrogate escape, an integer beyond 64 bits) takes
            # the standard library's path, which accepts what it can and words the reason when it cannot.
            record = _fast_loads(data)
        except ValueError:
            record = _standard_loads(data)
            if record is _BLANK:
                return None
        if type(record) is not dict:
            raise Rejected(f"not a JSON object but a {type(record).__name__}")
        ts = record.get("@timestamp")
        head = None
        if type(ts) is str and len(ts) == _CANONICAL_LEN and ts[-1] == "Z" and ts[10] == "T":
            # The shape celery-logs writes, on a day already seen: skip the full check, which cost a
            # tenth of the shipper's time. Elasticsearch still parses the time of day; a bad one is
            # refused per item and dead-lettered with its reason, so nothing is lost either way.
            head = self._create_heads.get(ts[:10])
        if head is None:
            head = self._create_head(ts)
        event = record.get("event")
        doc_id = event.get("id") if type(event) is dict else get_path(record, "event.id")
        if doc_id is None:
            doc_id = "raw-" + hashlib.blake2b(data.strip(), digest_size=16).hexdigest()
        elif type(doc_id) is not str or not doc_id or _too_long(doc_id):
            raise Rejected(f"event.id must be a non-empty string of at most {MAX_ID_BYTES} bytes")
        doc_id_json = _quote(doc_id).encode()
        if self.tasks_index:
            entity = entity_update(record)
            if entity is not None:
                task_id, fields = entity
                return _operations((
                    b"".join((head, doc_id_json, b"}}\n", data, b"\n",
                              self._update_head, _quote(task_id).encode(), b'}}\n{"doc":', _doc_json(fields),
                              b',"doc_as_upsert":true}\n')),
                    len(head) + len(doc_id_json) + len(data) + 4,
                ))
        return _operations((b"".join((head, doc_id_json, b"}}\n", data, b"\n")), 0))

    def _create_head(self, ts: Any) -> bytes:
        """The start of the ``create`` action line, up to the ``_id``: it names the daily index of ``ts``."""
        if ts is None:
            raise Rejected("no @timestamp")
        if type(ts) is not str or _TIMESTAMP.fullmatch(ts) is None:
            raise Rejected(f"unparseable @timestamp {str(ts)[:64]!r}")
        if not ts.endswith(_UTC_SUFFIXES):
            # The daily index is the UTC day; an offset timestamp may fall on the neighbouring day.
            try:
                ts = datetime.fromisoformat(ts).astimezone(timezone.utc).isoformat()
            except ValueError:
                raise Rejected(f"unparseable @timestamp {ts[:64]!r}") from None
        day = ts[:10]
        head = self._create_heads.get(day)
        if head is None:
            index = daily_index(self.index_prefix, ts)
            head = self._create_heads[day] = b'{"create":{"_index":' + json.dumps(index).encode() + b',"_id":'
        return head


_BLANK = object()


def _too_long(doc_id: str) -> bool:
    # A UTF-8 character is at most 4 bytes: short ids need no encoding to be measured.
    return len(doc_id) * 4 > MAX_ID_BYTES and len(doc_id.encode()) > MAX_ID_BYTES


def _standard_loads(data: bytes) -> Any:
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise Rejected(f"invalid UTF-8 at byte {exc.start}") from None
    # The C scanner straight away (json.loads adds two regex passes and an encoding guess per line);
    # anything unusual (leading blanks, an error) goes through json.loads for its message.
    try:
        record, end = _scan_once(text, 0)
    except (StopIteration, ValueError):
        record, end = None, -1
    if end == len(text) or (end >= 0 and text[end:].isspace()):
        return record
    try:
        return json.loads(text)
    except ValueError as exc:
        if not text.strip():
            return _BLANK
        raise Rejected(f"not JSON: {exc}") from None


def entity_update(record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """Same result as :func:`celery_logs._schema.task_entity_update`, faster for nested records.

    Records written with flat dotted keys take the schema's own function; a test checks both agree.
    """
    event = record.get("event")
    if type(event) is not dict or not _FLAT_SOURCES.isdisjoint(record):
        return task_entity_update(record)
    extract = _ENTITY_EXTRACT.get(event.get("action"))  # type: ignore[arg-type]
    if extract is None:
        return None
    doc = extract(record)
    task_id = doc.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        return None
    return task_id, doc


def _doc_json(fields: dict[str, Any]) -> bytes:
    """The partial entity document as compact JSON (UTF-8)."""
    try:
        return _fast_dumps(fields)
    except TypeError:  # an integer beyond 64 bits: the standard encoder has no such limit
        return _COMPACT.encode(fields).encode()
