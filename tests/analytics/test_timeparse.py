"""Times as users type them: durations ago, now, ISO-8601; and the previous window."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipelines.analytics.timeparse import TimeParseError, Window, iso, parse_duration, parse_time

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("90m", timedelta(minutes=90)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    """Each unit parses to its exact length."""
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("24h", NOW - timedelta(hours=24)),
        ("2026-11-22T06:00:00Z", datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)),
        ("2026-11-22T07:00:00+01:00", datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)),
        ("2026-11-22 06:00", datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)),
    ],
)
def test_times(text: str, expected: datetime) -> None:
    """Relative times count back from the given now; naive ISO times are UTC."""
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "24", "h", "-3h", "0m", "2026-13-01"])
def test_unparseable(text: str) -> None:
    """Anything else is refused with the text quoted."""
    with pytest.raises(TimeParseError, match=repr(text).replace("(", r"\(")):
        parse_time(text, now=NOW)


def test_window_and_previous() -> None:
    """The previous window has the same length and ends where the window starts; empty windows are refused."""
    w = Window.parse("6h", None, now=NOW)
    assert (w.start, w.end) == (NOW - timedelta(hours=6), NOW)
    assert w.previous() == Window(NOW - timedelta(hours=12), NOW - timedelta(hours=6))
    assert iso(w.start) == "2026-11-22T06:00:00.000Z"
    with pytest.raises(TimeParseError, match="the window is empty"):
        Window.parse("1h", "2h", now=NOW)
