"""celery-logs, worker side: structured JSON task lifecycle records and log lines for Celery.

One call wires it in::

    import celery_logs
    celery_logs.install(app, service="billing", log_dir="/var/log/billing")

Importing this package changes nothing; everything happens in :func:`install`.
"""

from __future__ import annotations

from ._context import bind_labels, bind_trace_id, bound_labels, current_trace_id, trace_context
from ._exceptions import grouping_key
from ._formatter import JsonFormatter
from ._install import fault_count, get_logger, install, installed, reset
from ._lifecycle import HEADER_PUBLISHED_NS, HEADER_TRACE_ID
from ._redact import DEFAULT_REDACT_KEYS
from ._settings import Settings, SettingsError

__all__ = [
    "DEFAULT_REDACT_KEYS",
    "HEADER_PUBLISHED_NS",
    "HEADER_TRACE_ID",
    "JsonFormatter",
    "Settings",
    "SettingsError",
    "bind_labels",
    "bind_trace_id",
    "bound_labels",
    "current_trace_id",
    "fault_count",
    "get_logger",
    "grouping_key",
    "install",
    "installed",
    "reset",
    "trace_context",
]
