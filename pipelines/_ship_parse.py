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

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime, timezone
from json.encoder import encode_basestring_ascii
from typing import Any, NamedTuple

from celery_logs._schema import TASK_FIELD_SOURCES, daily_index, get_path, task_entity_update

#: Elasticsearch refuses longer ``_id`` values.
MAX_ID_BYTES = 512
#: Retries Elasticsearch does itself when two upserts of one task document race.
UPDATE_RETRY_ON_CONFLICT = 5

_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})")
_UTC_SUFFIXES = ("Z", "+00:00", "+0000")
_COMPACT = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_scan_once: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # set in __init__
#: A JSON string literal (ASCII-escaped) of a str: what json.dumps does for one, without its overhead.
_quote = encode_basestring_ascii

#: :data:`TASK_FIELD_SOURCES` with its dotted source names split once, per action: the same table,
#: read without re-splitting names for every record (the shipper's hot path).
_ENTITY_PLAN: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    action: tuple(
        (target, tuple(source.split(".")))
        for table in (TASK_FIELD_SOURCES["*"], fields)
        for target, source in table.items()
    )
    for action, fields in TASK_FIELD_SOURCES.items()
    if action != "*"
}


class Rejected(Exception):
    """A line that can never be indexed; ``reason`` is one sentence for the dead-letter record."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Operations(NamedTuple):
    """The bulk lines (each ending in a newline) that index one record (a tuple: cheap to make per line)."""

    create: bytes
    update: bytes | None


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
            text = data.decode()
        except UnicodeDecodeError as exc:
            raise Rejected(f"invalid UTF-8 at byte {exc.start}") from None
        # The C scanner straight away (json.loads adds two regex passes and an encoding guess per
        # line); anything unusual (leading blanks, an error) goes through json.loads for its message.
        try:
            record, end = _scan_once(text, 0)
        except (StopIteration, ValueError):
            record, end = None, -1
        if end != len(text) and (end < 0 or not text[end:].isspace()):
            record = _loads(text)
            if record is _BLANK:
                return None
        if type(record) is not dict:
            raise Rejected(f"not a JSON object but a {type(record).__name__}")
        head = self._create_head(record)
        event = record.get("event")
        doc_id = event.get("id") if type(event) is dict else get_path(record, "event.id")
        if doc_id is None:
            doc_id = "raw-" + hashlib.blake2b(data.strip(), digest_size=16).hexdigest()
        elif type(doc_id) is not str or not doc_id or _too_long(doc_id):
            raise Rejected(f"event.id must be a non-empty string of at most {MAX_ID_BYTES} bytes")
        create = head + _quote(doc_id).encode() + b"}}\n" + data + b"\n"
        update = None
        if self.tasks_index:
            entity = entity_update(record)
            if entity is not None:
                task_id, fields = entity
                update = (
                    self._update_head
                    + _quote(task_id).encode()
                    + b"}}\n"
                    + _upsert_body(fields).encode()
                    + b"\n"
                )
        return Operations(create, update)

    def _create_head(self, record: Mapping[str, Any]) -> bytes:
        """The start of the ``create`` action line, up to the ``_id``: it names the record's daily index."""
        ts = record.get("@timestamp")
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


def _loads(text: str) -> Any:
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
    if type(event) is not dict or any("." in key for key in record):
        return task_entity_update(record)
    plan = _ENTITY_PLAN.get(event.get("action"))  # type: ignore[arg-type]
    if plan is None:
        return None
    task_id = _dig(record, ("celery", "task", "id"))
    if not isinstance(task_id, str) or not task_id:
        return None
    doc: dict[str, Any] = {}
    for target, parts in plan:
        # _dig inlined: this loop runs a dozen times per record on the shipper's hot path.
        node: Any = record
        for part in parts:
            node = node.get(part) if type(node) is dict else None
            if node is None:
                break
        else:
            doc[target] = node
    return task_id, doc


def _dig(record: dict[str, Any], parts: tuple[str, ...]) -> Any:
    node: Any = record
    for part in parts:
        if type(node) is not dict:
            return None
        node = node.get(part)
        if node is None:
            return None
    return node


def _upsert_body(fields: dict[str, Any]) -> str:
    """``{"doc": fields, "doc_as_upsert": true}`` as compact JSON.

    Written out by hand because ``JSONEncoder.encode`` builds a new C encoder on every call, which
    cost more than the rest of a record's parsing; any value that is not a plain string or integer
    goes through the standard encoder.
    """
    parts = []
    for key, value in fields.items():
        kind = type(value)
        if kind is str:
            parts.append(f"{_quote(key)}:{_quote(value)}")
        elif kind is int:
            parts.append(f"{_quote(key)}:{value}")
        else:
            parts.append(f"{_quote(key)}:{_COMPACT.encode(value)}")
    return '{"doc":{' + ",".join(parts) + '},"doc_as_upsert":true}'
