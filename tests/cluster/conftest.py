"""A real 3-node cluster for the tests that need one, started lazily once per session.

The nodes are small (``CELERY_LOGS_TEST_CLUSTER_HEAP``, default 448m): the machine is shared. A test that
kills or stops a node leaves it to the ``cluster`` fixture to bring the cluster back whole and green for
the next test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from elasticsearch import Elasticsearch

from pipelines.dev import DevStackError, LocalCluster
from tests.conftest import _unavailable

NODES = 3


@pytest.fixture(scope="session")
def es_cluster() -> Iterator[LocalCluster]:
    """Three nodes on loopback forming one cluster, for the whole session."""
    # Generous: on a loaded machine, three JVMs starting together take minutes to elect a master.
    cluster = LocalCluster(
        nodes=NODES, heap=os.environ.get("CELERY_LOGS_TEST_CLUSTER_HEAP", "448m"), startup_timeout=600
    )
    try:
        cluster.start()
    except DevStackError as exc:
        cluster.cleanup()
        _unavailable("a 3-node Elasticsearch cluster", exc)
    yield cluster
    cluster.cleanup()


@pytest.fixture
def cluster(es_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The session's cluster, whole and green before the test; nodes a test downed are restarted after."""
    es_cluster.wait_for(status="green", nodes=NODES, timeout=600)
    yield es_cluster
    for member in es_cluster.members:
        if member not in es_cluster.running():
            es_cluster.restart(member)
    es_cluster.wait_for(status="green", nodes=NODES, timeout=600)


@pytest.fixture
def cluster_es(cluster: LocalCluster) -> Iterator[Elasticsearch]:
    """A client for every node of the cluster."""
    client = Elasticsearch(cluster.urls, request_timeout=60, retry_on_timeout=True, max_retries=5)
    yield client
    client.close()


@pytest.fixture
def cluster_prefix(cluster_es: Elasticsearch) -> Iterator[str]:
    """A record-index prefix (and its entity index ``<prefix>.tasks``) unique to the test, deleted after."""
    prefix = f"c{uuid.uuid4().hex[:10]}-celery-logs"
    yield prefix
    cluster_es.options(ignore_status=404).indices.delete(index=f"{prefix}-*,{prefix}.tasks", expand_wildcards="all")
