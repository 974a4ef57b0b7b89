"""celery-logs pipelines: the shipper (files -> Elasticsearch), setup, retention, and the CLI."""

from pipelines._prune import PrunePlan, parse_keep
from pipelines._prune import apply as prune_apply
from pipelines._prune import plan as prune_plan
from pipelines._setup import SetupResult, install
from pipelines._ship_bulk import BulkSink, ElasticsearchSink, NullSink
from pipelines._shipper import Shipper, ShipperConfig, ShipperError, ShipStats

__all__ = [
    "BulkSink",
    "ElasticsearchSink",
    "NullSink",
    "PrunePlan",
    "SetupResult",
    "ShipStats",
    "Shipper",
    "ShipperConfig",
    "ShipperError",
    "install",
    "parse_keep",
    "prune_apply",
    "prune_plan",
]
