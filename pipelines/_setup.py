"""Install what the shipper writes into: the daily-index template and the entity index.

Both steps are idempotent, so ``celery-logs ship`` runs them at every start and ``celery-logs setup``
runs them alone. The template and the entity mapping come from :mod:`celery_logs._schema` only.

Replicas: one when the cluster has more than one data node (so losing a node loses nothing), none on a
single node (a replica could never be allocated there and the indices would stay yellow). Given
explicitly, the count is also applied to the indices that exist already, which is how a cluster that
grew (or shrank) is brought in line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery_logs._schema import (
    DEFAULT_INDEX_PREFIX,
    DEFAULT_TASKS_INDEX,
    TEMPLATE_NAME,
    index_template,
    tasks_index_body,
)

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch


def template_name(index_prefix: str) -> str:
    """The template's name: ``celery-logs`` for the default prefix, the prefix itself otherwise.

    One template per prefix, so several prefixes (environments, tests) can live on one cluster.
    """
    return TEMPLATE_NAME if index_prefix == DEFAULT_INDEX_PREFIX else index_prefix


@dataclass(frozen=True)
class SetupResult:
    """What :func:`install` did."""

    template: str
    tasks_index: str | None
    tasks_index_created: bool
    #: How ``error.stack_trace`` is mapped: ``wildcard`` (as ECS does) where the server has the type, else ``text``.
    stack_trace_type: str = "text"
    replicas: int = 0
    shards: int = 1
    #: Data nodes counted to choose the default replicas; ``None`` when replicas were given.
    data_nodes: int | None = None
    #: Existing indices whose ``number_of_replicas`` was changed to :attr:`replicas`.
    replicas_updated: tuple[str, ...] = ()
    #: The entity index exists with another shard count (shards cannot change in place).
    tasks_index_shards: int | None = None

    @property
    def replicas_reason(self) -> str:
        """Why :attr:`replicas` is what it is, for the user."""
        if self.data_nodes is None:
            return "as given"
        plural = "s" if self.data_nodes != 1 else ""
        return f"default for {self.data_nodes} data node{plural}; choose with --replicas"


def default_replicas(data_nodes: int) -> int:
    """One replica when a second data node can hold it, none on a single node."""
    return 1 if data_nodes > 1 else 0


def count_data_nodes(client: Elasticsearch) -> int:
    """Data nodes in the cluster now (from ``_cluster/health``)."""
    resp = client.cluster.health(filter_path="number_of_data_nodes")
    return int(resp.body["number_of_data_nodes"])


def install(
    client: Elasticsearch,
    *,
    index_prefix: str = DEFAULT_INDEX_PREFIX,
    tasks_index: str | None = DEFAULT_TASKS_INDEX,
    replicas: int | None = None,
    shards: int | None = None,
) -> SetupResult:
    """Put the index template for ``<index_prefix>-*`` and create (or extend) the entity index.

    ``replicas`` ``None`` chooses by the number of data nodes (:func:`default_replicas`) for new indices
    only; a number is applied to the existing daily indices and entity index too. ``shards`` (default 1)
    applies to indices created from now on.
    """
    if replicas is not None and replicas < 0:
        raise ValueError(f"replicas must be 0 or more, not {replicas}")
    if shards is not None and shards < 1:
        raise ValueError(f"shards must be 1 or more, not {shards}")
    data_nodes = count_data_nodes(client) if replicas is None else None
    n_replicas = default_replicas(data_nodes or 0) if replicas is None else replicas
    n_shards = 1 if shards is None else shards
    name = template_name(index_prefix)
    stack_trace_type = _put_template(client, name, index_prefix, shards=n_shards, replicas=n_replicas)
    created = False
    tasks_shards: int | None = None
    if tasks_index:
        body = tasks_index_body(shards=n_shards, replicas=n_replicas)
        resp = client.options(ignore_status=400).indices.create(index=tasks_index, body=body)
        created = bool(resp.body.get("acknowledged"))
        if not created:
            error = resp.body.get("error", {})
            if error.get("type") != "resource_already_exists_exception":
                raise RuntimeError(f"cannot create the entity index {tasks_index}: {error.get('reason')}")
            # It exists: add fields a newer schema brought (adding is allowed, changing is not, so the
            # fields it has keep the mapping they were created with).
            mapping = client.indices.get_mapping(index=tasks_index)
            have = next(iter(mapping.body.values()))["mappings"].get("properties", {})
            new = {k: v for k, v in body["mappings"]["properties"].items() if k not in have}
            if new:
                client.indices.put_mapping(index=tasks_index, body={"properties": new})
            if shards is not None:
                current = _index_settings(client, tasks_index).get(tasks_index, {})
                if int(current.get("number_of_shards", n_shards)) != n_shards:
                    tasks_shards = int(current["number_of_shards"])
    updated: tuple[str, ...] = ()
    if replicas is not None:
        targets = f"{index_prefix}-*" + (f",{tasks_index}" if tasks_index else "")
        updated = set_replicas(client, targets, replicas)
    return SetupResult(
        template=name,
        tasks_index=tasks_index,
        tasks_index_created=created,
        replicas=n_replicas,
        shards=n_shards,
        data_nodes=data_nodes,
        replicas_updated=updated,
        tasks_index_shards=tasks_shards,
        stack_trace_type=stack_trace_type,
    )


def _index_settings(client: Elasticsearch, index: str) -> dict[str, dict[str, Any]]:
    resp = client.options(ignore_status=404).indices.get_settings(
        index=index, name="index.number_of_*", flat_settings=False, expand_wildcards="open"
    )
    if resp.meta.status == 404:
        return {}
    return {name: body["settings"]["index"] for name, body in resp.body.items()}


def set_replicas(client: Elasticsearch, index: str, replicas: int) -> tuple[str, ...]:
    """Set ``number_of_replicas`` on the existing indices matching ``index`` that differ; their names."""
    current = _index_settings(client, index)
    differ = sorted(name for name, s in current.items() if int(s.get("number_of_replicas", -1)) != replicas)
    # In groups: a year of daily names in one URL would pass the node's 4 kB request-line limit.
    for i in range(0, len(differ), 100):
        client.indices.put_settings(
            index=",".join(differ[i : i + 100]), body={"index": {"number_of_replicas": replicas}}
        )
    return tuple(differ)


def _put_template(client: Elasticsearch, name: str, index_prefix: str, *, shards: int, replicas: int) -> str:
    """Put the template with ECS's ``wildcard`` stack trace; where the server lacks that type (it checks a
    template's mappings when it is put, answering 400), put it with ``text``. Returns the type used."""
    resp = client.options(ignore_status=400).indices.put_index_template(
        name=name, body=index_template(prefix=index_prefix, shards=shards, replicas=replicas, wildcard=True)
    )
    if resp.body.get("acknowledged"):
        return "wildcard"
    error = resp.body.get("error", {})
    # The type's absence is named in the cause ("No handler for type [wildcard] declared on field ...").
    if not any(f"type [{t}]" in str(error) for t in ("wildcard", "match_only_text")):
        raise RuntimeError(f"cannot put the index template {name}: {error.get('reason')}")
    client.indices.put_index_template(
        name=name, body=index_template(prefix=index_prefix, shards=shards, replicas=replicas)
    )
    return "text"
