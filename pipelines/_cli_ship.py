"""`celery-logs ship ...` subcommands (to be filled in by the ship work)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add this module's subcommands to the `celery-logs` parser."""
