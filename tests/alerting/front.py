"""A test-only front for the Elasticsearch node: answers ``GET /`` and passes every other request through.

The server-core build the tests run lacks the ``rest-root`` module, so ``GET /`` answers 405; ElastAlert 2
reads the server version from ``GET /`` at start-up (``util.get_version_from_cluster_info``). This front
answers ``GET /`` with the node's real version (read from ``GET /_nodes/_local``) in the shape
``rest-root`` gives, and forwards everything else unchanged: method, path, query, headers and body.
A full Elasticsearch (the Docker image, Elastic Cloud) answers ``GET /`` itself and needs no front.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "host", "content-length"}


def node_root(es_url: str) -> dict[str, Any]:
    """What ``GET /`` of a full Elasticsearch answers, built from the node's own ``_nodes`` info."""
    with urllib.request.urlopen(f"{es_url}/_nodes/_local", timeout=30) as resp:
        info = json.loads(resp.read())
    (node,) = info["nodes"].values()
    return {
        "name": node["name"],
        "cluster_name": info["cluster_name"],
        "version": {"number": node["version"], "build_flavor": "default", "build_type": "zip"},
        "tagline": "You Know, for Search",
    }


@dataclass
class Front:
    """The front's state: where the node is, what ``GET /`` answers, and how many requests passed."""

    es_url: str
    root: dict[str, Any] = field(default_factory=dict)
    url: str = ""
    forwarded: int = 0
    roots: int = 0


@contextmanager
def running(es_url: str) -> Iterator[Front]:
    """Serve a front for ``es_url`` on a free local port for the duration of the block."""
    front = Front(es_url=es_url, root=node_root(es_url))
    target = urllib.parse.urlsplit(es_url)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes: without TCP_NODELAY each answer waits on a delayed ACK.
        disable_nagle_algorithm = True

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else None
            if self.command in ("GET", "HEAD") and urllib.parse.urlsplit(self.path).path == "/":
                front.roots += 1
                self._answer(200, {"content-type": "application/json"}, json.dumps(front.root).encode())
                return
            front.forwarded += 1
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                kept = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP}
                self._answer(resp.status, kept, data)
            finally:
                conn.close()

        def _answer(self, status: int, headers: dict[str, str], data: bytes) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the test asserts what the engine and the receiver hold."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    front.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield front
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
