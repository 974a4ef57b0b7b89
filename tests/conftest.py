"""Session-wide real services: Elasticsearch (server build from Maven Central) and Redis.

In CI (``CI`` set) a service that cannot start is a failure, never a skip; on a developer's machine
without them, integration tests are skipped with the one-line reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

import celery_logs
from pipelines.dev.stack import DevStackError, LocalElasticsearch, LocalOpenSearch, LocalRedis
from tests.support.engines import client_for

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch


@pytest.fixture(autouse=True)
def _reset_celery_logs() -> Iterator[None]:
    """Every test starts and ends without a celery-logs installation (its global state lives in one place).

    Importing an app module that calls ``celery_logs.install()`` (as the demo app does, like users' apps)
    must not leave celery-logs hearing log lines in the tests that follow.
    """
    celery_logs.reset()
    yield
    celery_logs.reset()


def _unavailable(what: str, exc: Exception) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required in CI and could not start: {exc}", pytrace=False)
    pytest.skip(f"{what} unavailable: {exc}")


@pytest.fixture(scope="session")
def es_node() -> Iterator[LocalElasticsearch]:
    """One real single-node Elasticsearch for the whole session."""
    node = LocalElasticsearch(heap=os.environ.get("CELERY_LOGS_TEST_ES_HEAP", "768m"))
    try:
        node.start()
    except DevStackError as exc:
        _unavailable("Elasticsearch", exc)
    yield node
    node.cleanup()


@pytest.fixture(scope="session")
def os_node() -> Iterator[LocalOpenSearch]:
    """One real single-node OpenSearch 2.x for the session, started only when a test asks for it."""
    node = LocalOpenSearch(heap=os.environ.get("CELERY_LOGS_TEST_OS_HEAP", "512m"))
    try:
        node.start()
    except DevStackError as exc:
        _unavailable("OpenSearch", exc)
    yield node
    node.cleanup()


@pytest.fixture(scope="session")
def engine() -> str:
    """The engine of ``es_url``: Elasticsearch, unless a package's conftest runs its tests on both."""
    return "elasticsearch"


def node_url(engine: str, request: pytest.FixtureRequest) -> str:
    """The URL of the session's node of ``engine``, started on first use."""
    node: LocalElasticsearch = request.getfixturevalue("os_node" if engine == "opensearch" else "es_node")
    return node.url


@pytest.fixture(scope="session")
def es_url(engine: str, request: pytest.FixtureRequest) -> str:
    """The session's node of ``engine``.

    Where a package or module parametrizes ``engine``, it overrides this fixture beside it: pytest keeps
    a session fixture cached from an earlier package even when the ``engine`` it depended on is
    overridden later, which ran "opensearch" tests against Elasticsearch in a full run.
    """
    return node_url(engine, request)


@pytest.fixture
def es(es_url: str, engine: str) -> Iterator[Elasticsearch]:
    """A client for the session's node (of ``engine``)."""
    client = client_for(es_url, engine=engine)
    yield client
    client.close()


@pytest.fixture
def index_prefix(es: Elasticsearch) -> Iterator[str]:
    """A record-index prefix unique to the test; its indices are deleted afterwards."""
    prefix = f"t{uuid.uuid4().hex[:10]}-celery-logs"
    yield prefix
    es.options(ignore_status=404).indices.delete(index=f"{prefix}-*", expand_wildcards="all")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """One real redis-server for the whole session."""
    server = LocalRedis()
    try:
        server.start()
    except DevStackError as exc:
        _unavailable("Redis", exc)
    yield server
    server.stop()


@pytest.fixture
def broker_url(redis_server: LocalRedis) -> Iterator[str]:
    """A Redis database of its own for the test, flushed afterwards."""
    import redis

    url = f"redis://127.0.0.1:{redis_server.port}/{_next_db()}"
    yield url
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


_db_counter = iter(range(1, 10_000))


def _next_db() -> int:
    # Redis has 16 databases; reuse them round-robin (each is flushed after its test).
    return 1 + next(_db_counter) % 15
