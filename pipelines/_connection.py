"""How every command reaches Elasticsearch (and Kibana): URL(s) or Cloud id, TLS, API key or basic auth.

A cluster may be named by several comma-separated URLs: the client spreads requests over them, marks a
node that fails to connect as dead for a growing while, and sends the next request to another node.

Secrets never come from the command line (they would show in ``ps``): only from environment variables
or files, and they are never part of a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

DEFAULT_URL = "http://127.0.0.1:9200"
ENV_URL = "CELERY_LOGS_ES_URL"
ENV_CLOUD_ID = "CELERY_LOGS_ES_CLOUD_ID"
ENV_API_KEY = "CELERY_LOGS_ES_API_KEY"
ENV_USERNAME = "CELERY_LOGS_ES_USERNAME"
ENV_PASSWORD = "CELERY_LOGS_ES_PASSWORD"  # noqa: S105 - the variable's name, not a secret
ENV_CA_CERTS = "CELERY_LOGS_ES_CA_CERTS"


class ConnectionConfigError(ValueError):
    """The connection settings are contradictory or a secret file cannot be read."""


def _read_secret(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConnectionConfigError(f"cannot read secret file {path}: {exc.strerror}") from exc


@dataclass(frozen=True, kw_only=True)
class ConnectionSettings:
    """Where a cluster is and how to authenticate; build with :meth:`from_args` or directly."""

    url: str = DEFAULT_URL
    cloud_id: str | None = None
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: float = 30.0
    #: Ask the cluster for its nodes at start and after a node fails (``--sniff``).
    sniff: bool = False
    #: ``auto`` (found out from the server's first answer), ``elasticsearch`` or ``opensearch``.
    engine: str = "auto"

    def __post_init__(self) -> None:
        if not self.cloud_id:
            parse_urls(self.url)  # a bad list is a one-line error here, not deep inside the client
        if self.sniff and self.cloud_id:
            raise ConnectionConfigError("--sniff cannot be used with a Cloud id (the cloud proxy hides the nodes)")

    @property
    def urls(self) -> tuple[str, ...]:
        """The node URLs (one or more) of :attr:`url`, a comma-separated list."""
        return parse_urls(self.url)

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, environ: dict[str, str] | None = None) -> ConnectionSettings:
        """Settings from parsed CLI options (see :func:`add_arguments`), secrets from env or files."""
        env = dict(os.environ if environ is None else environ)
        api_key = _read_secret(args.api_key_file) if args.api_key_file else env.get(ENV_API_KEY)
        password = _read_secret(args.password_file) if args.password_file else env.get(ENV_PASSWORD)
        username = args.username or env.get(ENV_USERNAME)
        if api_key and (username or password):
            raise ConnectionConfigError("give either an API key or a username and password, not both")
        if password and not username:
            raise ConnectionConfigError(f"a password was given without a username (--username or {ENV_USERNAME})")
        return cls(
            url=args.es or env.get(ENV_URL) or DEFAULT_URL,
            cloud_id=args.cloud_id or env.get(ENV_CLOUD_ID),
            api_key=api_key or None,
            username=username or None,
            password=password or None,
            ca_certs=args.ca_certs or env.get(ENV_CA_CERTS),
            verify_certs=not args.insecure,
            request_timeout=args.timeout,
            sniff=bool(getattr(args, "sniff", False)),
            engine=_engine_option(args, env),
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`elasticsearch.Elasticsearch`."""
        kwargs: dict[str, Any] = {"request_timeout": self.request_timeout}
        if self.cloud_id:
            kwargs["cloud_id"] = self.cloud_id
        else:
            kwargs["hosts"] = list(self.urls)
        kwargs.update(node_pool_options(nodes=1 if self.cloud_id else len(self.urls), sniff=self.sniff))
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif self.username:
            kwargs["basic_auth"] = (self.username, self.password or "")
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        if not self.verify_certs:
            kwargs["verify_certs"] = False
            kwargs["ssl_show_warn"] = False
        return kwargs

    def client(self, **overrides: Any) -> Elasticsearch:
        """A configured client (imported here: building settings must not need the client library).

        Elasticsearch or OpenSearch, as :attr:`engine` says: the difference lives in :mod:`pipelines._engine`.
        """
        from elasticsearch.serializer import OrjsonSerializer

        from pipelines._engine import build_client

        # The shipper reads an answer of one item per document shipped: orjson reads it 3x faster.
        return build_client(self.engine, {"serializer": OrjsonSerializer(), **self.client_kwargs(), **overrides})

    @property
    def display(self) -> str:
        """Where it points, safe to print: no credentials."""
        if self.cloud_id:
            return f"cloud:{self.cloud_id.split(':', 1)[0]}"
        return ",".join(_strip_userinfo(u) for u in self.urls)


def parse_urls(text: str) -> tuple[str, ...]:
    """The node URLs in ``text``, a comma-separated list (``http://n1:9200,http://n2:9200``).

    Each must be ``http(s)://host[:port][/path]``; the error names the piece that is not, without its
    credentials.
    """
    urls = tuple(part.strip() for part in text.split(","))
    if not any(urls):
        raise ConnectionConfigError("no Elasticsearch URL given")
    for url in urls:
        if not url:
            shown = ",".join(_strip_userinfo(u) for u in urls)
            raise ConnectionConfigError(f"an empty URL in the list {shown!r}")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError on a port that is not a number
        except ValueError:
            raise ConnectionConfigError(f"not a URL: {_strip_userinfo(url)!r}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConnectionConfigError(
                f"not an http(s)://host[:port] URL: {_strip_userinfo(url)!r} (separate several with commas)"
            )
    if len(set(urls)) != len(urls):
        raise ConnectionConfigError("a URL is given twice in the list")
    return urls


def node_pool_options(*, nodes: int, sniff: bool) -> dict[str, Any]:
    """Client options for spreading requests over ``nodes`` URLs and failing over when one dies.

    A node that refuses a connection is marked dead and skipped for 1 s, 2 s, 4 s ... up to 30 s, and the
    request goes to the next node. With several nodes a timed-out request is retried on another node too
    (every request of the CLI but the shipper's ``_bulk`` is a read or idempotent; the shipper turns the
    client's retries off and retries whole requests itself). Sniffing asks the cluster for its other
    nodes at start and after a node failure, so a cluster that grows is used in full.
    """
    options: dict[str, Any] = {
        "max_retries": max(3, nodes),
        "retry_on_timeout": nodes > 1,
        "dead_node_backoff_factor": 1.0,
        "max_dead_node_backoff": 30.0,
    }
    if sniff:
        options.update(sniff_on_start=True, sniff_on_node_failure=True, min_delay_between_sniffing=10.0)
    return options


def _strip_userinfo(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def _engine_option(args: argparse.Namespace, env: dict[str, str]) -> str:
    from pipelines._engine import EngineError, engine_from

    try:
        return engine_from(getattr(args, "engine", None), env)
    except EngineError as exc:
        raise ConnectionConfigError(str(exc)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The connection options shared by every command that talks to Elasticsearch."""
    g = parser.add_argument_group("Elasticsearch connection")
    g.add_argument("--es", metavar="URL[,URL...]",
                   help=f"cluster URL, or several nodes' URLs separated by commas (env {ENV_URL}; "
                   f"default {DEFAULT_URL})")
    g.add_argument("--cloud-id", metavar="ID", help=f"Elastic Cloud id instead of a URL (env {ENV_CLOUD_ID})")
    g.add_argument("--api-key-file", metavar="FILE", help=f"file holding an API key (or env {ENV_API_KEY})")
    g.add_argument("--username", metavar="NAME", help=f"basic-auth user (env {ENV_USERNAME})")
    g.add_argument(
        "--password-file", metavar="FILE", help=f"file holding the basic-auth password (or env {ENV_PASSWORD})"
    )
    g.add_argument("--ca-certs", metavar="PEM", help=f"CA bundle to verify the server (env {ENV_CA_CERTS})")
    g.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (testing only)")
    g.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="request timeout (default 30)")
    g.add_argument("--sniff", action="store_true",
                   help="discover the cluster's other nodes at start and after a node fails")
    _add_engine_argument(g)


def _add_engine_argument(group: argparse._ArgumentGroup) -> None:
    from pipelines._engine import add_engine_argument

    add_engine_argument(group)
