"""``celery-logs dev up|down|status``: a local Elasticsearch for trying celery-logs without Docker."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pipelines import dev as _devstack


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``dev`` and its actions."""
    dev = subparsers.add_parser(
        "dev",
        help="run a local single-node Elasticsearch or OpenSearch (no Docker needed)",
        description="Fetch (once, cached), start, inspect and stop a local single-node Elasticsearch "
        f"{_devstack.ES_VERSION} on 127.0.0.1, from the server build Elastic publishes on Maven Central.",
    )
    actions = dev.add_subparsers(dest="dev_action", metavar="ACTION", required=True)
    up = actions.add_parser("up", help="start it (no-op when it runs)")
    up.add_argument("--port", type=int, default=9200, help="HTTP port on 127.0.0.1 (default 9200)")
    up.add_argument("--heap", default="1g", help="JVM heap per node, e.g. 512m or 2g (default 1g)")
    up.add_argument("--nodes", type=_node_count, default=1,
                    help="nodes of the cluster: several form one cluster on loopback (default 1)")
    up.add_argument(
        "--engine", choices=("elasticsearch", "opensearch"), default="elasticsearch",
        help=f"Elasticsearch {_devstack.ES_VERSION} (default) or OpenSearch {_devstack.OPENSEARCH_VERSION}",
    )  # fmt: skip
    up.set_defaults(func=_up)
    down = actions.add_parser("down", help="stop it")
    down.add_argument("--purge", action="store_true", help="also delete its data")
    down.set_defaults(func=_down)
    status = actions.add_parser("status", help="say whether it runs (exit 0 if healthy, 3 if not)")
    status.add_argument("--json", action="store_true", help="print the state as JSON")
    status.set_defaults(func=_status)
    fetch = actions.add_parser("fetch", help="download and unpack the distribution only")
    fetch.add_argument(
        "--engine", choices=("elasticsearch", "opensearch", "both"), default="elasticsearch",
        help="which distribution (default elasticsearch)",
    )  # fmt: skip
    fetch.set_defaults(func=_fetch)


def _node_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= value <= 9:
        raise argparse.ArgumentTypeError(f"must be 1 to 9, not {value}")
    return value


def _up(args: argparse.Namespace) -> int:
    state = _devstack.dev_up(port=args.port, heap=args.heap, nodes=args.nodes, engine=args.engine)
    product = "OpenSearch" if state.get("engine") == "opensearch" else "Elasticsearch"
    nodes = state.get("nodes", 1)
    what = f"a {nodes}-node cluster" if nodes > 1 else "up"
    where = f"at {state['url']}" if nodes == 1 else f"at --es {state['url']}"
    sys.stdout.write(f"{product} {state['version']} is {what} {where} (data in {state['workdir']})\n")
    return 0


def _down(args: argparse.Namespace) -> int:
    stopped = _devstack.dev_down(purge=args.purge)
    sys.stdout.write("stopped\n" if stopped else "not running\n")
    return 0


def _status(args: argparse.Namespace) -> int:
    state = _devstack.dev_status()
    if args.json:
        sys.stdout.write(json.dumps(state) + "\n")
    elif state.get("running"):
        health = "healthy" if state.get("healthy") else "not answering"
        if "pids" in state:
            sys.stdout.write(
                f"{state['nodes_running']} of {state['nodes']} nodes running at {state['url']} ({health})\n"
            )
        else:
            sys.stdout.write(f"running at {state['url']} (pid {state['pid']}, {health})\n")
    else:
        sys.stdout.write("not running (start it with: celery-logs dev up)\n")
    return 0 if state.get("healthy") else 3


def _fetch(args: argparse.Namespace) -> int:
    java = _devstack.find_java_home()
    if args.engine in ("elasticsearch", "both"):
        home = _devstack.ensure_distribution()
        sys.stdout.write(f"Elasticsearch {_devstack.ES_VERSION} in {home}; Java at {java}\n")
    if args.engine in ("opensearch", "both"):
        home = _devstack.ensure_opensearch_distribution()
        sys.stdout.write(f"OpenSearch {_devstack.OPENSEARCH_VERSION} in {home}; Java at {java}\n")
    return 0
