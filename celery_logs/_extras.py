"""Where a log line's extra fields go, so that no value ever fights ECS's mapping of its name.

An index that maps ECS (ours, Filebeat's, Elastic Agent's) has an object at ``user`` and a keyword at
``user.name``; a string at ``user`` or an object at ``user.name`` is a mapping conflict that costs the
whole document. So, for an extra field ``key=value``:

* a name the record itself owns (``event``, ``log``, ``celery``, ...): under ``labels``;
* a name in ECS (8.11): a scalar where ECS has a scalar goes there; a dict where ECS has an object goes
  out as a JSON object whose members are placed by these same rules; anything else (a scalar where ECS
  has an object, a dict where it has a scalar) goes under ``labels``, never onto the ECS name;
* any other name: as given, dicts as JSON objects.

Every value is bounded and secret-looking keys are redacted at any depth. Label keys are sanitised as the
ecs-logging spec says (``.``, ``*`` and ``\\`` become ``_``).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any, Final

from ._context import label_key
from ._encode import set_path, truncate
from ._runtime import Runtime

#: Top-level names the record writes itself: an extra never replaces them.
OURS: Final = frozenset(
    {"@timestamp", "message", "log", "log.level", "event", "ecs", "ecs.version", "service", "host", "process",
     "trace", "error", "celery", "celery_logs", "labels", "tags"}
)
#: ECS 8.11's field sets (the first part of every ECS name); the full list is loaded only when needed.
ECS_ROOTS: Final = frozenset(
    {"agent", "client", "cloud", "container", "data_stream", "destination", "device", "dll", "dns", "email",
     "faas", "file", "group", "http", "network", "observer", "orchestrator", "organization", "package",
     "registry", "related", "rule", "server", "source", "span", "threat", "tls", "transaction", "url", "user",
     "user_agent", "vulnerability"}
)
#: How many members of one extra are written, and how deep, before the rest goes to ``labels`` as text.
MAX_MEMBERS: Final = 64
MAX_DEPTH: Final = 6
_SCALARS: Final = (str, int, float, bool, type(None))
@cache
def _ecs() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(scalar fields, object fields, names with ECS fields below them) of ECS 8.11."""
    from ._ecs_names import LEAVES, OBJECTS

    parents = {name[:i] for name in LEAVES | OBJECTS for i, c in enumerate(name) if c == "."}
    return LEAVES, OBJECTS, frozenset(parents)


class _Placer:
    """Places one extra field (and, for a dict, each of its members) into a record and its labels."""

    __slots__ = ("budget", "labels", "limit", "record", "runtime")

    def __init__(self, runtime: Runtime, record: dict[str, Any], labels: dict[str, Any]) -> None:
        self.runtime = runtime
        self.record = record
        self.labels = labels
        self.limit = runtime.settings.max_value_chars
        self.budget = MAX_MEMBERS

    def scalar(self, value: Any) -> Any:
        return truncate(value, self.limit) if isinstance(value, str) else value

    def text(self, value: Any) -> Any:
        """A value for ``labels`` (keyword): scalars as they are, anything else as its bounded repr."""
        return self.scalar(value) if isinstance(value, _SCALARS) else self.runtime.redactor.repr(value)

    def to_label(self, key: str, value: Any) -> None:
        self.labels[label_key(key)] = self.text(value)

    def place(self, key: str, value: Any, depth: int = 0) -> None:
        if self.runtime.redactor.is_secret(key):
            value = "[REDACTED]"
        root = key.split(".", 1)[0]
        if root in OURS:
            self.to_label(key, value)
        elif root in ECS_ROOTS:
            self._ecs(key, value, depth)
        else:
            self._free(key, value, depth)

    def _members(self, key: str, value: Mapping[Any, Any], depth: int) -> None:
        if depth >= MAX_DEPTH:
            self.to_label(key, value)
            return
        for sub, member in value.items():
            if self.budget <= 0:
                self.to_label(key, "[more members left out]")
                return
            self.budget -= 1
            self.place(f"{key}.{sub}", member, depth + 1)

    def _ecs(self, key: str, value: Any, depth: int) -> None:
        leaves, objects, parents = _ecs()
        if key in objects:
            if isinstance(value, Mapping):
                self._members(key, value, depth)
            else:
                self.to_label(key, value)
        elif key in leaves:
            if isinstance(value, _SCALARS):
                set_path(self.record, key, self.scalar(value))
            elif isinstance(value, (list, tuple)) and all(isinstance(v, _SCALARS) for v in value):
                set_path(self.record, key, [self.scalar(v) for v in value[:MAX_MEMBERS]])
            else:
                self.to_label(key, value)
        elif key in parents:
            if isinstance(value, Mapping):
                self._members(key, value, depth)
            else:
                self.to_label(key, value)
        elif any(key[:i] in leaves for i, c in enumerate(key) if c == "."):
            self.to_label(key, value)  # below a scalar ECS field (`user.name.first`): no object can go there
        else:
            self._free(key, value, depth)  # a name of its own under an ECS object (`user.plan`)

    def _free(self, key: str, value: Any, depth: int) -> None:
        if isinstance(value, Mapping):
            self._members(key, value, depth)
        elif isinstance(value, _SCALARS):
            set_path(self.record, key, self.scalar(value))
        else:
            set_path(self.record, key, self.runtime.redactor.repr(value))


def place_extras(runtime: Runtime, record: dict[str, Any], labels: dict[str, Any], extras: Mapping[Any, Any]) -> None:
    """Put a log line's extra fields into ``record`` (and ``labels``) by the rules above."""
    for raw_key, value in extras.items():
        _Placer(runtime, record, labels).place(str(raw_key), value)
