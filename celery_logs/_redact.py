"""Redaction and bounded ``repr`` of task arguments, keyword arguments and results.

The walk never builds the full ``repr`` of a large value: a 5 MB string costs a slice, not a copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

REDACTED: Final = "'[REDACTED]'"

#: Key fragments that mark a value as secret (matched case-insensitively, anywhere in the key).
DEFAULT_REDACT_KEYS: Final = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "session",
    "private_key",
    "credit_card",
)

_MAX_DEPTH: Final = 8
#: Types whose built-in repr is short whatever the value.
_SCALARS: Final = frozenset({int, float, bool, type(None)})
_MAX_ITEMS: Final = 64
#: How many levels of containers :meth:`Redactor.repr` leaves to the built-in ``repr`` (Celery's ``args``
#: of a task called with a tuple or a dict are already two levels).
_FLAT_DEPTH: Final = 3
_CONTAINERS: Final = frozenset({list, tuple, dict})
_VERDICTS_KEPT: Final = 1024


class Redactor:
    """Bounded, redacted ``repr`` of arbitrary values."""

    __slots__ = ("_fragments", "_limit", "_verdicts")

    def __init__(self, *, keys: Iterable[str] = DEFAULT_REDACT_KEYS, limit: int) -> None:
        self._fragments = tuple(sorted({k.lower().replace("-", "_") for k in keys if k}))
        self._limit = limit
        # A worker's tasks use few distinct keyword names, each asked about on every task: remember the
        # answers (bounded, so keys made up per call cannot grow it without end).
        self._verdicts: dict[str, bool] = {}

    def is_secret(self, key: object) -> bool:
        """True when a mapping key looks like it names a secret."""
        if type(key) is not str:  # a str subclass may redefine hashing or lower(): never remembered
            return isinstance(key, str) and self._judge(key)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._judge(key)
            if len(self._verdicts) < _VERDICTS_KEPT:
                self._verdicts[key] = verdict
        return verdict

    def _judge(self, key: str) -> bool:
        low = key.lower().replace("-", "_")
        return any(f in low for f in self._fragments)

    def repr(self, value: Any) -> str:
        """Redacted ``repr`` of ``value``, at most ``limit`` characters."""
        if self._is_flat(value):
            # The common case (a few numbers and short strings): the built-in repr is exact and cheap.
            try:
                text = repr(value)
            except ValueError:  # an int too long to convert; the walk below says so per item
                text = ""
            if text and len(text) <= self._limit:
                return text
        parts: list[str] = []
        self._walk(value, parts, 0, [self._limit + 1])
        text = "".join(parts)
        if len(text) > self._limit:
            marker = "...[truncated]"
            text = text[: self._limit - len(marker)] + marker
        return text

    def _is_flat(self, value: Any) -> bool:
        """Lists, tuples and dicts of scalars and short strings, at most :data:`_FLAT_DEPTH` levels of them, of at
        most :data:`_MAX_ITEMS` items in all, with no secret-looking key: values whose built-in ``repr`` is
        exactly what the walk would write."""
        return self._flat(value, 0, [_MAX_ITEMS])

    def _flat(self, value: Any, depth: int, items: list[int]) -> bool:
        # Asked twice per task (args, kwargs): plain loops, no generator or call per scalar item.
        kind = type(value)
        if kind is dict:
            for k in value:
                if type(k) is not str or self.is_secret(k):
                    return False
            value = value.values()
        elif kind is not list and kind is not tuple:
            return False
        items[0] -= len(value)
        if items[0] < 0:
            return False
        limit = self._limit
        for v in value:
            small = type(v)
            if small in _SCALARS or (small is str and len(v) <= limit):
                continue
            if depth + 1 < _FLAT_DEPTH and small in _CONTAINERS and self._flat(v, depth + 1, items):
                continue
            return False
        return True

    def _walk(self, value: Any, out: list[str], depth: int, budget: list[int]) -> None:
        # `budget` is the characters still wanted; once spent, the rest of the value is skipped.
        if budget[0] <= 0:
            return
        if isinstance(value, (str, bytes, bytearray)):
            piece = repr(value[: budget[0]]) if len(value) > budget[0] else repr(value)
        elif isinstance(value, Mapping) and depth < _MAX_DEPTH:
            out.append("{")
            budget[0] -= 1
            for i, (k, v) in enumerate(value.items()):
                if i:
                    out.append(", ")
                    budget[0] -= 2
                if i >= _MAX_ITEMS or budget[0] <= 0:
                    out.append("...")
                    break
                self._walk(k, out, depth + 1, budget)
                out.append(": ")
                budget[0] -= 2
                if self.is_secret(k):
                    out.append(REDACTED)
                    budget[0] -= len(REDACTED)
                else:
                    self._walk(v, out, depth + 1, budget)
            out.append("}")
            budget[0] -= 1
            return
        elif isinstance(value, (list, tuple, set, frozenset)) and depth < _MAX_DEPTH:
            opener, closer = ("[", "]") if isinstance(value, list) else ("(", ")")
            if isinstance(value, (set, frozenset)):
                opener, closer = "{", "}"
            out.append(opener)
            budget[0] -= 1
            for i, v in enumerate(value):
                if i:
                    out.append(", ")
                    budget[0] -= 2
                if i >= _MAX_ITEMS or budget[0] <= 0:
                    out.append("...")
                    break
                self._walk(v, out, depth + 1, budget)
            if isinstance(value, tuple) and len(value) == 1:
                out.append(",")
            out.append(closer)
            budget[0] -= 1
            return
        else:
            try:
                piece = repr(value)
            except Exception:  # a user object whose __repr__ raises must not cost the record
                piece = f"<unrepresentable {type(value).__name__}>"
        piece = piece[: budget[0]]
        out.append(piece)
        budget[0] -= len(piece)

    def mapping(self, value: Mapping[str, Any]) -> dict[str, Any]:
        """A shallow copy of ``value`` with secret-looking keys redacted and values bounded (for labels)."""
        result: dict[str, Any] = {}
        for k, v in value.items():
            if self.is_secret(k):
                result[str(k)] = "[REDACTED]"
            elif isinstance(v, str):
                result[str(k)] = v if len(v) <= self._limit else v[: self._limit]
            elif isinstance(v, (int, float, bool)) or v is None:
                result[str(k)] = v
            else:
                result[str(k)] = self.repr(v)
        return result
