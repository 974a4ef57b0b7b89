"""Install what the shipper writes into: the daily-index template and the entity index.

Both steps are idempotent, so ``celery-logs ship`` runs them at every start and ``celery-logs setup``
runs them alone. The template and the entity mapping come from :mod:`celery_logs._schema` only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

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


def install(
    client: Elasticsearch,
    *,
    index_prefix: str = DEFAULT_INDEX_PREFIX,
    tasks_index: str | None = DEFAULT_TASKS_INDEX,
) -> SetupResult:
    """Put the index template for ``<index_prefix>-*`` and create (or extend) the entity index."""
    name = template_name(index_prefix)
    stack_trace_type = _put_template(client, name, index_prefix)
    created = False
    if tasks_index:
        body = tasks_index_body()
        resp = client.options(ignore_status=400).indices.create(index=tasks_index, body=body)
        created = bool(resp.body.get("acknowledged"))
        if not created:
            error = resp.body.get("error", {})
            if error.get("type") != "resource_already_exists_exception":
                raise RuntimeError(f"cannot create the entity index {tasks_index}: {error.get('reason')}")
            # It exists: add fields a newer schema brought (adding is allowed, changing is not).
            client.indices.put_mapping(index=tasks_index, body={"properties": body["mappings"]["properties"]})
    return SetupResult(template=name, tasks_index=tasks_index, tasks_index_created=created,
                       stack_trace_type=stack_trace_type)


def _put_template(client: Elasticsearch, name: str, index_prefix: str) -> str:
    """Put the template with ECS's ``wildcard`` stack trace; where the server lacks that type (it checks a
    template's mappings when it is put, answering 400), put it with ``text``. Returns the type used."""
    resp = client.options(ignore_status=400).indices.put_index_template(
        name=name, body=index_template(prefix=index_prefix, wildcard=True)
    )
    if resp.body.get("acknowledged"):
        return "wildcard"
    error = resp.body.get("error", {})
    # The type's absence is named in the cause ("No handler for type [wildcard] declared on field ...").
    if not any(f"type [{t}]" in str(error) for t in ("wildcard", "match_only_text")):
        raise RuntimeError(f"cannot put the index template {name}: {error.get('reason')}")
    client.indices.put_index_template(name=name, body=index_template(prefix=index_prefix))
    return "text"
