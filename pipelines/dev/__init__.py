"""The local stack and the demo: ``stack`` fetches and runs Elasticsearch (the Maven Central server build)
and redis-server on loopback; ``demo`` runs a real worker through failures, a kill and a report with
``demo_app``; ``synth`` writes histories with known answers for tests and benchmarks; ``elastalert`` builds
ElastAlert 2 in a cached virtualenv of its own (for the alerting tests). This wing may use
the ship, analytics, kibana and alerting wings; only the cli uses it.
"""

from pipelines.dev.demo import run_demo
from pipelines.dev.elastalert import ensure_elastalert
from pipelines.dev.stack import (
    ES_VERSION,
    OPENSEARCH_VERSION,
    DevStackError,
    LocalCluster,
    LocalElasticsearch,
    LocalOpenSearch,
    LocalRedis,
    dev_down,
    dev_status,
    dev_up,
    ensure_distribution,
    ensure_opensearch_distribution,
    find_java_home,
    local_node,
)

__all__ = [
    "ES_VERSION",
    "OPENSEARCH_VERSION",
    "DevStackError",
    "LocalCluster",
    "LocalElasticsearch",
    "LocalOpenSearch",
    "LocalRedis",
    "dev_down",
    "dev_status",
    "dev_up",
    "ensure_distribution",
    "ensure_elastalert",
    "ensure_opensearch_distribution",
    "find_java_home",
    "local_node",
    "run_demo",
]
