"""How celery-logs hears log lines: wrapping ``Logger.callHandlers``, on no logger, changing no level."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

import celery_logs
from celery_logs import _stdlib


def _messages(buf: io.StringIO) -> list[str]:
    return [json.loads(line)["message"] for line in buf.getvalue().splitlines()]


@pytest.fixture
def app() -> Iterator[Celery]:
    """A Celery app with an in-memory broker."""
    app = Celery("tap", broker="memory://")
    yield app
    app.close()


def test_install_adds_no_handler_and_changes_no_level(app: Celery) -> None:
    """Handlers and levels of the root and celery.task loggers are the same after install(); lines still arrive."""
    loggers = (logging.getLogger(), logging.getLogger("celery.task"))
    before = [(list(lg.handlers), lg.level, lg.propagate) for lg in loggers]
    buf = io.StringIO()
    celery_logs.install(app, service="tap", stream=buf)
    assert [(list(lg.handlers), lg.level, lg.propagate) for lg in loggers] == before
    logging.getLogger("tap.app").warning("heard")
    assert _messages(buf) == ["heard"]


def test_reset_gives_call_handlers_back(app: Celery) -> None:
    """After reset() the logging module is exactly as before install()."""
    original = logging.Logger.callHandlers
    celery_logs.install(app, service="tap", stream=io.StringIO())
    assert logging.Logger.callHandlers is not original
    celery_logs.reset()
    assert logging.Logger.callHandlers is original


def test_a_library_wrapping_after_us_keeps_both_working(app: Celery) -> None:
    """Another library wrapping callHandlers after install() (as Sentry does) hears every line, and
    celery-logs hears each once, across reset() and a second install()."""
    original = logging.Logger.callHandlers
    seen: list[str] = []
    try:
        first = io.StringIO()
        celery_logs.install(app, service="tap", stream=first)
        ours = logging.Logger.callHandlers

        def other(self: logging.Logger, record: logging.LogRecord) -> Any:
            seen.append(record.getMessage())
            return ours(self, record)

        logging.Logger.callHandlers = other  # type: ignore[method-assign]
        logging.getLogger("tap.app").warning("one")
        celery_logs.reset()
        logging.getLogger("tap.app").warning("two")
        second = io.StringIO()
        celery_logs.install(app, service="tap", stream=second)
        logging.getLogger("tap.app").warning("three")
        assert (seen, _messages(first), _messages(second)) == (["one", "two", "three"], ["one"], ["three"])
    finally:
        celery_logs.reset()
        logging.Logger.callHandlers = original  # type: ignore[method-assign]
        _stdlib._tap.wrapped = False


def test_a_line_logged_while_ours_is_written_is_not_written_again(app: Celery) -> None:
    """A processor that logs does not make celery-logs write its own line again (no recursion, no fault)."""
    inner = logging.getLogger("tap.processor")

    def chatty(record: dict[str, Any]) -> dict[str, Any]:
        inner.warning("processing %s", record.get("message"))
        return record

    buf = io.StringIO()
    celery_logs.install(app, service="tap", stream=buf, processors=[chatty])
    logging.getLogger("tap.app").warning("outer")
    assert _messages(buf) == ["outer"]
    assert celery_logs.fault_count() == 0


def test_only_lines_that_reach_the_root_or_celery_task_are_recorded(app: Celery) -> None:
    """A logger that keeps its lines to itself (propagate False) stays out; celery.task's children are in."""
    private = logging.getLogger("tap.private")
    task_logger = logging.getLogger("celery.task")
    kept: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            kept.append(record.getMessage())

    keep = Keep()
    private.addHandler(keep)
    private.propagate = task_logger.propagate = False
    try:
        buf = io.StringIO()
        celery_logs.install(app, service="tap", stream=buf)
        private.warning("private")
        logging.getLogger("celery.task.tap.job").warning("task line")
        logging.getLogger("tap.app").warning("app line")
        assert (kept, _messages(buf)) == (["private"], ["task line", "app line"])
    finally:
        private.removeHandler(keep)
        private.propagate = task_logger.propagate = True
