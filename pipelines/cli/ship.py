"""``celery-logs ship``, ``setup`` and ``prune``: move log files into Elasticsearch and keep it tidy.

Exit codes of ``ship``: 0 everything shipped (also after SIGTERM/SIGINT, once the checkpoint is saved);
4 some lines were dead-lettered; 3 Elasticsearch refused the credentials; 1 the shipper cannot run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery_logs._schema import DEFAULT_INDEX_PREFIX, DEFAULT_TASKS_INDEX, daily_indices
from pipelines._connection import ConnectionSettings, add_arguments
from pipelines._errors import EXIT_OK, EXIT_PARTIAL, EXIT_UNAVAILABLE, CliError
from pipelines.ship import DEFAULT_BATCH_DOCS

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from pipelines._prune import TaskPruneResult
    from pipelines._setup import SetupResult
    from pipelines.analytics import LostTaskSweeper
    from pipelines.ship import ShipperConfig, ShipStats

ENV_STATE_DIR = "CELERY_LOGS_STATE_DIR"
log = logging.getLogger("celery_logs.shipper")


def default_state_dir() -> Path:
    env = os.environ.get(ENV_STATE_DIR)
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "celery-logs" / "ship"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``ship``, ``setup`` and ``prune`` to the `celery-logs` parser."""
    ship = subparsers.add_parser(
        "ship",
        help="ship JSON log files (or stdin) to Elasticsearch, following them like tail -F",
        description="Read JSON lines from files (globs; - for stdin), index each record once into its daily "
        "index, and remember per file how far Elasticsearch acknowledged. Installs the index template first.",
    )
    ship.add_argument("paths", nargs="+", metavar="PATH", help="files or globs (quote them) to read; - for stdin")
    ship.add_argument("--once", action="store_true", help="stop at the end of the input instead of following")
    ship.add_argument(
        "--state-dir", type=Path, default=None, metavar="DIR",
        help=f"checkpoint, dead-letter file and lock (env {ENV_STATE_DIR}; default ~/.local/state/celery-logs/ship)",
    )
    _add_index_arguments(ship)
    ship.add_argument("--skip-setup", action="store_true", help="do not install the index template first")
    ship.add_argument("--lost-interval", type=float, default=5.0, metavar="SECONDS",
                      help="while following, mark lost tasks in the entity index this often, and every second "
                      "for a while after a worker shuts down, goes offline or starts; 0: never (default 5)")
    ship.add_argument("--heartbeat-timeout", type=float, default=300.0, metavar="SECONDS",
                      help="a worker that announces no heartbeat interval (older celery-logs) and is silent this "
                      "long has lost its in-flight tasks (default 300)")
    tuning = ship.add_argument_group("batching")
    tuning.add_argument("--batch-docs", type=_positive_int, default=DEFAULT_BATCH_DOCS, metavar="N",
                        help=f"operations per request (default {DEFAULT_BATCH_DOCS})")
    tuning.add_argument("--batch-bytes", type=_positive_int, default=8 << 20, metavar="BYTES",
                        help="bytes per request (default 8 MiB)")
    tuning.add_argument("--batch-wait", type=float, default=1.0, metavar="SECONDS",
                        help="longest wait of a queued operation (default 1)")
    tuning.add_argument("--in-flight", type=_positive_int, default=2, metavar="N",
                        help="concurrent requests (default 2)")
    tuning.add_argument("--max-line-bytes", type=_positive_int, default=1 << 20, metavar="BYTES",
                        help="longer lines are dead-lettered (default 1 MiB)")
    tuning.add_argument("--shutdown-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="on SIGTERM, how long to wait for requests in flight (default 10)")
    ship.add_argument("--stats", action="store_true", help="print the run's counters as one JSON line at exit")
    ship.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                      help="a progress line on stderr (default: when stderr is a terminal)")
    ship.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    add_arguments(ship)
    ship.set_defaults(func=_ship)

    setup = subparsers.add_parser(
        "setup", help="install the index template and the entity index (ship does this itself)"
    )
    _add_index_arguments(setup)
    add_arguments(setup)
    setup.set_defaults(func=_setup)

    prune = subparsers.add_parser(
        "prune", help="delete daily indices older than a bound, and those tasks' entity documents (dry run by default)"
    )
    prune.add_argument("--keep", required=True, metavar="AGE", help="how much to keep, e.g. 30d or 8w")
    prune.add_argument("--index-prefix", default=DEFAULT_INDEX_PREFIX, metavar="PREFIX")
    group = prune.add_mutually_exclusive_group()
    group.add_argument("--tasks-index", default=DEFAULT_TASKS_INDEX, metavar="NAME",
                       help="the entity index: its documents of tasks whose every record is older than the bound "
                       f"go too (default {DEFAULT_TASKS_INDEX})")
    group.add_argument("--no-tasks-index", action="store_true", help="leave the entity index alone")
    prune.add_argument("--apply", action="store_true", help="really delete (without it: only show what would go)")
    add_arguments(prune)
    prune.set_defaults(func=_prune)


def _add_index_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index-prefix", default=DEFAULT_INDEX_PREFIX, metavar="PREFIX",
                        help=f"daily indices are PREFIX-YYYY.MM.DD (default {DEFAULT_INDEX_PREFIX})")
    parser.add_argument("--replicas", type=_non_negative_int, default=None, metavar="N",
                        help="replicas of every index; given, it is applied to existing indices too "
                        "(default: 1 when the cluster has more than one data node, else 0, for new indices)")
    parser.add_argument("--shards", type=_positive_int, default=None, metavar="N",
                        help="primary shards of indices created from now on (default 1)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--tasks-index", default=DEFAULT_TASKS_INDEX, metavar="NAME",
                       help=f"the entity index, one document per task (default {DEFAULT_TASKS_INDEX})")
    group.add_argument("--no-tasks-index", action="store_true", help="do not maintain the entity index")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _tasks_index(args: argparse.Namespace) -> str | None:
    return None if args.no_tasks_index else args.tasks_index


# --- ship -------------------------------------------------------------------------------------------------


def _ship(args: argparse.Namespace) -> int:
    from pipelines.ship import Shipper, ShipperConfig, ShipperError, configure_json_logging

    configure_json_logging(sys.stderr, level=getattr(logging, args.log_level.upper()))
    if args.paths.count("-") > 1:
        raise CliError("stdin (-) can be given once")
    settings = ConnectionSettings.from_args(args)
    client = settings.client()
    stop = threading.Event()
    shipper: Shipper | None = None

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()
        if shipper is not None:
            shipper.request_stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not args.skip_setup:
            _setup_with_retry(client, args, stop, where=settings.display)
        if stop.is_set():
            return EXIT_OK
        config = ShipperConfig(
            paths=tuple(args.paths),
            state_dir=args.state_dir or default_state_dir(),
            index_prefix=args.index_prefix,
            tasks_index=_tasks_index(args),
            follow=not args.once,
            batch_max_docs=args.batch_docs,
            batch_max_bytes=args.batch_bytes,
            batch_max_wait=args.batch_wait,
            in_flight=args.in_flight,
            max_line_bytes=args.max_line_bytes,
            shutdown_timeout=args.shutdown_timeout,
        )
        show = sys.stderr.isatty() if args.progress is None else args.progress
        shipper = Shipper(config, client=client, on_progress=_progress_line if show else None)
        sweeper = _lost_sweeper(client, args, config)
        try:
            stats = shipper.run()
        except ShipperError as exc:
            code = EXIT_UNAVAILABLE if "credentials" in str(exc) else 1
            raise CliError(str(exc), exit_code=code) from None
        finally:
            if sweeper is not None:
                sweeper.stop()
        if show:
            sys.stderr.write("\n")
        # The input ended (--once, or stdin closed): what was shipped should be searchable on return.
        if not stats.stopped_by_signal and (stats.shipped or stats.tasks_updated):
            _make_searchable(client, config)
        if args.stats:
            sys.stdout.write(json.dumps(stats.as_dict()) + "\n")
            sys.stdout.flush()
        return EXIT_PARTIAL if stats.dead_lettered else EXIT_OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        client.close()


def _make_searchable(client: Elasticsearch, config: ShipperConfig) -> None:
    """Refresh what a run that reached the end of its input wrote, so a query run right after sees all of it.

    Otherwise the last records would appear only at the indices' next refresh (5 s for the record indices;
    later still for a copy that is search-idle or was just promoted when a node died). A shipper allowed to
    write but not to refresh (the ``maintenance`` privilege) still exits 0, with a warning.
    """
    from elastic_transport import TransportError
    from elasticsearch import ApiError

    targets = ",".join(filter(None, [daily_indices(config.index_prefix), config.tasks_index]))
    try:
        client.options(request_timeout=120).indices.refresh(index=targets, ignore_unavailable=True,
                                                            allow_no_indices=True)
    except (ApiError, TransportError) as exc:
        log.warning(
            "shipped, but could not refresh; the last records become searchable at the next refresh",
            extra={"indices": targets, "error": str(exc)[:300]},
        )


def _lost_sweeper(client: Elasticsearch, args: argparse.Namespace, config: ShipperConfig) -> LostTaskSweeper | None:
    """In follow mode with an entity index, keep the `lost` flags current (see pipelines.analytics.lost)."""
    from pipelines.analytics import LostTaskSweeper

    if not config.follow or config.tasks_index is None or args.lost_interval <= 0:
        return None
    return LostTaskSweeper(
        client, prefix=config.index_prefix, tasks_index=config.tasks_index, interval=args.lost_interval,
        heartbeat_timeout=timedelta(seconds=args.heartbeat_timeout),
    ).start()  # fmt: skip


def _setup_with_retry(client: Elasticsearch, args: argparse.Namespace, stop: threading.Event, *, where: str) -> None:
    """Install the template, waiting for a cluster that is not up yet (like the bulk requests do)."""
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import ConnectionTimeout, TlsError

    from pipelines.ship import Backoff

    backoff = Backoff(base=0.5, cap=10.0)
    attempt = 0
    while not stop.is_set():
        try:
            with refusals_as_cli_errors():
                result = _install(client, args)
            log.info(_settings_line(result), extra={"replicas": result.replicas, "shards": result.shards})
            return
        except TlsError:
            raise  # a certificate that cannot be verified will not verify later: one line, exit 3
        except (TransportConnectionError, ConnectionTimeout) as exc:
            if attempt == 0:
                log.warning(
                    "Elasticsearch not reachable for setup; retrying", extra={"es": where, "error": str(exc)[:300]}
                )
            stop.wait(backoff.delay(attempt))
            attempt += 1


@contextlib.contextmanager
def refusals_as_cli_errors() -> Iterator[None]:
    """Elasticsearch refusing a request (credentials, privileges, a bad name) as a one-line user error."""
    from elasticsearch import ApiError

    try:
        yield
    except ApiError as exc:
        status = exc.meta.status
        code = EXIT_UNAVAILABLE if status in (401, 403) else 1
        what = {401: "refused the credentials", 403: "refused the privileges"}.get(status, "refused the request")
        raise CliError(f"Elasticsearch {what} ({status}): {_reason(exc)}", exit_code=code) from None


def _reason(exc: Any) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("reason") or body["error"].get("type"))[:300]
    return str(exc.message)[:300]


def _progress_line(stats: ShipStats) -> None:
    sys.stderr.write(
        f"\rshipped {stats.shipped:,} ({stats.per_second:,.0f}/s)  duplicates {stats.duplicates:,}  "
        f"lag {stats.lag_bytes / 1e6:,.1f} MB  retried {stats.retried:,}  dead-lettered {stats.dead_lettered:,}  "
    )
    sys.stderr.flush()


# --- setup / prune ----------------------------------------------------------------------------------------------


def _setup(args: argparse.Namespace) -> int:
    settings = ConnectionSettings.from_args(args)
    client = settings.client()
    try:
        with refusals_as_cli_errors():
            result = _install(client, args)
    finally:
        client.close()
    tasks = "" if result.tasks_index is None else (
        f"; entity index {result.tasks_index} {'created' if result.tasks_index_created else 'up to date'}"
    )
    sys.stdout.write(
        f"index template {result.template} installed for {args.index_prefix}-* (error.stack_trace as "
        f"{result.stack_trace_type}){tasks}\n"
    )
    sys.stdout.write(_settings_line(result) + "\n")
    return EXIT_OK


def _install(client: Elasticsearch, args: argparse.Namespace) -> SetupResult:
    from pipelines._setup import install

    return install(
        client, index_prefix=args.index_prefix, tasks_index=_tasks_index(args),
        replicas=args.replicas, shards=args.shards,
    )  # fmt: skip


def _settings_line(result: SetupResult) -> str:
    """Which replicas and shards were chosen and why, and what changed on existing indices."""
    line = f"replicas {result.replicas} ({result.replicas_reason}), shards {result.shards}"
    if result.replicas_updated:
        n = len(result.replicas_updated)
        line += f"; replicas set to {result.replicas} on {n} existing ind{'ex' if n == 1 else 'ices'}"
    if result.tasks_index_shards is not None:
        line += (
            f"; the entity index keeps its {result.tasks_index_shards} shards "
            "(shards cannot change in place)"
        )
    return line


def _tasks_pruned_line(result: TaskPruneResult, *, applied: bool) -> str:
    """One line on the entity index: how many task documents go (or went), and why."""
    if not result.exists:
        return f"entity index {result.tasks_index}: does not exist, nothing to prune"
    count, verb = (result.deleted, "deleted") if applied else (result.stale, "to delete")
    line = (
        f"entity index {result.tasks_index}: {count} task documents {verb} "
        f"(every record of the task before {result.cutoff.isoformat()})"
    )
    if result.changed:
        line += f"; {result.changed} kept, written again while pruning"
    return line


def _prune(args: argparse.Namespace) -> int:
    from pipelines import _prune

    try:
        keep = _prune.parse_keep(args.keep)
    except ValueError as exc:
        raise CliError(str(exc), exit_code=2) from None
    settings = ConnectionSettings.from_args(args)
    client = settings.client()
    try:
        with refusals_as_cli_errors():
            prune_plan = _prune.plan(client, index_prefix=args.index_prefix, keep=keep)
        verb = "deleting" if args.apply else "would delete"
        for name in prune_plan.delete:
            sys.stdout.write(f"{verb} {name}\n")
        tasks_index = _tasks_index(args)
        tasks = None
        if tasks_index is not None:
            # The entity documents first: if this stops half-way, the records are all still there.
            with refusals_as_cli_errors():
                try:
                    tasks = _prune.prune_tasks(
                        client, tasks_index=tasks_index, cutoff=prune_plan.cutoff, apply=args.apply
                    )
                except _prune.TaskPruneError as exc:
                    raise CliError(str(exc)) from None
        if args.apply:
            with refusals_as_cli_errors():
                _prune.apply(client, prune_plan)
        if tasks is not None:
            sys.stdout.write(_tasks_pruned_line(tasks, applied=args.apply) + "\n")
        sys.stdout.write(
            f"{len(prune_plan.delete)} indices {'deleted' if args.apply else 'to delete'} (days before "
            f"{prune_plan.cutoff.isoformat()}), {len(prune_plan.keep)} kept"
            + ("" if args.apply else "; dry run, add --apply to delete")
            + "\n"
        )
    finally:
        client.close()
    return EXIT_OK
