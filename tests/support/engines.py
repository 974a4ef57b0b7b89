"""Clients for the test nodes, built the way the commands build theirs (Elasticsearch or OpenSearch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines._connection import ConnectionSettings

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

#: The engines the integration tests of the shipper, the report and lost-task detection run on.
ENGINES = ("elasticsearch", "opensearch")


def client_for(url: str, *, engine: str = "auto", request_timeout: float = 60) -> Elasticsearch:
    """A client for ``url``: the one interface every wing uses, whichever engine answers."""
    return ConnectionSettings(url=url, engine=engine, request_timeout=request_timeout).client()
