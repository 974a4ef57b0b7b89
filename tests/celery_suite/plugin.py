"""A pytest plugin for Celery's integration suite: installs celery-logs as a user's app module would.

Loaded with ``-p tests.celery_suite.plugin`` when ``CELERY_SUITE_LOG_DIR`` is set. ``install()`` runs at
configure time, before the suite creates its apps and starts its session worker (prefork), as a call at the
top of an app module runs before the worker starts.
"""

from __future__ import annotations

import os

import pytest

import celery_logs


def pytest_configure(config: pytest.Config) -> None:
    log_dir = os.environ.get("CELERY_SUITE_LOG_DIR")
    if log_dir:
        celery_logs.install(service="celery-suite", log_dir=log_dir)


def pytest_unconfigure(config: pytest.Config) -> None:
    if os.environ.get("CELERY_SUITE_LOG_DIR"):
        celery_logs.reset()
