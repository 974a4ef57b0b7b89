"""The engine layer: which engine answers, one client interface on both, one-line errors, the local OpenSearch."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch, NotFoundError

from pipelines._engine import AUTO, ELASTICSEARCH, OPENSEARCH, EngineError, engine_from, engine_of
from pipelines.cli import main
from pipelines.dev import stack as _devstack
from tests.conftest import node_url
from tests.support.engines import ENGINES, client_for


def test_engine_option_beats_the_environment_which_beats_auto() -> None:
    """--engine first, then CELERY_LOGS_ENGINE, else auto; case and spaces do not matter."""
    assert engine_from("opensearch", {"CELERY_LOGS_ENGINE": "elasticsearch"}) == OPENSEARCH
    assert engine_from(None, {"CELERY_LOGS_ENGINE": " OpenSearch "}) == OPENSEARCH
    assert engine_from(None, {}) == AUTO


def test_unknown_engine_in_the_environment_is_one_sentence() -> None:
    """A wrong CELERY_LOGS_ENGINE names the variable and the choices."""
    with pytest.raises(EngineError, match=r"^CELERY_LOGS_ENGINE='solr' is not one of auto, elasticsearch, opensearch$"):
        engine_from(None, {"CELERY_LOGS_ENGINE": "solr"})


def test_wrong_engine_flag_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`--engine solr` gets one line naming the flag and exit 2."""
    with pytest.raises(SystemExit) as exc:
        main(["report", "--engine", "solr"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--engine" in err and "solr" in err


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each test of this module runs on both engines."""
    return str(request.param)


@pytest.fixture(scope="session")
def es_url(engine: str, request: pytest.FixtureRequest) -> str:
    """The node of this engine, defined beside the parametrized ``engine`` so that it follows it."""
    return node_url(engine, request)


def test_auto_finds_the_engine_from_the_first_answer(es_url: str, engine: str) -> None:
    """Auto-detection names the engine that answered: X-Elastic-Product on Elasticsearch, none on OpenSearch."""
    client = client_for(es_url)
    try:
        assert engine_of(client) == engine
        assert client.cluster.health()["status"] in ("green", "yellow")
    finally:
        client.close()


def test_one_interface_on_both_engines(es: Elasticsearch, index_prefix: str) -> None:
    """options(ignore_status), answers with .body and .meta, HEAD as a boolean and the same exception classes."""
    index = f"{index_prefix}-2026.01.01"
    created = es.options(ignore_status=400).indices.create(index=index)
    assert created.meta.status == 200 and created.body["acknowledged"] is True
    again = es.options(ignore_status=400).indices.create(index=index)
    assert again.meta.status == 400 and again.body["error"]["type"] == "resource_already_exists_exception"
    assert bool(es.indices.exists(index=index)) is True
    assert bool(es.indices.exists(index=f"{index_prefix}-nothing")) is False
    with pytest.raises(NotFoundError) as exc:
        es.get(index=index, id="missing")
    assert exc.value.meta.status == 404


def test_unreachable_opensearch_is_a_one_line_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    """No server on the port: opensearch-py's connection error reaches the user as exit 3, one line naming
    OpenSearch."""
    url = f"http://127.0.0.1:{_devstack.free_port()}"
    assert main(["report", "--es", url, "--engine", "opensearch", "--index-prefix", "x"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("celery-logs report: cannot reach OpenSearch: ") and err.count("\n") == 1


def test_a_cloud_id_is_not_opensearch(capsys: pytest.CaptureFixture[str]) -> None:
    """--cloud-id with --engine opensearch is a contradiction said in one line."""
    code = main(["setup", "--cloud-id", "name:ZXhhbXBsZS5jb20kYWJjJGRlZg==", "--engine", "opensearch"])
    assert code == 1
    assert capsys.readouterr().err == (
        "celery-logs setup: a Cloud id names an Elastic Cloud deployment, which is Elasticsearch, not OpenSearch\n"
    )


def test_opensearch_build_lacks_the_security_plugin(os_node: _devstack.LocalOpenSearch) -> None:
    """The integ-test-zip has one module and no plugins: plain HTTP and no users, as the dev stack assumes."""
    home = _devstack.ensure_opensearch_distribution()
    assert sorted(p.name for p in (home / "modules").iterdir()) == ["transport-netty4"]
    assert list((home / "plugins").iterdir()) == []
    client = client_for(os_node.url, engine=OPENSEARCH)
    try:
        assert engine_of(client) == OPENSEARCH
        assert client.cat.plugins(format="json").body == []
    finally:
        client.close()


@pytest.fixture
def dev_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A dev home the node can use even when the tests run as root (pytest's own tmp dirs are private)."""
    home = Path(tempfile.mkdtemp(prefix="celery-logs-devhome-"))
    home.chmod(0o755)
    monkeypatch.setenv("CELERY_LOGS_DEV_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_dev_up_opensearch_status_down(dev_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dev up --engine opensearch` starts a real OpenSearch that auto-detection recognises; down --purge removes it."""
    port = _devstack.free_port()
    try:
        assert main(["dev", "up", "--engine", "opensearch", "--port", str(port), "--heap", "384m"]) == 0
        up = f"OpenSearch {_devstack.OPENSEARCH_VERSION} is up at http://127.0.0.1:{port}"
        assert capsys.readouterr().out.startswith(up)
        assert main(["dev", "status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["engine"] == OPENSEARCH
        client = client_for(f"http://127.0.0.1:{port}")
        try:
            assert engine_of(client) == OPENSEARCH
        finally:
            client.close()
    finally:
        assert main(["dev", "down", "--purge"]) == 0
    assert not (dev_home / "data-opensearch").exists()


def test_explicit_elasticsearch_keeps_the_plain_client() -> None:
    """--engine elasticsearch builds elasticsearch-py's own client, product check included."""
    client = client_for("http://127.0.0.1:9", engine=ELASTICSEARCH)
    try:
        assert type(client) is Elasticsearch
    finally:
        client.close()


def test_elasticsearch_named_for_an_opensearch_node_is_one_line(
    os_node: _devstack.LocalOpenSearch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--engine elasticsearch against OpenSearch: elasticsearch-py's product check ends as one line, exit 3."""
    assert main(["task", "abc", "--es", os_node.url, "--engine", "elasticsearch"]) == 3
    assert capsys.readouterr().err == (
        "celery-logs task: --engine elasticsearch was given, but it did not say it is Elasticsearch: "
        "leave --engine out (auto) or name the engine it is\n"
    )
