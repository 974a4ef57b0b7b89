"""Fixtures of the shipper's tests: a log directory and the test's own entity index."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from tests.conftest import node_url
from tests.support.engines import ENGINES


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """These integration tests run on both engines (Elasticsearch 8.19 and OpenSearch 2.19)."""
    return str(request.param)


@pytest.fixture(scope="session")
def es_url(engine: str, request: pytest.FixtureRequest) -> str:
    """The node of this engine, defined beside the parametrized ``engine`` so that it follows it."""
    return node_url(engine, request)


@pytest.fixture
def tasks_index(es: Elasticsearch, index_prefix: str) -> Iterator[str]:
    """The entity index of the test (outside the record pattern, as in production), deleted afterwards."""
    name = f"{index_prefix}.tasks"
    yield name
    es.options(ignore_status=404).indices.delete(index=name)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """An empty directory for the test's log files."""
    d = tmp_path / "logs"
    d.mkdir()
    return d


@pytest.fixture
def shipper_procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Shipper processes a test starts; any still running at the end (a failed test) is killed."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
