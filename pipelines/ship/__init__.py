"""The shipper: JSON-lines files (or stdin) -> Elasticsearch ``_bulk``, at least once, without duplicates.

Stages, one module each: ``reader`` (tail files, follow rotation) -> ``parse`` (one record per line,
index and ``_id`` from the record) -> ``batch`` -> ``bulk`` (send, classify every item's answer) ->
acknowledge -> ``checkpoint``; ``deadletter`` keeps what can never be indexed, with the reason.
``shipper`` runs the stages. This wing imports only the shared top modules and ``celery_logs``.
"""

from pipelines.ship.bulk import Backoff, BulkSink, ElasticsearchSink, NullSink
from pipelines.ship.log import configure_json_logging
from pipelines.ship.shipper import DEFAULT_BATCH_DOCS, Shipper, ShipperConfig, ShipperError, ShipStats

__all__ = [
    "DEFAULT_BATCH_DOCS",
    "Backoff",
    "BulkSink",
    "ElasticsearchSink",
    "NullSink",
    "ShipStats",
    "Shipper",
    "ShipperConfig",
    "ShipperError",
    "configure_json_logging",
]
