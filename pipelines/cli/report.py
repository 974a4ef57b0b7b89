"""``celery-logs report``, ``search``, ``task`` and ``lost``: answers from Elasticsearch, without Kibana."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from celery_logs import _schema
from pipelines._connection import ConnectionSettings, add_arguments
from pipelines._errors import EXIT_OK, EXIT_USAGE, CliError

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from pipelines.analytics import Filters, Style, Window

#: ``--format`` choices (kept here too so ``--help`` needs no heavy import).
_FORMATS = ("table", "csv", "json", "markdown", "html")
#: ``--out`` extension -> format, when ``--format`` is not given.
_FORMAT_OF_SUFFIX = {".html": "html", ".htm": "html", ".csv": "csv", ".json": "json", ".md": "markdown"}
#: ``--by`` choices (pipelines.analytics.versions.BY_FIELDS, here too so ``--help`` needs no heavy import).
_BY_FIELDS = ("service.version", "service.environment", "host.hostname", "celery.worker", "celery.queue")
#: Seconds before the progress line appears: quick reports print nothing extra.
_PROGRESS_AFTER = 1.0


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``report``, ``search``, ``task`` and ``lost`` to the ``celery-logs`` parser."""
    p = subparsers.add_parser(
        "report",
        help="task statistics, exception groups, lost and slowest tasks over a time window",
        description="Per-task runs, failures, retries, run-time and queue-wait percentiles with the change "
        "against the previous window; top exception groups with a traceback; lost tasks; slowest runs; "
        "per-worker and per-queue summaries. All from Elasticsearch aggregations.",
    )
    _window_arguments(p, default_since="24h")
    _filter_arguments(p)
    p.add_argument(
        "--format",
        metavar="FMT",
        help=f"one of {', '.join(_FORMATS)} (default: from --out's extension, else table)",
    )
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument(
        "--csv-section",
        default="tasks",
        metavar="NAME",
        help="with --format csv: tasks, by_version, errors, lost, periodic, slowest, queue_depth, workers or "
        "queues (default tasks)",
    )
    p.add_argument(
        "--by",
        choices=_BY_FIELDS,
        metavar="FIELD",
        help=f"each task's runs, failure %% and p50/p95 side by side per value of FIELD ({', '.join(_BY_FIELDS)})",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="only values A and B of --by (default service.version) side by side, with the change from A to B",
    )
    p.add_argument(
        "--stuck-after",
        default="5m",
        metavar="DURATION",
        help="a periodic task not started this long after beat sent it is stuck (default 5m)",
    )
    p.add_argument(
        "--missed-grace",
        default="1m",
        metavar="DURATION",
        help="a due time this far past with nothing sent is missed (default 1m)",
    )
    p.add_argument("--top-errors", type=_positive_int, default=10, metavar="N", help="exception groups shown")
    p.add_argument("--slowest", type=_positive_int, default=10, metavar="N", help="slowest runs shown")
    _lost_arguments(p)
    _index_arguments(p)
    add_arguments(p)
    p.set_defaults(func=run_report)

    s = subparsers.add_parser(
        "search",
        help="find records by a Lucene/KQL-like query, newest first, tracebacks readable",
        description="Search records: bare words match the message, the error and its traceback; "
        "field:value pairs, quotes, wildcards, and/or/not work as in Kibana.",
    )
    s.add_argument("query", nargs="?", default="", help="query string (empty: every record)")
    _window_arguments(s, default_since="1h")
    _filter_arguments(s)
    s.add_argument("--size", type=_positive_int, default=50, metavar="N", help="records shown (default 50)")
    s.add_argument("--json", action="store_true", help="one JSON record per line, for scripts")
    s.add_argument("--follow", action="store_true", help="keep watching and print new matches as they arrive")
    s.add_argument("--interval", type=float, default=2.0, metavar="SECONDS", help="--follow polling interval")
    _colour_argument(s)
    _index_arguments(s, entity=False)
    add_arguments(s)
    s.set_defaults(func=run_search)

    t = subparsers.add_parser(
        "task",
        help="the whole history of one task and its workflow, as a timeline",
        description="Every record of the task, oldest first, and every task of its workflow (same root id).",
    )
    t.add_argument("task_id", metavar="ID")
    t.add_argument("--json", action="store_true", help="the timeline as JSON")
    _colour_argument(t)
    _index_arguments(t, entity=False)
    add_arguments(t)
    t.set_defaults(func=run_task)

    lost = subparsers.add_parser(
        "lost",
        help="tasks in flight on a worker that went away (offline, restarted or silent)",
        description="List lost tasks; with --mark also flag them (lost: true) in the entity index, "
        "which the Kibana 'lost tasks' saved search shows.",
    )
    lost.add_argument("--mark", action="store_true", help="write lost/lost_reason/lost_detected_at to the entity index")
    lost.add_argument("--json", action="store_true", help="one JSON object per lost task")
    _lost_arguments(lost)
    _index_arguments(lost)
    add_arguments(lost)
    lost.set_defaults(func=run_lost)


# --- shared options --------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _window_arguments(p: argparse.ArgumentParser, *, default_since: str) -> None:
    p.add_argument(
        "--since",
        default=default_since,
        metavar="WHEN",
        help=f"start: a duration ago (30m, 24h, 7d) or ISO-8601 (default {default_since})",
    )
    p.add_argument("--until", metavar="WHEN", help="end: a duration ago or ISO-8601 (default now)")


def _filter_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters (repeat a flag for several values)")
    g.add_argument("--task", dest="tasks", action="append", default=[], metavar="NAME", help="task name")
    g.add_argument("--queue", dest="queues", action="append", default=[], metavar="Q", help="queue")
    g.add_argument("--worker", dest="workers", action="append", default=[], metavar="W", help="worker node name")
    g.add_argument("--service", dest="services", action="append", default=[], metavar="S", help="service.name")
    g.add_argument("--env", dest="environments", action="append", default=[], metavar="E", help="environment")


def _index_arguments(p: argparse.ArgumentParser, *, entity: bool = True) -> None:
    p.add_argument(
        "--index-prefix",
        default=_schema.DEFAULT_INDEX_PREFIX,
        metavar="PREFIX",
        help=f"record indices are PREFIX-YYYY.MM.DD (default {_schema.DEFAULT_INDEX_PREFIX})",
    )
    if entity:
        p.add_argument(
            "--tasks-index",
            default=_schema.DEFAULT_TASKS_INDEX,
            metavar="NAME",
            help=f"entity index, one document per task (default {_schema.DEFAULT_TASKS_INDEX})",
        )


def _lost_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--heartbeat-timeout",
        default="5m",
        metavar="DURATION",
        help="a worker that announces no heartbeat interval (older celery-logs) and is silent this long has "
        "lost its in-flight tasks (default 5m); others are judged against 2 of their own intervals + 3 s",
    )


def _colour_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="ANSI colours (default auto)")


def _style(args: argparse.Namespace, stream: TextIO) -> Style:
    from pipelines.analytics import Style

    if args.color == "always":
        return Style(colour=True)
    if args.color == "never" or os.environ.get("NO_COLOR"):
        return Style(colour=False)
    return Style(colour=stream.isatty())


def _now() -> datetime:
    from pipelines.analytics import utcnow

    return utcnow()


def _window(args: argparse.Namespace, now: datetime) -> Window:
    from pipelines.analytics import TimeParseError, Window

    try:
        return Window.parse(args.since, args.until, now=now)
    except TimeParseError as exc:
        raise CliError(str(exc), exit_code=EXIT_USAGE) from None


def _duration(text: str, flag: str) -> Any:
    from pipelines.analytics import TimeParseError, parse_duration

    try:
        return parse_duration(text)
    except TimeParseError as exc:
        raise CliError(f"{flag}: {exc}", exit_code=EXIT_USAGE) from None


def _filters(args: argparse.Namespace) -> Filters:
    from pipelines.analytics import Filters

    return Filters(
        tasks=tuple(args.tasks),
        queues=tuple(args.queues),
        workers=tuple(args.workers),
        services=tuple(args.services),
        environments=tuple(args.environments),
    )


def _client(args: argparse.Namespace) -> Elasticsearch:
    # One try per node: an unreachable cluster is reported at once, a dead node among live ones is skipped.
    settings = ConnectionSettings.from_args(args)
    return settings.client(max_retries=0 if settings.cloud_id else len(settings.urls) - 1)


def _write(text: str, out: str | None) -> None:
    if out is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    path = Path(out)
    try:
        # Write beside the target and rename: a failed run never leaves half a report behind.
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise CliError(f"cannot write {out}: {exc.strerror}") from None


class _ProgressLine:
    """A one-line progress indicator on stderr, only on a terminal and only after a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()
        self.shown = False
        self.enabled = stream.isatty()

    def __call__(self, what: str, pages: int) -> None:
        if not self.enabled or time.monotonic() - self.started < _PROGRESS_AFTER:
            return
        bar = "#" * min(pages, 30)
        self.stream.write(f"\r\x1b[2Kreading {what:<16} [{bar:<30}] {pages} requests")
        self.stream.flush()
        self.shown = True

    def done(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()


# --- commands --------------------------------------------------------------------------------------


def run_report(args: argparse.Namespace) -> int:
    from pipelines.analytics import RenderError, ReportSettings, build_report, render

    fmt = args.format or (_FORMAT_OF_SUFFIX.get(Path(args.out).suffix.lower(), "table") if args.out else "table")
    if fmt not in _FORMATS:
        raise CliError(f"unknown --format {fmt!r} (choose from {', '.join(_FORMATS)})", exit_code=EXIT_USAGE)
    now = _now()
    settings = ReportSettings(
        window=_window(args, now),
        filters=_filters(args),
        prefix=args.index_prefix,
        tasks_index=args.tasks_index,
        top_errors=args.top_errors,
        slowest=args.slowest,
        heartbeat_timeout=_duration(args.heartbeat_timeout, "--heartbeat-timeout"),
        stuck_after=_duration(args.stuck_after, "--stuck-after"),
        missed_grace=_duration(args.missed_grace, "--missed-grace"),
        compare_by=args.by or ("service.version" if args.compare else None),
        compare_values=tuple(args.compare or ()),
    )
    es = _client(args)
    progress = _ProgressLine(sys.stderr)
    try:
        report = build_report(es, settings, now=now, progress=progress)
    finally:
        progress.done()
        es.close()
    try:
        text = render(report, fmt, csv_section=args.csv_section)
    except RenderError as exc:
        raise CliError(str(exc), exit_code=EXIT_USAGE) from None
    _write(text, args.out)
    if args.out:
        sys.stderr.write(f"report written to {args.out}\n")
    return EXIT_OK


def run_search(args: argparse.Namespace) -> int:
    from pipelines.analytics import QueryError, follow, hit_json, render_hit, search

    now = _now()
    window = _window(args, now)
    filters = _filters(args)
    style = _style(args, sys.stdout)
    show: Callable[[Any], str] = hit_json if args.json else (lambda h: render_hit(h, style=style))
    es = _client(args)
    try:
        try:
            hits = search(
                es, query=args.query, window=window, prefix=args.index_prefix, filters=filters, size=args.size
            )
        except QueryError as exc:
            raise CliError(str(exc), exit_code=EXIT_USAGE) from None
        for hit in hits:
            sys.stdout.write(show(hit) + "\n")
        sys.stdout.flush()
        if not args.follow:
            if not hits and not args.json:
                sys.stderr.write("no matching records\n")
            return EXIT_OK
        after = hits[0].sort if hits else None
        for batch in follow(
            es, query=args.query, window=window, after=after, prefix=args.index_prefix, filters=filters
        ):
            for hit in batch:
                sys.stdout.write(show(hit) + "\n")
            sys.stdout.flush()
            if not batch:
                time.sleep(args.interval)  # polling pace for --follow, not a wait for a test outcome
    finally:
        es.close()
    return EXIT_OK  # pragma: no cover - --follow ends by Ctrl-C


def run_task(args: argparse.Namespace) -> int:
    import json

    from pipelines.analytics import render_timeline, task_timeline, timeline_dict

    es = _client(args)
    try:
        tl = task_timeline(es, task_id=args.task_id, prefix=args.index_prefix)
    finally:
        es.close()
    if args.json:
        sys.stdout.write(json.dumps(timeline_dict(tl), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(render_timeline(tl, style=_style(args, sys.stdout)) + "\n")
    return EXIT_OK


def run_lost(args: argparse.Namespace) -> int:
    import json

    from pipelines.analytics import CLASS_REQUEUED, CLASSES, LISTED, NoDataError, find_lost_tasks, iso, mark_lost_tasks

    timeout = _duration(args.heartbeat_timeout, "--heartbeat-timeout")
    now = _now()
    es = _client(args)
    try:
        if not es.indices.exists(index=args.tasks_index):
            raise NoDataError(f"the entity index {args.tasks_index!r} does not exist yet: has the shipper run?")
        if args.mark:
            result = mark_lost_tasks(
                es, prefix=args.index_prefix, tasks_index=args.tasks_index, now=now, heartbeat_timeout=timeout
            )
            lost = list(result.lost)
        else:
            lost = find_lost_tasks(
                es, prefix=args.index_prefix, tasks_index=args.tasks_index, now=now, heartbeat_timeout=timeout,
                classes=CLASSES,
            )  # fmt: skip
    finally:
        es.close()
    requeued = sum(t.lost_class == CLASS_REQUEUED for t in lost)
    listed = [t for t in lost if t.lost_class != CLASS_REQUEUED]
    for t in listed:
        if args.json:
            row = {
                "task_id": t.task_id,
                "name": t.name,
                "worker": t.worker,
                "queue": t.queue,
                "reason": t.reason,
                "since": iso(t.since),
                "worker_gone_at": iso(t.worker_gone_at) if t.worker_gone_at else None,
                "class": t.lost_class,
                "acks_late": t.acks_late,
            }
            sys.stdout.write(json.dumps(row) + "\n")
        else:
            sys.stdout.write(
                f"{t.task_id}  {t.name}  on {t.worker} since {iso(t.since)}  {t.lost_class}  ({t.reason})\n"
            )
    counts = ", ".join(f"{sum(t.lost_class == c for t in listed)} {c}" for c in LISTED)
    also = f"; {requeued} requeued (back in the queue, not listed)" if requeued else ""
    if args.mark:
        sys.stderr.write(f"{counts}{also}; {result.newly_marked} newly marked, {result.cleared} cleared\n")
    elif not listed and not args.json:
        sys.stderr.write(f"no lost tasks{also}\n")
    elif not args.json:
        sys.stderr.write(f"{counts}{also}\n")
    return EXIT_OK
