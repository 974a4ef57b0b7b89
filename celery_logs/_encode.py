"""Turning a record into one line: event ids, timestamps, bounded reprs and the JSON rendering.

Everything here runs on the hot path of every task, so it avoids ``datetime`` and ``uuid`` objects and
works on integers and pre-built strings.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
from collections.abc import Mapping
from json.encoder import encode_basestring_ascii as _encode_basestring_ascii
from typing import Any, Final

from . import _process

#: The hex digits of one and of two nibbles, looked up by value for the sub-millisecond part of event ids.
_HEX_DIGITS: Final = "0123456789abcdef"
_HEX_PAIRS: Final = tuple(f"{i:02x}" for i in range(256))


class _EventIds:
    """UUIDv7 layout (RFC 9562): 48-bit Unix milliseconds, then 12 bits of sub-millisecond time.

    The sub-millisecond bits (method 3 of the RFC) keep ids from different processes in time order to
    about a quarter of a microsecond; within one process a counter keeps them strictly increasing.
    The 62 random bits come from a generator re-seeded after a fork, so children never repeat a parent.
    """

    __slots__ = ("_last", "_lock", "_ms", "_ms_hex", "_pid", "_rng")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0
        self._pid = -1
        self._rng = random.Random()  # noqa: S311 - uniqueness, not secrecy
        # The id's first 13 hex digits (and its version digit) change once a millisecond: formatted once.
        self._ms = -1
        self._ms_hex = ""

    def next(self, now_ns: int) -> str:
        with self._lock:
            if _process._state["pid"] != self._pid:  # a method call per id costs more than the id itself
                self._reseed_after_fork()
            stamp = ((now_ns // 1_000_000) << 12) | ((now_ns % 1_000_000) * 4096 // 1_000_000)
            if stamp <= self._last:
                stamp = self._last + 1
            self._last = stamp
            rand = self._rng.getrandbits(62)
            ms = stamp >> 12
            if ms != self._ms:
                self._ms_hex = f"{ms >> 16:08x}-{ms & 0xFFFF:04x}-7"
                self._ms = ms
            prefix = self._ms_hex
        # The 12 sub-millisecond bits as three hex digits from tables (a format spec costs more than the
        # lookups); the variant bits (0b10) above the 62 random ones, as the last two groups in one C call:
        # cheaper than building the whole 128-bit integer and slicing its 32 digits.
        sub = stamp & 0xFFF
        return (f"{prefix}{_HEX_DIGITS[sub >> 8]}{_HEX_PAIRS[sub & 0xFF]}-"
                f"{(rand | 0x8000000000000000).to_bytes(8, 'big').hex('-', 6)}")

    def random_hex(self) -> str:
        """128 random bits as 32 hex digits (a new trace id), without a system call."""
        with self._lock:
            if _process._state["pid"] != self._pid:
                self._reseed_after_fork()
            bits = self._rng.getrandbits(128)
        return bits.to_bytes(16, "big").hex()  # the 32 digits of f"{bits:032x}", about twice as fast

    def after_fork(self) -> None:
        """In a forked child: a parent thread may have held the lock at fork time; never wait on it."""
        self._lock = threading.Lock()

    def _reseed_after_fork(self) -> None:
        pid = _process.pid()
        if pid != self._pid:
            self._pid = pid
            self._rng.seed(os.urandom(16))
            self._last = 0


_IDS = _EventIds()


def after_fork() -> None:
    """Make the id generator usable in a forked child (registered by ``install()``)."""
    _IDS.after_fork()


def new_trace_id() -> str:
    """A fresh random trace id (32 hex digits, the W3C trace-context size)."""
    return _IDS.random_hex()


def event_id(now_ns: int) -> str:
    """A unique, time-ordered id for a record made at ``now_ns`` (``time.time_ns()``)."""
    return _IDS.next(now_ns)


#: :func:`event_id` without the wrapper call, for the per-task fast path (``after_fork`` keeps ``_IDS``).
next_event_id = _IDS.next


_SECOND_CACHE: list[Any] = [-1, ""]


def iso_timestamp(now_ns: int) -> str:
    """``2026-11-22T10:00:01.123456Z`` for a ``time.time_ns()`` value (UTC, microseconds)."""
    seconds, rest = divmod(now_ns, 1_000_000_000)
    cache = _SECOND_CACHE
    if cache[0] != seconds:
        # Formatting the date part costs more than the rest of a record; it changes once a second.
        cache[1] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        cache[0] = seconds
    return "%s.%06dZ" % (cache[1], rest // 1000)  # noqa: UP031 - the same text as :06d, without parsing a spec


def iso_from_seconds(value: float) -> str:
    """ISO-8601 UTC timestamp for a Unix time in seconds."""
    return iso_timestamp(int(value * 1_000_000_000))


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    marker = f"...[{len(text) - limit} chars truncated]"
    return text[: max(limit - len(marker), 0)] + marker


def truncate_middle(text: str, limit: int) -> str:
    """Keep the head and (mostly) the tail of a long traceback: the last exception matters most."""
    if len(text) <= limit:
        return text
    marker = f"\n...[{len(text) - limit} chars truncated]...\n"
    room = max(limit - len(marker), 0)
    head = room // 4
    return text[:head] + marker + text[len(text) - (room - head) :]


def set_path(record: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested record, creating (or replacing non-object) parents."""
    parts = dotted.split(".")
    node = record
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _fallback(value: Any) -> Any:
    # Called by json for anything it cannot encode: a bounded text form, never an exception.
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return truncate(value.decode("utf-8", "replace"), 2048)
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    try:
        text = str(value)
    except Exception:  # a user object whose __str__ raises must not cost the record
        text = f"<unrepresentable {type(value).__name__}>"
    return truncate(text, 2048)


_ENCODER = json.JSONEncoder(
    # ASCII output: every character outside ASCII (U+2028, NEL, ...) is escaped, so nothing in a
    # value can look like a line break to any reader, and the bytes are valid UTF-8 by construction.
    ensure_ascii=True,
    # Records are built here, not by users; a cycle a user processor adds is caught below instead.
    check_circular=False,
    allow_nan=False,
    separators=(",", ":"),
    default=_fallback,
)


def _sanitize(value: Any, depth: int = 0) -> Any:
    # Slow path only: replaces what strict JSON cannot hold (NaN, infinities, cycles, deep nesting).
    if depth > 32:
        return "<too deep>"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _sanitize(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_sanitize(v, depth + 1) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return _fallback(value)


def encode_str(text: str) -> str:
    """A JSON string literal (quotes included), ASCII-only like every line."""
    return _encode_basestring_ascii(text)


def encode_json(record: Mapping[str, Any]) -> str:
    """The JSON object of a record, on one line, without the newline."""
    try:
        return _ENCODER.encode(record)
    except (ValueError, RecursionError):
        return _ENCODER.encode(_sanitize(record))


def render_json(record: Mapping[str, Any]) -> str:
    """One JSON line (with its ``\\n``) for a record."""
    return encode_json(record) + "\n"


def render_json_with_tail(record: Mapping[str, Any], tail: str) -> str:
    """One JSON line for ``record`` followed by pre-encoded members ``tail`` (``,"k":v...}``)."""
    return encode_json(record)[:-1] + tail + "\n"
