"""How every command reaches Elasticsearch (and Kibana): URL or Cloud id, TLS, API key or basic auth.

Secrets never come from the command line (they would show in ``ps``): only from environment variables
or files, and they are never part of a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    #: ``auto`` (found out from the server's first answer), ``elasticsearch`` or ``opensearch``.
    engine: str = "auto"

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
            engine=_engine_option(args, env),
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`elasticsearch.Elasticsearch`."""
        kwargs: dict[str, Any] = {"request_timeout": self.request_timeout}
        if self.cloud_id:
            kwargs["cloud_id"] = self.cloud_id
        else:
            kwargs["hosts"] = [self.url]
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
        return f"cloud:{self.cloud_id.split(':', 1)[0]}" if self.cloud_id else _strip_userinfo(self.url)


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
    g.add_argument("--es", metavar="URL", help=f"cluster URL (env {ENV_URL}; default {DEFAULT_URL})")
    g.add_argument("--cloud-id", metavar="ID", help=f"Elastic Cloud id instead of a URL (env {ENV_CLOUD_ID})")
    g.add_argument("--api-key-file", metavar="FILE", help=f"file holding an API key (or env {ENV_API_KEY})")
    g.add_argument("--username", metavar="NAME", help=f"basic-auth user (env {ENV_USERNAME})")
    g.add_argument(
        "--password-file", metavar="FILE", help=f"file holding the basic-auth password (or env {ENV_PASSWORD})"
    )
    g.add_argument("--ca-certs", metavar="PEM", help=f"CA bundle to verify the server (env {ENV_CA_CERTS})")
    g.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (testing only)")
    g.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="request timeout (default 30)")
    _add_engine_argument(g)


def _add_engine_argument(group: argparse._ArgumentGroup) -> None:
    from pipelines._engine import add_engine_argument

    add_engine_argument(group)
