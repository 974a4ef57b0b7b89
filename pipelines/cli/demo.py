"""``celery-logs demo``: the end-to-end demo (the README's main command)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pipelines.kibana import OPENSEARCH_DASHBOARDS, objects_dir, shipped_ndjson


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``demo``."""
    demo = subparsers.add_parser(
        "demo",
        help="run the end-to-end demo on this machine (local Elasticsearch, Redis, a real worker)",
        description="Start a local Elasticsearch and Redis, run a real prefork worker on a sample app whose tasks "
        "succeed, fail, retry, run slow, get revoked, hit a hard time limit and get lost in a worker crash; ship "
        "the logs, detect the lost task, print the report and write it as HTML. Stops everything it started.",
    )
    demo.add_argument("--out", type=Path, default=Path("demo-output"), help="where logs and report go (./demo-output)")
    demo.add_argument(
        "--engine", choices=("elasticsearch", "opensearch"), default="elasticsearch",
        help="run it on a local Elasticsearch (default) or OpenSearch",
    )  # fmt: skip
    demo.set_defaults(func=_demo)


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _demo(args: argparse.Namespace) -> int:
    from pipelines.dev import run_demo

    out = args.out.resolve()
    result = run_demo(out_dir=out, say=_say, engine=args.engine)
    _say("")
    _say(result.report_text.rstrip())
    _say("")
    _say(f"The report as HTML: {result.report_html}")
    _say(f"The worker's JSON lines: {out / 'logs'}")
    if result.killed_task_id in result.lost_task_ids:
        _say(f"Lost-task detection found the task the crash lost: {result.killed_task_id}")
    if args.engine == "opensearch":
        _say(f"OpenSearch Dashboards objects: {shipped_ndjson(OPENSEARCH_DASHBOARDS)}; import them with")
        _say("  celery-logs kibana import --target opensearch-dashboards --kibana http://localhost:5601")
        return 0
    objects = objects_dir()
    _say(f"Kibana objects: {objects / 'celery-logs.ndjson'}; import them into your Kibana with")
    _say("  celery-logs kibana import --kibana http://localhost:5601   (or: docker compose up, which does it)")
    return 0
