"""Several nodes named on the command line, and what the shipper does when one dies mid-request (no cluster)."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines._connection import ConnectionConfigError, ConnectionSettings, add_arguments, parse_urls
from pipelines.cli import main
from pipelines.ship.batch import Op
from pipelines.ship.bulk import Backoff, BulkSender, ElasticsearchSink, ItemResult, RequestFailed
from pipelines.ship.reader import Line, Source


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_a_comma_separated_list_names_every_node() -> None:
    """`--es` with three URLs (spaces allowed) gives the client three hosts, in order."""
    settings = ConnectionSettings.from_args(_args("--es", "http://n1:9200, http://n2:9200 ,https://n3"), environ={})
    assert settings.urls == ("http://n1:9200", "http://n2:9200", "https://n3")
    kwargs = settings.client_kwargs()
    assert kwargs["hosts"] == ["http://n1:9200", "http://n2:9200", "https://n3"]
    assert (kwargs["max_retries"], kwargs["retry_on_timeout"]) == (3, True)
    assert (kwargs["dead_node_backoff_factor"], kwargs["max_dead_node_backoff"]) == (1.0, 30.0)
    assert "sniff_on_start" not in kwargs


def test_the_environment_variable_takes_a_list_too() -> None:
    """CELERY_LOGS_ES_URL with several URLs; credentials in them never show in `display`."""
    env = {"CELERY_LOGS_ES_URL": "http://u:pw@n1:9200,http://u:pw@n2:9200"}
    settings = ConnectionSettings.from_args(_args(), environ=env)
    assert settings.urls == ("http://u:pw@n1:9200", "http://u:pw@n2:9200")
    assert settings.display == "http://n1:9200,http://n2:9200"


def test_one_url_keeps_the_client_defaults_for_timeouts() -> None:
    """A single node: no retry of a timed-out request (there is no other node to try)."""
    kwargs = ConnectionSettings(url="http://127.0.0.1:9200").client_kwargs()
    assert kwargs["hosts"] == ["http://127.0.0.1:9200"]
    assert (kwargs["max_retries"], kwargs["retry_on_timeout"]) == (3, False)


def test_sniff_asks_the_cluster_for_its_nodes() -> None:
    """`--sniff` turns on sniffing at start and after a node failure; with a Cloud id it is refused."""
    kwargs = ConnectionSettings.from_args(_args("--es", "http://n1:9200", "--sniff"), environ={}).client_kwargs()
    assert (kwargs["sniff_on_start"], kwargs["sniff_on_node_failure"]) == (True, True)
    with pytest.raises(ConnectionConfigError, match="--sniff cannot be used with a Cloud id"):
        ConnectionSettings.from_args(_args("--cloud-id", "dep:abc", "--sniff"), environ={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("http://n1:9200,,http://n2:9200", "an empty URL in the list 'http://n1:9200,,http://n2:9200'"),
        ("n1:9200", "not an http(s)://host[:port] URL: 'n1:9200' (separate several with commas)"),
        ("http://n1:92x0", "not a URL: 'http://n1:92x0'"),
        ("http://u:secret@n1:9200 http://n2:9200", "not a URL: 'http://n1:9200 http://n2:9200'"),
        ("http://n1:9200,http://n1:9200", "a URL is given twice in the list"),
        (" , ", "no Elasticsearch URL given"),
    ],
)
def test_a_bad_list_is_one_clear_error(text: str, message: str) -> None:
    """Each malformed list is refused with a message naming the piece, without credentials."""
    with pytest.raises(ConnectionConfigError) as exc:
        parse_urls(text)
    assert str(exc.value) == message


def test_the_cli_reports_a_bad_list_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`report --es` with a broken list: exit 1 and one line, no traceback."""
    assert main(["report", "--es", "http://n1:9200,ftp://n2"]) == 1
    err = capsys.readouterr().err
    assert err == "celery-logs report: not an http(s)://host[:port] URL: 'ftp://n2' (separate several with commas)\n"


# --- a node dying mid-request -----------------------------------------------------------------------------------


def _op(i: int) -> Op:
    src = Source(path="f", fd=-1, key=None, offset=0)
    line = Line(src, 0, i, i + 1, b"{}")
    src.pending.append(line)
    body = json.dumps({"create": {"_index": "x", "_id": str(i)}}) + "\n" + json.dumps({"n": i}) + "\n"
    return Op(line, body.encode())


class _DyingNode:
    """Accepts a connection, reads the request, and closes without answering: a node killed mid-request."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.requests = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                self.requests += 1


class _Answering(BaseHTTPRequestHandler):
    """A node that acknowledges every bulk item (and says it is Elasticsearch, as the client checks)."""

    seen: list[int] = []  # noqa: RUF012 - shared by the handler instances of one server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        items = [{"create": {"status": 201}} for line in body.splitlines()[::2]]
        self.seen.append(len(items))
        data = json.dumps({"errors": False, "items": items}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("x-elastic-product", "Elasticsearch")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def two_nodes() -> Iterator[tuple[_DyingNode, ThreadingHTTPServer]]:
    dying = _DyingNode()
    _Answering.seen = []
    good = ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    threading.Thread(target=good.serve_forever, daemon=True).start()
    yield dying, good
    good.shutdown()
    good.server_close()
    dying.sock.close()


def test_a_bulk_request_whose_node_dies_is_sent_to_the_next_node(
    two_nodes: tuple[_DyingNode, ThreadingHTTPServer],
) -> None:
    """The real client and sink: the first node drops the request, the same batch goes to the second, none dead."""
    dying, good = two_nodes
    # Named, not found out: the engine probe would be one more request to the dying node.
    settings = ConnectionSettings(
        url=f"{dying.url},http://127.0.0.1:{good.server_address[1]}", request_timeout=10, engine="elasticsearch"
    )
    client = settings.client(randomize_nodes_in_pool=False)
    sender = BulkSender(ElasticsearchSink(client), backoff=Backoff(base=0.01, cap=0.05), stop=threading.Event())
    ops = [_op(i) for i in range(5)]
    result = sender.send(ops)
    client.close()
    assert (len(result.done), result.dead, result.abandoned, result.request_retries) == (5, [], [], 1)
    assert dying.requests == 1
    assert _Answering.seen == [5]


class _Scripted:
    """A sink answering from a script: each entry is raised (an exception) or returned (item results)."""

    def __init__(self, *script: RequestFailed | list[ItemResult] | None) -> None:
        self.script = list(script)

    def bulk(self, body: bytes, count: int) -> list[ItemResult] | None:
        step = self.script.pop(0)
        if isinstance(step, RequestFailed):
            raise step
        return step


@pytest.mark.parametrize(
    "failure",
    [
        RequestFailed(None, "ConnectionError: connection reset"),  # the node died during the request
        RequestFailed(None, "ConnectionTimeout: read timed out"),  # the node hung
        RequestFailed(502, "bad gateway"),
        RequestFailed(503, "cluster_block_exception: no master"),  # a master election
        RequestFailed(504, "gateway timeout"),
        RequestFailed(429, "es_rejected_execution_exception"),
    ],
)
def test_what_a_lost_node_causes_is_retried_never_dead_lettered(failure: RequestFailed) -> None:
    """Whole-request failures a node loss or an election causes are retried, then everything is done."""
    sender = BulkSender(
        _Scripted(failure, failure, None), backoff=Backoff(base=0.001, cap=0.001), stop=threading.Event()
    )
    result = sender.send([_op(i) for i in range(3)])
    assert (len(result.done), result.dead, result.request_retries) == (3, [], 2)


def test_items_failed_by_a_lost_primary_are_retried() -> None:
    """Per-item 503 (primary shard unavailable) and 500 are sent again on their own; then all are done."""
    first: list[ItemResult] = [
        (201, None),
        (503, "unavailable_shards_exception: primary not active"),
        (500, "node closed"),
    ]
    sender = BulkSender(_Scripted(first, None), backoff=Backoff(base=0.001, cap=0.001), stop=threading.Event())
    result = sender.send([_op(i) for i in range(3)])
    assert (len(result.done), result.dead, result.item_retries, result.created) == (3, [], 2, 3)
