"""``celery-logs kibana import|export``: install the shipped Kibana objects, or fetch them back."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelines import alerting as _alerting
from pipelines import kibana as _kibana
from pipelines._errors import EXIT_FAILURE, EXIT_OK, EXIT_PARTIAL, EXIT_UNAVAILABLE, EXIT_USAGE, CliError


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``kibana`` and its actions."""
    kibana = subparsers.add_parser(
        "kibana",
        help="import the Kibana data views, saved searches, visualizations and dashboard",
        description="Manage the celery-logs objects in Kibana 8.11 or newer through its saved-objects API.",
    )
    actions = kibana.add_subparsers(dest="kibana_action", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import",
        help="import (or update) the objects; safe to repeat",
        description="Import the shipped objects with overwrite, so a repeated import updates them in place. "
        "Prints what was created, updated or refused; exits 4 when Kibana refused any object. "
        "With --rules, create or update the alert rules instead (Kibana alerting, docs/alerting.md).",
    )
    imp.add_argument(
        "--rules",
        action="store_true",
        help="create or update the celery-logs alert rules (rule type .es-query) by id, instead of the objects",
    )
    imp.add_argument("--dry-run", action="store_true", help="with --rules: say what would change, change nothing")
    defaults = _alerting.AlertSettings()
    imp.add_argument(
        "--tasks-index",
        default=defaults.tasks_index,
        help=f"with --rules: entity index (default {defaults.tasks_index})",
    )
    imp.add_argument(
        "--window",
        type=int,
        default=defaults.window_minutes,
        metavar="MINUTES",
        help=f"with --rules: the rules' time window (default {defaults.window_minutes})",
    )
    imp.add_argument(
        "--run-every",
        type=int,
        default=defaults.run_every_minutes,
        metavar="MINUTES",
        help=f"with --rules: how often Kibana runs the rules (default {defaults.run_every_minutes})",
    )
    imp.add_argument("--file", type=Path, metavar="NDJSON", help="an export file to import instead of the shipped one")
    imp.add_argument(
        "--no-overwrite", action="store_true", help="refuse (report as conflicts) objects that already exist"
    )
    imp.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="keep retrying while Kibana is unreachable or starting (503), up to this long (default 0)",
    )
    _add_target(imp)
    _kibana.add_arguments(imp)
    imp.set_defaults(func=_import)
    exp = actions.add_parser(
        "export",
        help="export the celery-logs objects from Kibana as NDJSON",
        description="Fetch the celery-logs objects (and what they reference) from Kibana, e.g. to keep edits "
        "made in Kibana. Writes NDJSON to --output or standard output.",
    )
    exp.add_argument("--output", "-o", type=Path, metavar="FILE", help="where to write (default: standard output)")
    _add_target(exp)
    _kibana.add_arguments(exp)
    exp.set_defaults(func=_export)


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", choices=_kibana.TARGETS, default="kibana",
        help="Kibana 8.11+ (default), or OpenSearch Dashboards 2.x with its own objects (no Lens there)",
    )  # fmt: skip


@contextmanager
def _kibana_errors() -> Iterator[None]:
    try:
        yield
    except _kibana.KibanaUnavailable as exc:
        raise CliError(str(exc), exit_code=EXIT_UNAVAILABLE) from None
    except _kibana.KibanaError as exc:
        raise CliError(str(exc), exit_code=EXIT_FAILURE) from None


def _import(args: argparse.Namespace) -> int:
    if args.rules:
        return _import_rules(args)
    if args.dry_run:
        raise CliError("--dry-run goes with --rules (an object import is already safe to repeat)", exit_code=EXIT_USAGE)
    settings = _kibana.KibanaSettings.from_args(args)
    path = args.file or _kibana.shipped_ndjson(settings.target)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    filename = path.name if path.name.endswith(".ndjson") else "celery-logs.ndjson"
    client = _kibana.KibanaClient(settings)
    with _kibana_errors():
        report = _kibana.retry_until_ready(
            lambda: client.import_ndjson(data, filename=filename, overwrite=not args.no_overwrite), wait=args.wait
        )
    for obj in report.objects:
        reason = f"  ({obj.reason})" if obj.reason else ""
        sys.stdout.write(f"{obj.outcome:<8} {obj.type:<14} {obj.id}  {obj.title}{reason}\n")
    where = settings.display + (f" space {settings.space}" if settings.space else "")
    product = "OpenSearch Dashboards" if settings.target == _kibana.OPENSEARCH_DASHBOARDS else "Kibana"
    sys.stdout.write(f"{product} at {where}: {report.summary()}\n")
    return EXIT_PARTIAL if report.refused or not report.success else EXIT_OK


def _import_rules(args: argparse.Namespace) -> int:
    if args.file or args.no_overwrite:
        raise CliError("--rules imports the rules celery-logs makes: no --file or --no-overwrite", exit_code=EXIT_USAGE)
    try:
        alert_settings = _alerting.AlertSettings(
            tasks_index=args.tasks_index, window_minutes=args.window, run_every_minutes=args.run_every
        )
    except _alerting.AlertSettingsError as exc:
        raise CliError(str(exc), exit_code=EXIT_USAGE) from None
    settings = _kibana.KibanaSettings.from_args(args)
    client = _kibana.KibanaClient(settings)
    verb = {"created": "would create", "updated": "would update"} if args.dry_run else {}
    outcomes = []
    with _kibana_errors():
        for rule in _alerting.kibana_rules(alert_settings):
            put = functools.partial(
                client.put_rule, rule.id, create=rule.create, update=rule.update, dry_run=args.dry_run
            )
            outcome = _kibana.retry_until_ready(put, wait=args.wait)
            outcomes.append(outcome)
            sys.stdout.write(f"{verb.get(outcome, outcome):<12} rule {rule.id}  {rule.name}\n")
    for rule_id, why in _alerting.elastalert_only():
        sys.stdout.write(f"{'skipped':<12} rule {rule_id}  (ElastAlert only: {why})\n")
    where = settings.display + (f" space {settings.space}" if settings.space else "")
    created, updated = verb.get("created", "created"), verb.get("updated", "updated")
    done = f"{outcomes.count('created')} {created}, {outcomes.count('updated')} {updated}"
    sys.stdout.write(f"Kibana at {where}: rules {done}, {len(_alerting.elastalert_only())} ElastAlert only\n")
    return EXIT_OK


def _export(args: argparse.Namespace) -> int:
    settings = _kibana.KibanaSettings.from_args(args)
    with _kibana_errors():
        keys = _kibana.shipped_object_keys(_kibana.shipped_ndjson(settings.target))
        data = _kibana.KibanaClient(settings).export_ndjson(keys)
    if args.output:
        try:
            args.output.write_bytes(data)
        except OSError as exc:
            raise CliError(f"cannot write {args.output}: {exc.strerror}") from None
        lines = sum(1 for line in data.splitlines() if line.strip())
        sys.stderr.write(f"wrote {max(lines - 1, 0)} objects and the export summary to {args.output}\n")
    else:
        sys.stdout.buffer.write(data)
    return EXIT_OK
