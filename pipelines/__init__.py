"""celery-logs' Elasticsearch side: the shipper (files -> Elasticsearch), setup, retention, reports,
search, task timelines, lost-task detection and the Kibana objects.

The command line (``celery-logs``) is built on these; scripts can call them directly. Importing this
package does not import the Elasticsearch client: modules take a client built by the caller.
"""

from pipelines._kibana import ImportReport, KibanaClient, KibanaSettings
from pipelines._kibana_objects import build_objects
from pipelines._lost import LostTask, MarkResult, find_lost_tasks, mark_lost_tasks
from pipelines._prune import PrunePlan, parse_keep
from pipelines._prune import apply as prune_apply
from pipelines._prune import plan as prune_plan
from pipelines._query import Filters
from pipelines._report import ErrorGroup, Report, ReportSettings, RunStats, build_report
from pipelines._report_render import FORMATS, render, report_to_dict
from pipelines._search import Hit, search
from pipelines._setup import SetupResult, install
from pipelines._ship_bulk import BulkSink, ElasticsearchSink, NullSink
from pipelines._shipper import Shipper, ShipperConfig, ShipperError, ShipStats
from pipelines._timeline import TaskTimeline, task_timeline
from pipelines._timeparse import Window

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
    "render",
    "report_to_dict",
    "search",
    "task_timeline",
]
