"""Times a user types: ``24h``, ``90m``, ``7d``, ``now``, or an ISO-8601 instant.

Relative times count back from one ``now`` chosen by the caller, so a report's window and its previous
window are computed from the same instant and are exactly the same length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Final

_UNITS: Final[dict[str, timedelta]] = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
}
_DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


class TimeParseError(ValueError):
    """The text is neither a duration (``24h``) nor an ISO-8601 time; the message names it."""


def parse_duration(text: str) -> timedelta:
    """``"24h"`` -> 24 hours. Units: s, m, h, d, w."""
    match = _DURATION.match(text)
    if match is None:
        raise TimeParseError(f"unparseable duration {text!r} (use e.g. 30m, 24h, 7d)")
    amount = float(match.group(1))
    if amount <= 0:
        raise TimeParseError(f"duration {text!r} must be positive")
    return amount * _UNITS[match.group(2)]


def parse_time(text: str, *, now: datetime) -> datetime:
    """An instant from ``now``, a duration ago (``24h``), or ISO-8601 (naive means UTC)."""
    stripped = text.strip()
    if stripped.lower() == "now":
        return now
    if _DURATION.match(stripped):
        return now - parse_duration(stripped)
    try:
        value = datetime.fromisoformat(stripped.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeParseError(
            f"unparseable time {text!r} (use a duration like 24h, 'now', or ISO-8601 like 2026-11-22T06:00:00Z)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open time range ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise TimeParseError(f"the window is empty: {iso(self.start)} is not before {iso(self.end)}")

    @property
    def length(self) -> timedelta:
        return self.end - self.start

    def previous(self) -> Window:
        """The window of the same length that ends where this one starts."""
        return Window(self.start - self.length, self.start)

    @classmethod
    def parse(cls, since: str, until: str | None = None, *, now: datetime) -> Window:
        """The window from ``--since`` / ``--until`` (default: now) as a user types them."""
        return cls(parse_time(since, now=now), parse_time(until, now=now) if until else now)


def iso(t: datetime) -> str:
    """UTC ISO-8601 with milliseconds and ``Z``, the form Elasticsearch range queries get."""
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
