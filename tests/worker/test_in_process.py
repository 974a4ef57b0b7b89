"""celery-logs inside one process: real Celery task execution (``apply``), context isolation, fault barrier."""

from __future__ import annotations

import datetime
import io
import itertools
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from celery import Celery

import celery_logs


class TTYBuffer(io.StringIO):
    """A text buffer that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _info_logging() -> Iterator[None]:
    """Logging configured at INFO, as an application's would be (pytest's own handlers sit on the root,
    so install() leaves the root level alone here, as it does wherever logging is configured)."""
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(saved)


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("inproc", broker="memory://")
    app.conf.update(celery_logs_environment="unit", task_store_eager_result=False)
    yield app
    app.close()


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    text = buf.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def test_context_does_not_leak_into_the_next_task(app: Celery) -> None:
    """Labels, task ids and structlog context bound during one task are gone in the next one."""
    buf = io.StringIO()
    celery_logs.install(app, service="inproc", stream=buf)
    log = logging.getLogger("inproc.tasks")

    @app.task(name="inproc.first")
    def first() -> None:
        celery_logs.bind_labels(tenant="acme")
        structlog.contextvars.bind_contextvars(request_id="r-1")
        log.info("in first")

    @app.task(name="inproc.second")
    def second() -> None:
        log.info("in second")

    first_id = first.apply().id
    second_id = second.apply().id
    log.info("outside")
    by_message = {r["message"]: r for r in lines(buf) if r["event"]["dataset"] == "celery.app"}
    assert by_message["in first"]["labels"] == {"tenant": "acme"}
    assert by_message["in first"]["request_id"] == "r-1"
    assert by_message["in first"]["celery"]["task"]["id"] == first_id
    assert "labels" not in by_message["in second"]
    assert "request_id" not in by_message["in second"]
    assert by_message["in second"]["celery"]["task"] == {
        "id": second_id, "name": "inproc.second", "root_id": second_id, "retries": 0,
    }
    assert "celery" not in by_message["outside"]
    assert "labels" not in by_message["outside"]
    assert "trace" not in by_message["outside"]


def test_failing_processor_never_changes_the_task_outcome(app: Celery, capsys: pytest.CaptureFixture[str]) -> None:
    """A processor that raises costs records, not the task: the result stands, the fault is counted, said once."""
    buf = io.StringIO()

    def boom(record: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("processor exploded")

    celery_logs.install(app, service="inproc", stream=buf, processors=[boom])

    @app.task(name="inproc.add")
    def add(x: int, y: int) -> int:
        logging.getLogger("inproc").info("adding")
        return x + y

    assert add.apply((2, 3)).get() == 5
    assert add.apply((4, 5)).get() == 9
    assert celery_logs.fault_count() >= 4
    err = capsys.readouterr().err
    assert err.count("celery-logs: logging fault") == 1
    assert "RuntimeError: processor exploded" in err
    assert buf.getvalue() == ""


def test_unrepresentable_values_are_rendered_not_raised(app: Celery) -> None:
    """Arguments and labels whose repr/str raise still give whole records, and the task succeeds."""

    class Hostile:
        def __repr__(self) -> str:
            raise ValueError("no repr")

        def __str__(self) -> str:
            raise ValueError("no str")

    buf = io.StringIO()
    celery_logs.install(app, service="inproc", stream=buf)

    @app.task(name="inproc.hostile")
    def hostile(value: object) -> str:
        celery_logs.bind_labels(thing=Hostile())
        structlog.get_logger("inproc").info("with hostile", payload=Hostile(), nan=float("nan"))
        return "done"

    # pytest's own capture handler would stringify the hostile value and raise; a worker has none of it.
    root = logging.getLogger()
    others = list(root.handlers)
    for handler in others:
        root.removeHandler(handler)
    try:
        assert hostile.apply((Hostile(),)).get() == "done"
    finally:
        for handler in others:
            root.addHandler(handler)
    assert celery_logs.fault_count() == 0
    records = lines(buf)
    succeeded = next(r for r in records if r["event"].get("action") == "task-succeeded")
    assert succeeded["labels"] == {"thing": "<unrepresentable Hostile>"}
    line = next(r for r in records if r["message"] == "with hostile")
    assert line["payload"] == "<unrepresentable Hostile>"
    assert line["nan"] == "nan"


def test_eager_failure_record_and_results_opt_in(app: Celery) -> None:
    """A failing task gets error fields; with log_results the success record carries a bounded result."""
    buf = io.StringIO()
    celery_logs.install(app, service="inproc", stream=buf, log_results=True, max_value_chars=64)

    @app.task(name="inproc.fails")
    def fails() -> None:
        raise ValueError("bad value 17")

    @app.task(name="inproc.big")
    def big() -> dict[str, str]:
        return {"token": "t0p", "data": "y" * 1000}

    fails.apply()
    big.apply()
    records = lines(buf)
    failed = next(r for r in records if r["event"].get("action") == "task-failed")
    assert failed["error"]["type"] == "ValueError"
    assert failed["error"]["message"] == "bad value 17"
    assert failed["event"]["outcome"] == "failure"
    result = next(r for r in records if r["event"].get("action") == "task-succeeded")["celery"]["task"]["result"]
    assert result.startswith("{'token': '[REDACTED]', 'data': 'yyy")
    assert len(result) == 64


def test_console_rendering_on_a_terminal(app: Celery) -> None:
    """console=True renders human lines on a TTY (and JSON anywhere else)."""
    tty = TTYBuffer()
    celery_logs.install(app, service="inproc", stdout=True, console=True, stream=tty)
    logging.getLogger("inproc").warning("look at this")
    out = tty.getvalue()
    assert "look at this" in out
    assert not out.lstrip().startswith("{")
    celery_logs.reset()
    plain = io.StringIO()
    celery_logs.install(app, service="inproc", stdout=True, console=True, stream=plain)
    logging.getLogger("inproc").warning("look at this")
    assert json.loads(plain.getvalue())["message"] == "look at this"


def test_published_records_stamp_headers_and_trace(app: Celery) -> None:
    """task-published stamps the publish time and the caller's trace id into the message headers."""
    buf = io.StringIO()
    celery_logs.install(app, service="web", stream=buf)
    seen: dict[str, Any] = {}

    def capture(headers: dict[str, Any] | None = None, **_: Any) -> None:
        seen.update(headers or {})

    from celery import signals

    signals.after_task_publish.connect(capture, weak=False)
    try:
        with celery_logs.trace_context("req-42"), app.connection_for_write() as conn:
            app.send_task("inproc.remote", args=(1,), connection=conn)
    finally:
        signals.after_task_publish.disconnect(capture)
    assert seen[celery_logs.HEADER_TRACE_ID] == "req-42"
    assert isinstance(seen[celery_logs.HEADER_PUBLISHED_NS], int)
    (record,) = lines(buf)
    assert record["event"]["action"] == "task-published"
    assert record["trace"] == {"id": "req-42"}
    assert record["service"] == {"name": "web", "environment": "unit"}


def test_python_json_logger_formatter_gives_the_same_records(app: Celery) -> None:
    """celery_logs.JsonFormatter on a hand-made handler writes schema records with the task context."""
    celery_logs.install(app, service="inproc", stream=io.StringIO())
    own = io.StringIO()
    handler = logging.StreamHandler(own)
    handler.setFormatter(celery_logs.JsonFormatter())
    logger = logging.getLogger("inproc.dictconfig")
    logger.addHandler(handler)
    try:

        @app.task(name="inproc.formatted")
        def formatted() -> None:
            celery_logs.bind_labels(tenant="t1")
            logger.warning("from %s", "dictconfig", extra={"order_id": 7, "password": "x"})

        task_id = formatted.apply().id
    finally:
        logger.removeHandler(handler)
    record = json.loads(own.getvalue())
    assert record["message"] == "from dictconfig"
    assert record["log"] == {"logger": "inproc.dictconfig"}
    assert record["log.level"] == "warning"
    assert record["celery"]["task"]["id"] == task_id
    assert record["labels"] == {"tenant": "t1"}
    assert record["order_id"] == 7
    assert record["password"] == "[REDACTED]"
    assert record["service"] == {"name": "inproc", "environment": "unit"}
    assert record["event"]["dataset"] == "celery.app"


def test_fast_path_and_dict_path_give_the_same_records(app: Celery) -> None:
    """task-started/succeeded formatted directly equal what the general record path renders."""

    @app.task(name="inproc.same", bind=True)
    def same(self: Any, x: int) -> int:
        celery_logs.bind_labels(tenant='acme "quoted"\n')
        return x

    def run(**kwargs: Any) -> list[dict[str, Any]]:
        buf = io.StringIO()
        celery_logs.install(app, service="inproc", version="9", stream=buf, log_results=True, **kwargs)
        with celery_logs.trace_context("tr-1"):
            same.apply((3,), task_id="fixed-id", headers={celery_logs.HEADER_PUBLISHED_NS: 1})
            with app.connection_for_write() as conn:
                app.send_task("inproc.same", args=("x" * 5000,), kwargs={"token": "t"}, task_id="pub-id",
                              countdown=5, connection=conn)
        celery_logs.reset()
        records = [r for r in lines(buf) if r["event"]["dataset"] == "celery.task"]
        for r in records:
            r["event"].pop("id")
            for key in ("@timestamp",):
                r.pop(key)
            for key in ("start", "end", "duration"):
                r["event"].pop(key, None)
            r["celery"].pop("queue_wait", None)
            eta = r["celery"]["task"].pop("eta", None)
            if eta is not None:
                r["eta_is_iso"] = eta.endswith("Z")
            r["message"] = r["message"].split(" after ")[0]
        return records

    fast = run()
    general = run(processors=[lambda record: record])
    assert [r["event"]["action"] for r in fast] == ["task-started", "task-succeeded", "task-published"]
    assert fast == general
    assert fast[2]["celery"]["task"]["kwargs"] == "{'token': '[REDACTED]'}"
    assert fast[2]["eta_is_iso"] is True
    assert fast[1]["celery"]["task"]["result"] == "3"
    assert fast[1]["labels"] == {"tenant": 'acme "quoted"\n'}


class _Clock:
    """Stands in for the ``time`` module in the lifecycle code: every reading is 1.234567 ms after the last."""

    def __init__(self) -> None:
        self._ns = itertools.count(1_795_000_000_000_000_000, 1_234_567)

    def time_ns(self) -> int:
        return next(self._ns)

    def monotonic_ns(self) -> int:
        return next(self._ns)

    def time(self) -> float:
        return next(self._ns) / 1e9


def test_fast_path_lines_are_byte_identical_to_the_record_path(app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    """The four per-task records, formatted directly, are the very bytes the record path renders."""
    from celery.app.trace import build_tracer
    from celery.contrib.testing.mocks import TaskMessage
    from celery.worker.request import Request

    from celery_logs import _lifecycle, _runtime

    def fake_id(now: int) -> str:
        return f"id-{now}"

    monkeypatch.setattr(_lifecycle, "_next_event_id", fake_id)
    monkeypatch.setattr(_runtime, "event_id", fake_id)

    @app.task(name="inproc.bytes\u00e9\u2028", bind=True)
    def odd(self: Any, x: Any) -> dict[str, Any]:
        celery_logs.bind_labels(tenant='acme "quoted"\n', api_token="s")
        return {"x": x, "password": "p"}

    def run(**kwargs: Any) -> list[str]:
        monkeypatch.setattr(_lifecycle, "time", _Clock())
        buf = io.StringIO()
        celery_logs.install(app, service="in proc", version="9", stream=buf, **kwargs)
        # The worker's own execution function, with a request as a worker builds it from a message.
        trace = build_tracer(odd.name, odd, app=app, eager=True, propagate=True)
        trace("run-1", (3,), {}, {
            "id": "run-1", "root_id": "root-1", "parent_id": "par-1", "group": "grp-1", "retries": 2,
            "hostname": "w1@h\u00e9", "is_eager": False, celery_logs.HEADER_TRACE_ID: "tr-\u00e9",
            celery_logs.HEADER_PUBLISHED_NS: 1_795_000_000_000_000_000,
            "delivery_info": {"exchange": "ex", "routing_key": "rk", "priority": 0, "redelivered": False},
        })
        odd.apply(("y",), task_id="run-2")
        with celery_logs.trace_context("pub-trace"), app.connection_for_write() as conn:
            app.send_task("inproc.bytes\u00e9\u2028", args=("x" * 5000,), kwargs={"token": "t"}, task_id="pub-1",
                          eta=datetime.datetime(2030, 1, 1, 12, 0, 0, 123456),
                          expires=datetime.datetime(2030, 1, 2, tzinfo=datetime.timezone.utc),
                          exchange='ex"', routing_key="rk", connection=conn)
        message = TaskMessage("inproc.bytes\u00e9\u2028", id="recv-1", args=(1, 2), kwargs={"password": "x"},
                              eta="2030-01-01T00:00:00+00:00", root_id="root-9", parent_id="par-9", group="g-9")
        message.delivery_info = {"exchange": "exch", "routing_key": "celery", "priority": 0, "redelivered": False}
        _lifecycle._task_received(sender=None, request=Request(message, app=app, hostname="w@h\u00e9", task=odd))
        celery_logs.reset()
        return [line for line in buf.getvalue().splitlines(keepends=True) if '"dataset":"celery.task"' in line]

    fast = run(log_results=True)
    general = run(log_results=True, processors=[lambda record: record])
    actions = [json.loads(line)["event"]["action"] for line in fast]
    assert actions == ["task-started", "task-succeeded"] * 2 + ["task-published", "task-received"]
    assert fast == general
    assert fast[0].startswith(
        '{"@timestamp":"2026-11-18T11:06:40.001234Z","log.level":"info","message":"task started: inproc.'
    )
    assert json.loads(fast[1])["celery"]["task"] == {
        "id": "run-1", "name": "inproc.bytes\u00e9\u2028", "root_id": "root-1", "parent_id": "par-1",
        "group_id": "grp-1", "retries": 2, "state": "SUCCESS", "result": "{'x': 3, 'password': '[REDACTED]'}",
    }


def test_celery_per_task_info_lines_are_off_unless_asked(app: Celery, caplog: pytest.LogCaptureFixture) -> None:
    """Celery's 'Task ... succeeded' lines stay out of our output by default (kept on request) and still
    reach every other handler."""

    @app.task(name="inproc.quiet")
    def quiet() -> None:
        return None

    def trace_lines(**kwargs: Any) -> list[str]:
        buf = io.StringIO()
        celery_logs.install(app, service="inproc", stream=buf, **kwargs)
        caplog.clear()
        quiet.apply()
        celery_logs.reset()
        (theirs,) = [r.getMessage() for r in caplog.records if r.name == "celery.app.trace"]
        assert " succeeded in " in theirs
        return [r["message"] for r in lines(buf) if r["log"]["logger"] == "celery.app.trace"]

    assert trace_lines() == []
    (kept,) = trace_lines(celery_task_lines=True)
    assert kept.startswith("Task inproc.quiet[") and " succeeded in " in kept
    # A filter on our handler, not a logger level: every other handler still gets Celery's lines.
    assert logging.getLogger("celery.app.trace").level == logging.NOTSET


def test_a_publish_that_fails_writes_no_task_published_record() -> None:
    """A message the broker never took leaves no task-published record; the error reaches the caller."""
    from kombu.exceptions import OperationalError

    from pipelines.dev.stack import free_port

    app = Celery("inproc-down", broker=f"redis://127.0.0.1:{free_port()}/0")
    app.conf.update(broker_connection_retry=False, broker_connection_timeout=2)
    buf = io.StringIO()
    celery_logs.install(app, service="web", stream=buf)
    try:
        with pytest.raises(OperationalError):
            app.send_task("inproc.remote", args=(1,), retry=False)
    finally:
        app.close()
    assert buf.getvalue() == ""
    assert celery_logs.fault_count() == 0


def test_task_published_is_stamped_when_the_publish_began(app: Celery) -> None:
    """The record is written once the broker took the message, with the time stamped in its headers."""
    buf = io.StringIO()
    celery_logs.install(app, service="web", stream=buf)
    seen: dict[str, Any] = {}

    def capture(headers: dict[str, Any] | None = None, **_: Any) -> None:
        seen["written_before"] = buf.getvalue()
        seen.update(headers or {})

    from celery import signals

    signals.before_task_publish.connect(capture, weak=False)
    try:
        with app.connection_for_write() as conn:
            app.send_task("inproc.remote", connection=conn)
    finally:
        signals.before_task_publish.disconnect(capture)
    assert seen["written_before"] == ""
    (record,) = lines(buf)
    ns = seen[celery_logs.HEADER_PUBLISHED_NS]
    stamped = datetime.datetime.fromtimestamp(ns // 10**9, tz=datetime.timezone.utc).replace(
        microsecond=ns % 10**9 // 1000
    )
    assert record["@timestamp"] == stamped.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
