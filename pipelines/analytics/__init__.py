"""Questions asked of the indexed records: reports, search, task timelines and lost tasks.

``query`` holds what they share (filters, index names, shard checks) and ``timeparse`` the time
windows; ``report`` aggregates and ``render`` writes it out. Nothing here writes records; ``lost``
writes only the lost-task flags of the entity index. This wing imports only the shared top modules
and ``celery_logs``.
"""

from pipelines.analytics.lost import (
    CLASS_LOST,
    CLASS_PENDING,
    CLASS_REQUEUED,
    CLASSES,
    LISTED,
    LostTask,
    LostTaskSweeper,
    MarkResult,
    find_lost_tasks,
    mark_lost_tasks,
    recovered_counts,
)
from pipelines.analytics.query import Filters, NoDataError
from pipelines.analytics.render import FORMATS, RenderError, render, report_to_dict
from pipelines.analytics.report import ErrorGroup, Report, ReportSettings, RunStats, build_report
from pipelines.analytics.search import Hit, QueryError, Style, follow, hit_json, render_hit, search
from pipelines.analytics.timeline import TaskTimeline, render_timeline, task_timeline, timeline_dict
from pipelines.analytics.timeparse import TimeParseError, Window, iso, parse_duration, utcnow

__all__ = [
    "CLASSES",
    "CLASS_LOST",
    "CLASS_PENDING",
    "CLASS_REQUEUED",
    "FORMATS",
    "LISTED",
    "ErrorGroup",
    "Filters",
    "Hit",
    "LostTask",
    "LostTaskSweeper",
    "MarkResult",
    "NoDataError",
    "QueryError",
    "RenderError",
    "Report",
    "ReportSettings",
    "RunStats",
    "Style",
    "TaskTimeline",
    "TimeParseError",
    "Window",
    "build_report",
    "find_lost_tasks",
    "follow",
    "hit_json",
    "iso",
    "mark_lost_tasks",
    "parse_duration",
    "recovered_counts",
    "render",
    "render_hit",
    "render_timeline",
    "report_to_dict",
    "search",
    "task_timeline",
    "timeline_dict",
    "utcnow",
]
