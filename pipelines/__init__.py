"""celery-logs' Elasticsearch side: reports, search, task timelines and lost-task detection.

The command line (``celery-logs``) is built on these; scripts can call them directly.
"""

from pipelines._lost import LostTask, MarkResult, find_lost_tasks, mark_lost_tasks
from pipelines._query import Filters
from pipelines._report import ErrorGroup, Report, ReportSettings, RunStats, build_report
from pipelines._report_render import FORMATS, render, report_to_dict
from pipelines._search import Hit, search
from pipelines._timeline import TaskTimeline, task_timeline
from pipelines._timeparse import Window

__all__ = [
    "FORMATS",
    "ErrorGroup",
    "Filters",
    "Hit",
    "LostTask",
    "MarkResult",
    "Report",
    "ReportSettings",
    "RunStats",
    "TaskTimeline",
    "Window",
    "build_report",
    "find_lost_tasks",
    "mark_lost_tasks",
    "render",
    "report_to_dict",
    "search",
    "task_timeline",
]
