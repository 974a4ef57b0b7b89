"""`setup --replicas/--shards`: the default follows the data nodes, says so, and changes existing indices."""

from __future__ import annotations

import pytest
from elasticsearch import Elasticsearch

from pipelines.cli import main
from pipelines.dev import LocalCluster

pytestmark = pytest.mark.integration


def _replicas(es: Elasticsearch, index: str) -> dict[str, str]:
    resp = es.indices.get_settings(index=index, name="index.number_of_replicas", flat_settings=True)
    return {name: body["settings"]["index.number_of_replicas"] for name, body in resp.body.items()}


def test_setup_on_a_cluster_chooses_one_replica_and_changes_existing_indices(
    cluster: LocalCluster, cluster_es: Elasticsearch, cluster_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three data nodes: 1 replica by default (said); `--replicas 2` then applies to the existing indices."""
    where = ["--es", cluster.url, "--index-prefix", cluster_prefix, "--tasks-index", f"{cluster_prefix}.tasks"]
    assert main(["setup", *where]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == "replicas 1 (default for 3 data nodes; choose with --replicas), shards 1"
    daily = f"{cluster_prefix}-2026.11.22"
    cluster_es.index(index=daily, id="e1", document={"@timestamp": "2026-11-22T10:00:00Z"}, refresh=True)
    assert _replicas(cluster_es, f"{cluster_prefix}-*,{cluster_prefix}.tasks") == {
        daily: "1",
        f"{cluster_prefix}.tasks": "1",
    }
    assert main(["setup", *where, "--replicas", "2", "--shards", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == (
        "replicas 2 (as given), shards 2; replicas set to 2 on 2 existing indices; "
        "the entity index keeps its 1 shards (shards cannot change in place)"
    )
    assert _replicas(cluster_es, f"{cluster_prefix}-*,{cluster_prefix}.tasks") == {
        daily: "2",
        f"{cluster_prefix}.tasks": "2",
    }
    template = cluster_es.indices.get_index_template(name=cluster_prefix)["index_templates"][0]
    settings = template["index_template"]["template"]["settings"]["index"]
    assert (settings["number_of_replicas"], settings["number_of_shards"]) == ("2", "2")
    cluster.wait_for(status="green", nodes=3, timeout=300)


def test_setup_on_a_single_node_chooses_no_replica(es_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """One data node: 0 replicas by default (a replica could never be allocated), and it says so."""
    prefix = "replicas-single"
    es = Elasticsearch(es_url)
    try:
        assert main(["setup", "--es", es_url, "--index-prefix", prefix, "--no-tasks-index"]) == 0
        assert capsys.readouterr().out.splitlines()[1] == (
            "replicas 0 (default for 1 data node; choose with --replicas), shards 1"
        )
    finally:
        es.options(ignore_status=404).indices.delete_index_template(name=prefix)
        es.close()
