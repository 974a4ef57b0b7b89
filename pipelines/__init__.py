"""celery-logs' Elasticsearch side: the shipper (files -> Elasticsearch), setup, retention, reports,
search, task timelines, lost-task detection and the Kibana objects.

The package is in wings: ``ship`` (files -> ``_bulk``), ``analytics`` (reports, search, lost tasks),
``kibana`` (the saved objects), ``dev`` (the local stack and the demo) and ``cli``. Imports run one way,
cli -> dev -> (ship, analytics, kibana) -> the shared top modules (``_connection``, ``_errors``,
``_setup``, ``_prune``) -> ``celery_logs``; a wing uses another only through its ``__init__``.

The command line (``celery-logs``) is built on these; scripts can call them directly. Importing this
package does not import the Elasticsearch client: modules take a client built by the caller.
"""

from pipelines._prune import PrunePlan, TaskPruneResult, parse_keep, prune_tasks
from pipelines._prune import apply as prune_apply
from pipelines._prune import plan as prune_plan
from pipelines._setup import SetupResult, install
from pipelines.analytics import (
    FORMATS,
    ErrorGroup,
    Filters,
    Hit,
    LostTask,
    MarkResult,
    Report,
    ReportSettings,
    RunStats,
    TaskTimeline,
    Window,
    build_report,
    find_lost_tasks,
    mark_lost_tasks,
    render,
    report_to_dict,
    search,
    task_timeline,
)
from pipelines.kibana import ImportReport, KibanaClient, KibanaSettings, build_objects
from pipelines.ship import BulkSink, ElasticsearchSink, NullSink, Shipper, ShipperConfig, ShipperError, ShipStats

__all__ = [
    "FORMATS",
    "BulkSink",
    "ElasticsearchSink",
    "ErrorGroup",
    "Filters",
    "Hit",
    "ImportReport",
    "KibanaClient",
    "KibanaSettings",
    "LostTask",
    "MarkResult",
    "NullSink",
    "PrunePlan",
    "Report",
    "ReportSettings",
    "RunStats",
    "SetupResult",
    "ShipStats",
    "Shipper",
    "ShipperConfig",
    "ShipperError",
    "TaskPruneResult",
    "TaskTimeline",
    "Window",
    "build_objects",
    "build_report",
    "find_lost_tasks",
    "install",
    "mark_lost_tasks",
    "parse_keep",
    "prune_apply",
    "prune_plan",
    "prune_tasks",
    "render",
    "report_to_dict",
    "search",
    "task_timeline",
]
