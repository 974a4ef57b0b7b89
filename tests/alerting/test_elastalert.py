"""The exported rules run in the real ElastAlert 2 against the real node, on histories whose breaches are known.

ElastAlert 2.19.0 runs from its own cached virtual environment (``pipelines.dev.elastalert``). It reaches
the node through a test-only front (``tests/alerting/front.py``) that answers ``GET /`` with the node's
version, because this server build lacks ``rest-root`` (``GET /`` answers 405) and ElastAlert reads the
version there at start-up; every other request passes through unchanged. Alerts go through ElastAlert's
``post`` alerter to a local HTTP receiver. ``realert`` is 0 here, so ElastAlert's wall-clock silencing
cannot hide a rule that fires twice for one breach.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from celery_logs import _schema
from pipelines._setup import install
from pipelines.alerting import RULES
from pipelines.cli import main
from pipelines.dev import DevStackError, ensure_elastalert
from tests.alerting import front as _front
from tests.alerting.histories import History, aligned_start, build

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

pytestmark = pytest.mark.integration

DRIVER = Path(__file__).with_name("run_elastalert.py")
#: The thresholds of these runs (the histories are built against them). ElastAlert runs every 5 minutes
#: rather than every minute and learns exception groups from 2 days rather than 30: fewer requests over
#: the same history, the same answers.
THRESHOLDS = [
    "--window", "15", "--failure-rate", "10", "--min-runs", "10", "--queue-wait-p95", "5",
    "--run-time-p95", "10", "--worker-silence", "5", "--beat-silence", "40", "--realert", "0",
    "--run-every", "5", "--new-group-lookback", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def elastalert_bin() -> Path:
    """ElastAlert's own environment, built once from PyPI and cached."""
    try:
        return ensure_elastalert()
    except DevStackError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"ElastAlert is required in CI and could not be built: {exc}", pytrace=False)
        pytest.skip(f"ElastAlert unavailable: {exc}")


@pytest.fixture(scope="module")
def es_front(es_url: str) -> Iterator[_front.Front]:
    with _front.running(es_url) as served:
        yield served


@pytest.fixture(scope="module")
def writeback(
    es_url: str, es_front: _front.Front, elastalert_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """ElastAlert's own indices, made by its ``elastalert-create-index`` (as its Docker image does at start)."""
    from elasticsearch import Elasticsearch

    name = f"t{uuid.uuid4().hex[:10]}.elastalert"
    workdir = tmp_path_factory.mktemp("writeback")
    argv = ["alerts", "export", "--elastalert", str(workdir), "--es", es_front.url, "--writeback-index", name]
    assert main(argv) == 0
    create = subprocess.run(
        [str(elastalert_bin / "elastalert-create-index"), "--config", str(workdir / "config.yaml")],
        cwd=workdir, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert create.returncode == 0, create.stderr[-2000:]
    yield name
    client = Elasticsearch(es_url, request_timeout=60)
    client.options(ignore_status=404).indices.delete(index=f"{name}*", expand_wildcards="all")
    client.close()


@dataclass
class Receiver:
    """Every alert ElastAlert posted, as parsed JSON."""

    url: str = ""
    alerts: list[dict[str, Any]] = field(default_factory=list)


@contextmanager
def receiving() -> Iterator[Receiver]:
    receiver = Receiver()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            with lock:
                receiver.alerts.append(json.loads(body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _load(es: Elasticsearch, history: History, *, prefix: str, tasks_index: str) -> None:
    """Index the history as the shipper would: daily record indices from the template, and the tasks index."""
    from elasticsearch.helpers import bulk

    install(es, index_prefix=prefix, tasks_index=tasks_index)
    # Fields other engineers are adding to the schema right now (beat entries, lost classes): map them
    # here until the schema has them, the way the schema will.
    days = sorted({_schema.daily_index(prefix, r["@timestamp"]) for r in history.records})
    for index in days:
        es.indices.create(index=index)
        if "celery.beat.entry" not in _schema.FIELDS_BY_NAME:
            es.indices.put_mapping(
                index=index, body={"properties": {"celery": {"properties": {"beat": {"properties": {
                    "entry": {"type": "keyword"}}}}}}},
            )  # fmt: skip
    if "lost_class" not in {f.name for f in _schema.TASK_FIELDS}:
        es.indices.put_mapping(index=tasks_index, body={"properties": {"lost_class": {"type": "keyword"}}})
    actions: list[dict[str, Any]] = [
        {"_op_type": "create", "_index": _schema.daily_index(prefix, r["@timestamp"]), "_id": r["event"]["id"],
         "_source": r}
        for r in history.records
    ]  # fmt: skip
    actions += [{"_op_type": "index", "_index": tasks_index, "_id": d["task_id"], "_source": d} for d in history.tasks]
    ok, errors = bulk(es, actions, raise_on_error=False, refresh=True)
    assert (ok, errors) == (len(actions), [])


def _run(elastalert_bin: Path, workdir: Path, history: History) -> subprocess.CompletedProcess[str]:
    config = str(workdir / "config.yaml")
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    return subprocess.run(
        [str(elastalert_bin / "python"), str(DRIVER), config, history.start.strftime(fmt), history.end.strftime(fmt)],
        cwd=workdir, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def _alerts_for(
    es: Elasticsearch,
    tmp_path: Path,
    elastalert_bin: Path,
    es_front: _front.Front,
    writeback: str,
    index_prefix: str,
    history: History,
) -> tuple[list[dict[str, Any]], str]:
    tasks_index = f"{index_prefix}.tasks"
    try:
        _load(es, history, prefix=index_prefix, tasks_index=tasks_index)
        with receiving() as receiver:
            argv = [
                "alerts", "export", "--elastalert", str(tmp_path), "--es", es_front.url, "--index-prefix",
                index_prefix, "--tasks-index", tasks_index, "--writeback-index", writeback, "--post-url",
                receiver.url, *THRESHOLDS,
            ]  # fmt: skip
            assert main(argv) == 0
            proc = _run(elastalert_bin, tmp_path, history)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, log[-3000:]
        # ElastAlert reports rule errors in its log and its error index, not in its exit status.
        assert "Error running rule" not in log and "Traceback" not in log, log[-3000:]
        assert [line for line in log.splitlines() if line.startswith("ERROR")] == []
        return receiver.alerts, log
    finally:
        es.options(ignore_status=404).indices.delete(index=tasks_index)


def test_every_rule_fires_once_per_breach_with_its_key_and_count(
    es: Elasticsearch,
    tmp_path: Path,
    elastalert_bin: Path,
    es_front: _front.Front,
    writeback: str,
    index_prefix: str,
) -> None:
    """Each known breach gets exactly one alert from its rule, naming its key (and count), with a Kibana link."""
    history = build(start=aligned_start(), breaches=True)
    alerts, log = _alerts_for(es, tmp_path, elastalert_bin, es_front, writeback, index_prefix, history)
    got = Counter((a["rule"], a["key"]) for a in alerts)
    expected = Counter((e.rule, e.key) for e in history.expected)
    assert got == expected, log[-3000:]
    assert {r.id for r in RULES} == {e.rule for e in history.expected}
    counts = {(a["rule"], a["key"]): a.get("count") for a in alerts}
    for e in history.expected:
        if e.count is not None:
            assert counts[(e.rule, e.key)] == e.count, (e, counts)
    silences = {"celery-logs-worker-silent", "celery-logs-periodic-task-missed"}
    for alert in alerts:
        if alert["rule"] in silences:
            # ElastAlert's own link can't name a flatline's key; the text's link (debug alerter's log) does.
            field = "celery.worker" if alert["rule"] == "celery-logs-worker-silent" else "celery.beat.entry"
            encoded = quote(alert["key"])
            assert f"query:'{field}:%22{encoded}%22'" in log, alert
        else:
            assert alert["kibana_url"].startswith("http://localhost:5601/app/discover#/"), alert
            assert f"Records in Kibana: {alert['kibana_url']}" in log, alert
    assert es_front.roots >= 1  # ElastAlert asked GET / (answered by the front) and ran anyway


def test_no_rule_fires_on_a_healthy_history(
    es: Elasticsearch,
    tmp_path: Path,
    elastalert_bin: Path,
    es_front: _front.Front,
    writeback: str,
    index_prefix: str,
) -> None:
    """The same tasks, workers and beat entries without breaches: ElastAlert runs every rule and sends nothing."""
    history = build(start=aligned_start(), breaches=False)
    alerts, log = _alerts_for(es, tmp_path, elastalert_bin, es_front, writeback, index_prefix, history)
    assert alerts == []
    for rule in RULES:
        assert f"Ran {rule.title} from" in log, rule.id


def test_committed_rules_pass_elastalerts_own_schema(elastalert_bin: Path) -> None:
    """The files under alerting/elastalert (debug alerter) validate against ElastAlert 2.19.0's rule schema."""
    committed = Path(__file__).resolve().parents[2] / "alerting" / "elastalert" / "rules"
    check = (
        "import os, sys, jsonschema, yaml, elastalert\n"
        "schema = yaml.safe_load(open(os.path.join(os.path.dirname(elastalert.__file__), 'schema.yaml')))\n"
        "validator = jsonschema.Draft7Validator(schema)\n"
        "for path in sys.argv[1:]:\n"
        "    validator.validate(yaml.safe_load(open(path)))\n"
        "    print('valid', os.path.basename(path))\n"
    )
    files = sorted(str(p) for p in committed.glob("*.yaml"))
    proc = subprocess.run(
        [str(elastalert_bin / "python"), "-c", check, *files], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [f"valid {r.id}.yaml" for r in sorted(RULES, key=lambda r: r.id)]
