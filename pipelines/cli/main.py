"""The ``celery-logs`` command: one entry point, one module per group of subcommands.

Each module of this wing (``ship``, ``report``, ...) exposes ``register(subparsers)``; a subcommand
sets ``func(args) -> int`` with ``set_defaults``. Errors a user can cause end as one line on stderr
and a non-zero exit, never as a traceback: anything that is a :class:`CliError` (or one of the
library errors listed in :data:`_USER_ERRORS`) is shown by its message.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import NoReturn

from pipelines._errors import EXIT_UNAVAILABLE, EXIT_USAGE, CliError

#: Subcommand modules, in the order their commands appear in ``--help``.
_COMMAND_MODULES = (
    "pipelines.cli.ship",
    "pipelines.cli.report",
    "pipelines.cli.kibana",
    "pipelines.cli.alerts",
    "pipelines.cli.dev",
    "pipelines.cli.demo",
)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a wrong flag in one line naming it (exit 2), without the usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="celery-logs",
        description="Log-based analytics for Celery: ship task lifecycle records to Elasticsearch, "
        "report on them, and manage the Kibana objects and a local dev cluster.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        module = import_module(name)
        module.register(sub)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("celery-logs")
    except PackageNotFoundError:
        return "unknown"


def _user_errors() -> tuple[type[BaseException], ...]:
    from pipelines._connection import ConnectionConfigError
    from pipelines._engine import EngineError
    from pipelines.dev import DevStackError

    return (CliError, DevStackError, ConnectionConfigError, EngineError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130
    except _user_errors() as exc:
        code = getattr(exc, "exit_code", 1)
        sys.stderr.write(f"celery-logs {args.command}: {exc}\n")
        return int(code)
    except _transport_errors() as exc:
        sys.stderr.write(f"celery-logs {args.command}: cannot reach {_engine_name(args)}: {_describe(exc)}\n")
        return EXIT_UNAVAILABLE
    except _not_elasticsearch() as exc:
        sys.stderr.write(f"celery-logs {args.command}: {_mismatch(exc)}\n")
        return EXIT_UNAVAILABLE


def _engine_name(args: argparse.Namespace) -> str:
    """The product named by --engine or the environment; Elasticsearch when neither says (auto)."""
    from pipelines._engine import OPENSEARCH, EngineError, engine_from

    try:
        engine = engine_from(getattr(args, "engine", None), os.environ)
    except EngineError:
        engine = ""
    return "OpenSearch" if engine == OPENSEARCH else "Elasticsearch"


def _not_elasticsearch() -> tuple[type[BaseException], ...]:
    from elasticsearch import UnsupportedProductError

    return (UnsupportedProductError,)


def _mismatch(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    version = body.get("version") if isinstance(body, dict) else None
    distribution = version.get("distribution") if isinstance(version, dict) else None
    what = f"it is {distribution}" if distribution else "it did not say it is Elasticsearch"
    return f"--engine elasticsearch was given, but {what}: leave --engine out (auto) or name the engine it is"


def _transport_errors() -> tuple[type[BaseException], ...]:
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import ConnectionTimeout

    return (TransportConnectionError, ConnectionTimeout)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]

