"""The Kibana objects: ``objects`` generates ``kibana/objects`` from data tables; ``client`` imports and
exports them through Kibana's saved-objects API. This wing imports only the shared top modules and
``celery_logs``.
"""

from pipelines.kibana.client import (
    OPENSEARCH_DASHBOARDS,
    TARGETS,
    ImportReport,
    KibanaClient,
    KibanaError,
    KibanaSettings,
    KibanaUnavailable,
    add_arguments,
    retry_until_ready,
    shipped_ndjson,
    shipped_object_keys,
)
from pipelines.kibana.objects import NDJSON_NAME, build_objects, objects_dir

__all__ = [
    "NDJSON_NAME",
    "OPENSEARCH_DASHBOARDS",
    "TARGETS",
    "ImportReport",
    "KibanaClient",
    "KibanaError",
    "KibanaSettings",
    "KibanaUnavailable",
    "add_arguments",
    "build_objects",
    "objects_dir",
    "retry_until_ready",
    "shipped_ndjson",
    "shipped_object_keys",
]
