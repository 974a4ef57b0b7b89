"""This process's id, kept current across forks without a system call per record.

``os.getpid()`` is a real system call; on virtual machines with page-table isolation each one also
costs the code after it its caches. Records ask for the pid several times each, so it is cached here
and refreshed by an at-fork hook, which :func:`watch_forks` registers from ``install()`` (never at import).
"""

from __future__ import annotations

import os
from collections.abc import Callable

_state = {"pid": os.getpid(), "watching": False}
_after_fork: list[Callable[[], None]] = []


def pid() -> int:
    """The current process id."""
    return int(_state["pid"])


def refresh() -> None:
    """Re-read the pid (after a fork that may have skipped the hooks) and tell the listeners."""
    _state["pid"] = os.getpid()
    for callback in list(_after_fork):
        callback()


def watch_forks(*callbacks: Callable[[], None]) -> None:
    """Keep :func:`pid` current in forked children and call ``callbacks`` there (idempotent)."""
    for callback in callbacks:
        if callback not in _after_fork:
            _after_fork.append(callback)
    if not _state["watching"] and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=refresh)
        _state["watching"] = True
    _state["pid"] = os.getpid()
