"""Our lines against the ecs-logging spec (elastic/ecs-logging spec/spec.json) and ECS 8.11's field types."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

import celery_logs
from celery_logs._ecs_names import LEAVES, OBJECTS

#: The rules of spec/spec.json (ecs-logging 1.0) that apply to every line, as data.
SPEC_ORDER = ("@timestamp", "log.level", "message")
SPEC_TOP_LEVEL_DOTTED = ("log.level", "ecs.version")
SPEC_REQUIRED = ("@timestamp", "log.level", "ecs.version")
SPEC_LABEL_KEY_FORBIDDEN = (".", "*", "\\")


@pytest.fixture(autouse=True)
def _info_logging() -> Iterator[None]:
    """Logging configured at INFO, as an application's would be."""
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.INFO)
    yield
    root.setLevel(saved)


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("ecs", broker="memory://")
    app.conf.update(task_store_eager_result=False)
    yield app
    app.close()


def _lines(buf: io.StringIO) -> list[tuple[str, dict[str, Any]]]:
    return [(line, json.loads(line)) for line in buf.getvalue().splitlines()]


def _flat(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict) and key != "labels":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_spec(line: str, record: dict[str, Any]) -> None:
    """Every rule of the spec a line can break, checked on the line's text and its parsed object."""
    keys = list(record)
    assert keys[: len(SPEC_ORDER)] == list(SPEC_ORDER), line[:120]
    assert line.startswith('{"@timestamp":'), line[:40]
    for name in SPEC_TOP_LEVEL_DOTTED:
        assert name in record, name
        assert name.split(".")[0] not in record or name.split(".")[1] not in record[name.split(".")[0]]
    for name in SPEC_REQUIRED:
        assert record[name], name
    for key in record.get("labels", {}):
        assert not any(c in key for c in SPEC_LABEL_KEY_FORBIDDEN), key
        assert not isinstance(record["labels"][key], (dict, list)), key
    # No value fights ECS 8.11's mapping: objects where ECS has objects, scalars where it has scalars.
    for name, value in _flat(record).items():
        if name in LEAVES:
            assert not isinstance(value, dict), name
        parts = name.split(".")
        for i in range(1, len(parts)):
            assert ".".join(parts[:i]) not in LEAVES, f"{name} is below the ECS scalar {'.'.join(parts[:i])}"
        if name in OBJECTS:
            assert isinstance(value, dict), name


def test_every_kind_of_line_follows_the_spec(app: Celery) -> None:
    """Lifecycle records (fast and record paths), a failure, user lines with extras: all pass the spec's rules."""
    buf = io.StringIO()
    celery_logs.install(app, service="ecs", stream=buf)
    log = celery_logs.get_logger("ecs.tasks")

    @app.task(name="ecs.ok")
    def ok() -> None:
        celery_logs.bind_labels(**{"tenant": "acme", "event.category": "web", "a*b\\c": 1})
        log.info("with extras", user={"id": 7, "name": "bob", "roles": ["admin"], "password": "p"}, http="x",
                 url={"full": "https://example.test/a", "port": 443}, order_id=42, cart={"items": 3},
                 **{"user.name.first": "b", "event.category": "web", "container": {"labels": {"app": "shop"}}})

    @app.task(name="ecs.bad")
    def bad() -> None:
        raise KeyError("k")

    ok.apply()
    bad.apply()
    app.send_task("ecs.ok")
    lines = _lines(buf)
    assert {r["event"].get("action") for _, r in lines} >= {"task-started", "task-succeeded", "task-failed",
                                                             "task-published", None}
    for line, record in lines:
        check_spec(line, record)
    assert celery_logs.fault_count() == 0


def test_extras_named_after_ecs_objects_never_land_on_the_ecs_name(app: Celery) -> None:
    """Dicts go out as JSON objects (redacted, bounded); scalars where ECS has an object go under labels;
    label keys lose their dots."""
    buf = io.StringIO()
    celery_logs.install(app, service="ecs", stream=buf)
    celery_logs.bind_labels(**{"event.category": "bound"})
    celery_logs.get_logger("ecs").info(
        "extras", user={"id": 1, "name": "bob", "password": "p", "plan": "gold"}, http="x",
        url={"full": "https://example.test/a", "port": 443}, order_id=42, cart={"items": 3, "token": "t"},
        container={"labels": {"app": "shop"}}, user_agent={"original": {"not": "a string"}},
        **{"user.name.first": "b", "event.category": "web", "client.ip": "10.0.0.1"},
    )
    (record,) = [r for _, r in _lines(buf)]
    assert record["user"] == {"id": 1, "name": "bob", "password": "[REDACTED]", "plan": "gold"}
    assert record["url"] == {"full": "https://example.test/a", "port": 443}
    assert record["client"] == {"ip": "10.0.0.1"}
    assert record["container"] == {"labels": {"app": "shop"}}
    assert record["order_id"] == 42
    assert record["cart"] == {"items": 3, "token": "[REDACTED]"}
    assert "http" not in record and "user_agent" not in record
    assert record["labels"] == {
        "event_category": "web",  # the extra replaces the bound label of the same name
        "http": "x",
        "user_agent_original": "{'not': 'a string'}",
        "user_name_first": "b",
    }
    assert record["event"] == {"id": record["event"]["id"], "kind": "event", "dataset": "celery.app"}


def test_an_extra_dict_is_bounded(app: Celery) -> None:
    """A huge or deep dict costs a bounded number of fields; the rest is said to be left out, under labels."""
    buf = io.StringIO()
    celery_logs.install(app, service="ecs", stream=buf, max_value_chars=50)
    deep: dict[str, Any] = {"v": 1}
    for _ in range(10):
        deep = {"d": deep}
    celery_logs.get_logger("ecs").info("big", cart={f"k{i}": "x" * 100 for i in range(200)}, deep=deep)
    (record,) = [r for _, r in _lines(buf)]
    assert len(record["cart"]) == 64
    assert all(len(v) == 50 for v in record["cart"].values())
    assert record["labels"]["cart"] == "[more members left out]"
    assert record["labels"]["deep_d_d_d_d_d_d"].startswith("{'d': {'d': {'d': {'d': {'v': 1}}}}")
