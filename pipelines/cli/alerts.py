"""``celery-logs alerts export``: write the alert rules for ElastAlert 2 with the user's settings.

The threshold options are shared with ``celery-logs kibana import --rules`` (:func:`add_settings_arguments`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from pipelines import alerting as _alerting
from pipelines._errors import EXIT_OK, EXIT_USAGE, CliError

_DEFAULTS = _alerting.AlertSettings()


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``alerts`` and its actions."""
    alerts = subparsers.add_parser(
        "alerts",
        help="export the alert rules (failure rate, new exception group, lost tasks, silent workers, ...)",
        description="Alert rules for ElastAlert 2, generated from celery-logs' rule table (docs/alerting.md).",
    )
    actions = alerts.add_subparsers(dest="alerts_action", metavar="ACTION", required=True)
    exp = actions.add_parser(
        "export",
        help="write ElastAlert 2 rule files and its config.yaml",
        description="Write DIR/config.yaml and DIR/rules/<rule>.yaml for ElastAlert "
        f"{_alerting.ELASTALERT_VERSION}; run it with `elastalert --config DIR/config.yaml` from DIR. "
        "Rule files celery-logs no longer makes are removed; other files in DIR are left alone.",
    )
    exp.add_argument("--elastalert", type=Path, required=True, metavar="DIR", help="where to write the files")
    exp.add_argument(
        "--es",
        metavar="URL",
        help="the Elasticsearch ElastAlert queries (env CELERY_LOGS_ES_URL; default "
        f"{_alerting.AlertSettings().es_url}); credentials go in ElastAlert's environment (ES_USERNAME, "
        "ES_PASSWORD, ES_API_KEY), never in the files",
    )
    exp.add_argument(
        "--post-url",
        action="append",
        default=[],
        metavar="URL",
        help="also send each alert as JSON to this URL (ElastAlert's post alerter; repeatable). Every alert "
        "goes to ElastAlert's log (debug alerter); add your own alerters to the files",
    )
    exp.add_argument(
        "--writeback-index",
        default=_DEFAULTS.writeback_index,
        metavar="NAME",
        help=f"ElastAlert's own index (default {_DEFAULTS.writeback_index})",
    )
    exp.add_argument(
        "--run-every",
        type=int,
        default=_DEFAULTS.run_every_minutes,
        metavar="MINUTES",
        help=f"how often ElastAlert runs the rules (default {_DEFAULTS.run_every_minutes})",
    )
    add_settings_arguments(exp)
    exp.set_defaults(func=_export)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the data is and the thresholds of the rules (defaults: :class:`AlertSettings`)."""
    d = _DEFAULTS
    g = parser.add_argument_group("rules")
    g.add_argument("--index-prefix", default=d.index_prefix, help=f"record index prefix (default {d.index_prefix})")
    g.add_argument("--tasks-index", default=d.tasks_index, help=f"entity index (default {d.tasks_index})")
    g.add_argument("--kibana-url", default=None, metavar="URL",
                   help=f"Kibana the alerts link to (env CELERY_LOGS_KIBANA_URL; default {d.kibana_url})")
    g.add_argument("--window", type=int, default=d.window_minutes, metavar="MINUTES",
                   help=f"window of the failure-rate, p95 and lost-task rules (default {d.window_minutes})")
    g.add_argument("--failure-rate", type=float, default=d.failure_rate_percent, metavar="PERCENT",
                   help=f"alert when a task's failure rate in the window is above this "
                   f"(default {d.failure_rate_percent:g})")
    g.add_argument("--min-runs", type=int, default=d.min_runs, metavar="N",
                   help=f"finished runs a task needs in the window for its rate and p95s to count "
                   f"(default {d.min_runs})")
    g.add_argument("--queue-wait-p95", type=float, default=d.queue_wait_p95_seconds, metavar="SECONDS",
                   help=f"bound of a task's queue wait p95 (default {d.queue_wait_p95_seconds:g})")
    g.add_argument("--run-time-p95", type=float, default=d.run_time_p95_seconds, metavar="SECONDS",
                   help=f"bound of a task's run time p95 (default {d.run_time_p95_seconds:g})")
    g.add_argument("--worker-silence", type=int, default=d.worker_silence_minutes, metavar="MINUTES",
                   help=f"a worker without heartbeats this long is silent (default {d.worker_silence_minutes})")
    g.add_argument("--beat-silence", type=int, default=d.beat_silence_minutes, metavar="MINUTES",
                   help="a beat entry not sent this long did not run; make it longer than your longest "
                   f"schedule interval (default {d.beat_silence_minutes})")
    g.add_argument("--new-group-lookback", type=int, default=d.new_group_lookback_days, metavar="DAYS",
                   help=f"an exception group unseen this long is new (default {d.new_group_lookback_days})")
    g.add_argument("--realert", type=int, default=d.realert_minutes, metavar="MINUTES",
                   help=f"alert again for the same rule and key only after this long (default {d.realert_minutes})")


def settings_from_args(args: argparse.Namespace, **extra: Any) -> _alerting.AlertSettings:
    """:class:`AlertSettings` from the options; a value out of range is a one-line usage error."""
    try:
        return _alerting.AlertSettings(
            index_prefix=args.index_prefix,
            tasks_index=args.tasks_index,
            kibana_url=args.kibana_url or os.environ.get("CELERY_LOGS_KIBANA_URL") or _DEFAULTS.kibana_url,
            window_minutes=args.window,
            failure_rate_percent=args.failure_rate,
            min_runs=args.min_runs,
            queue_wait_p95_seconds=args.queue_wait_p95,
            run_time_p95_seconds=args.run_time_p95,
            worker_silence_minutes=args.worker_silence,
            beat_silence_minutes=args.beat_silence,
            new_group_lookback_days=args.new_group_lookback,
            realert_minutes=args.realert,
            **extra,
        )
    except _alerting.AlertSettingsError as exc:
        raise CliError(str(exc), exit_code=EXIT_USAGE) from None


def _export(args: argparse.Namespace) -> int:
    settings = settings_from_args(
        args,
        es_url=args.es or os.environ.get("CELERY_LOGS_ES_URL") or _DEFAULTS.es_url,
        post_urls=tuple(args.post_url),
        writeback_index=args.writeback_index,
        run_every_minutes=args.run_every,
    )
    try:
        written = _alerting.write_elastalert_files(args.elastalert, _alerting.rendered_files(settings))
    except OSError as exc:
        raise CliError(f"cannot write to {args.elastalert}: {exc.strerror}") from None
    rules = sum(1 for p in written if p.parent.name == "rules")
    sys.stdout.write(f"wrote {rules} ElastAlert rules and config.yaml to {args.elastalert}\n")
    return EXIT_OK
