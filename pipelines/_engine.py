"""Elasticsearch or OpenSearch: the one place where the two engines differ.

Every wing talks to the cluster through one interface, the request API of elasticsearch-py 8
(``search``, ``indices.create``, ``options(ignore_status=...)``, its exceptions, ``helpers.bulk``).
What goes over the wire differs:

- **Elasticsearch**: elasticsearch-py's own transport, unchanged.
- **OpenSearch**: the same request API, sent through opensearch-py's connection pool (its nodes,
  TLS and dead-node handling) as plain ``application/json`` / ``application/x-ndjson``. The
  Elasticsearch client itself refuses OpenSearch twice over: it sends Elasticsearch's versioned
  media types (OpenSearch answers 406) and it rejects any answer without ``X-Elastic-Product``.
  Answers and failures come back as elastic-transport's responses and exceptions, so callers catch
  ``elasticsearch.ApiError`` / ``elastic_transport.ConnectionError`` whichever engine answered.

The engine is named (``--engine``, ``CELERY_LOGS_ENGINE``) or, by default, found out from the first
answer: Elasticsearch (7.14 and newer) marks every answer, errors included, with
``X-Elastic-Product: Elasticsearch``; OpenSearch never does. The probe is ``GET /`` (the server-core
test build of Elasticsearch answers it 405, still with the header) and it runs lazily, on the first
request, so a command started before its cluster can still wait for it.
"""

from __future__ import annotations

import argparse
import functools
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from elastic_transport import SerializerCollection, Transport, TransportApiResponse
    from elasticsearch import Elasticsearch

ELASTICSEARCH: Final = "elasticsearch"
OPENSEARCH: Final = "opensearch"
AUTO: Final = "auto"
ENGINES: Final = (ELASTICSEARCH, OPENSEARCH)
ENV_ENGINE: Final = "CELERY_LOGS_ENGINE"

#: What elastic-transport retries by default; kept the same on OpenSearch so both engines behave alike.
_DEFAULT_RETRY_ON_STATUS: Final = (429, 502, 503, 504)
_DEFAULT_MAX_RETRIES: Final = 3
_ANY_STATUS: Final = range(100, 600)


class EngineError(ValueError):
    """The engine is unknown or its client library is missing; the message is one sentence."""


def add_engine_argument(group: argparse._ArgumentGroup) -> None:
    """The ``--engine`` option (every command that talks to the cluster has it)."""
    group.add_argument(
        "--engine",
        choices=(AUTO, *ENGINES),
        default=None,
        help=f"the search engine (env {ENV_ENGINE}; default auto: found out from the server's first answer)",
    )


def engine_from(value: str | None, environ: Mapping[str, str]) -> str:
    """The engine named by an option or the environment; ``auto`` when neither names one."""
    engine = (value or environ.get(ENV_ENGINE) or AUTO).strip().lower()
    if engine not in (AUTO, *ENGINES):
        raise EngineError(f"{ENV_ENGINE}={engine!r} is not one of {AUTO}, {', '.join(ENGINES)}")
    return engine


def engine_of(client: Elasticsearch) -> str:
    """Which engine ``client`` talks to (asks the server when that is not known yet)."""
    transport = client.transport
    if isinstance(transport, EngineTransport):
        return transport.engine()
    return ELASTICSEARCH


def build_client(engine: str, es_kwargs: dict[str, Any]) -> Elasticsearch:
    """A client for ``engine`` (or ``auto``) from the keyword arguments of :class:`elasticsearch.Elasticsearch`.

    ``es_kwargs`` are what :meth:`pipelines._connection.ConnectionSettings.client` gives Elasticsearch:
    hosts (or cloud_id), credentials, TLS, timeouts, retries, serializer.
    """
    from elasticsearch import Elasticsearch

    if engine == ELASTICSEARCH:
        return Elasticsearch(**es_kwargs)
    kwargs = dict(es_kwargs)
    if kwargs.get("cloud_id"):
        if engine == OPENSEARCH:
            raise EngineError("a Cloud id names an Elastic Cloud deployment, which is Elasticsearch, not OpenSearch")
        return Elasticsearch(**kwargs)
    auth = {k: kwargs.pop(k) for k in ("api_key", "basic_auth", "bearer_auth", "headers") if k in kwargs}
    request_options = ("request_timeout", "max_retries", "retry_on_status", "retry_on_timeout")
    per_request = {k: kwargs.pop(k) for k in request_options if k in kwargs}
    hosts = kwargs.get("hosts") or []
    timeout = per_request.get("request_timeout") or 30.0
    tls: dict[str, Any] = {k: kwargs[k] for k in ("ca_certs", "verify_certs", "ssl_show_warn") if k in kwargs}
    elasticsearch_transport = None if engine == OPENSEARCH else Elasticsearch(**kwargs).transport
    transport = EngineTransport(
        elasticsearch=elasticsearch_transport,
        opensearch=lambda: OpenSearchTransport(hosts=list(hosts), tls=tls, timeout=timeout),
        engine=None if engine == AUTO else engine,
    )
    client = _engine_client_class()(_transport=transport, **auth)  # type: ignore[arg-type]
    return client.options(**per_request) if per_request else client


@functools.cache
def _engine_client_class() -> type[Elasticsearch]:
    from elasticsearch import Elasticsearch

    class EngineClient(Elasticsearch):
        """elasticsearch-py's request API over an :class:`EngineTransport`.

        What this class leaves out is elasticsearch-py's product check, which refuses any server that
        is not Elasticsearch: which server answers is the transport's business, found out from the
        same header the check reads.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._verified_elasticsearch = True

    return EngineClient


class EngineTransport:
    """The transport of an :class:`EngineClient`: Elasticsearch's, or opensearch-py's, chosen once."""

    def __init__(
        self,
        *,
        elasticsearch: Transport | None,
        opensearch: Callable[[], OpenSearchTransport],
        engine: str | None,
    ) -> None:
        self._elasticsearch = elasticsearch
        self._make_opensearch = opensearch
        self._opensearch: OpenSearchTransport | None = None
        self._engine = engine
        self._lock = threading.Lock()

    @property
    def serializers(self) -> SerializerCollection:
        """The serializers ``elasticsearch.helpers`` encodes bulk actions with."""
        if self._elasticsearch is not None:
            return self._elasticsearch.serializers
        return self._os().serializers

    def _os(self) -> OpenSearchTransport:
        with self._lock:
            if self._opensearch is None:
                self._opensearch = self._make_opensearch()
            return self._opensearch

    def engine(self, headers: Mapping[str, str] | None = None) -> str:
        """The engine behind the hosts, asked once (a failed probe is asked again next time).

        ``headers`` are those of the request that triggers the probe: its credentials go along, so a
        secured cluster answers the probe as it answers the request.
        """
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = self._probe(headers or {})
        return self._engine

    def _probe(self, headers: Mapping[str, str]) -> str:
        assert self._elasticsearch is not None
        probe = {k: v for k, v in headers.items() if k.lower() not in ("accept", "content-type")}
        probe["accept"] = "application/json"
        resp = self._elasticsearch.perform_request("GET", "/", headers=probe)
        return ELASTICSEARCH if resp.meta.headers.get("x-elastic-product") == "Elasticsearch" else OPENSEARCH

    def perform_request(self, method: str, target: str, **kwargs: Any) -> TransportApiResponse:
        headers = kwargs.get("headers")
        if self.engine(headers if isinstance(headers, Mapping) else None) == ELASTICSEARCH:
            assert self._elasticsearch is not None
            return self._elasticsearch.perform_request(method, target, **kwargs)
        return self._os().perform_request(method, target, **kwargs)

    def close(self) -> None:
        if self._elasticsearch is not None:
            self._elasticsearch.close()
        if self._opensearch is not None:
            self._opensearch.close()


def _plain_mimetype(value: str) -> str:
    # application/vnd.elasticsearch+json; compatible-with=8 -> application/json
    base = value.split(";", 1)[0].strip()
    return base.replace("vnd.elasticsearch+", "")


class OpenSearchTransport:
    """Requests through opensearch-py's connection pool, with elastic-transport's answers and errors."""

    def __init__(self, *, hosts: list[Any], tls: Mapping[str, Any], timeout: float = 30.0) -> None:
        try:
            from opensearchpy import OpenSearch
        except ImportError:
            raise EngineError(
                "talking to OpenSearch needs opensearch-py: pip install 'celery-logs[opensearch]'"
            ) from None
        from elastic_transport import SerializerCollection
        from elasticsearch.serializer import DEFAULT_SERIALIZERS, OrjsonSerializer

        self.serializers = SerializerCollection(
            {**DEFAULT_SERIALIZERS, "application/json": OrjsonSerializer()}, default_mimetype="application/json"
        )
        options: dict[str, Any] = {}
        if "ca_certs" in tls:
            options["ca_certs"] = tls["ca_certs"]
        if "verify_certs" in tls:
            options["verify_certs"] = tls["verify_certs"]
        if "ssl_show_warn" in tls:
            options["ssl_show_warn"] = tls["ssl_show_warn"]
        # The timeout of a request that names none (elasticsearch-py's DEFAULT).
        self._client = OpenSearch(hosts=hosts, timeout=timeout, **options)

    def perform_request(
        self,
        method: str,
        target: str,
        *,
        body: Any = None,
        headers: Any = None,
        max_retries: Any = None,
        retry_on_status: Any = None,
        retry_on_timeout: Any = None,
        request_timeout: Any = None,
        **_ignored: Any,
    ) -> TransportApiResponse:
        from elastic_transport import (
            ApiResponseMeta,
            ConnectionError,
            ConnectionTimeout,
            HttpHeaders,
            NodeConfig,
            SerializationError,
            TlsError,
            TransportApiResponse,
        )
        from opensearchpy import exceptions as os_exc

        send_headers = {k.lower(): str(v) for k, v in dict(headers or {}).items()}
        for name in ("accept", "content-type"):
            if name in send_headers:
                send_headers[name] = _plain_mimetype(send_headers[name])
        data = None
        if body is not None:
            mimetype = send_headers.setdefault("content-type", "application/json")
            data = self.serializers.dumps(body, mimetype=mimetype)
        retries = _int(max_retries, _DEFAULT_MAX_RETRIES)
        on_status: Collection[int] = _collection(retry_on_status, _DEFAULT_RETRY_ON_STATUS)
        on_timeout = bool(retry_on_timeout) if isinstance(retry_on_timeout, bool) else False
        timeout = request_timeout if isinstance(request_timeout, (int, float)) else None
        attempt = 0
        while True:
            connection = self._client.transport.get_connection()
            start = time.monotonic()
            try:
                status, raw_headers, raw = connection.perform_request(
                    method, target, None, data, timeout=timeout, ignore=_ANY_STATUS, headers=send_headers
                )
            except os_exc.SSLError as exc:
                raise TlsError(str(exc.info or exc.error)) from None
            except os_exc.ConnectionTimeout as exc:
                if on_timeout and attempt < retries:
                    attempt += 1
                    continue
                raise ConnectionTimeout(f"timed out: {exc.info or exc.error}") from None
            except os_exc.ConnectionError as exc:
                self._client.transport.mark_dead(connection)
                if attempt < retries:
                    attempt += 1
                    continue
                raise ConnectionError(str(exc.info or exc.error)) from None
            if status in on_status and attempt < retries and method != "HEAD":
                attempt += 1
                continue
            break
        response_headers = HttpHeaders({k.lower(): v for k, v in raw_headers.items()})
        meta = ApiResponseMeta(
            status=status,
            http_version="1.1",
            headers=response_headers,
            duration=time.monotonic() - start,
            node=NodeConfig(
                scheme="https" if connection.use_ssl else "http",
                host=str(connection.hostname),
                port=int(connection.port or 9200),
            ),
        )
        decoded: Any = None
        if method != "HEAD" and raw:
            mimetype = meta.mimetype or "application/json"
            try:
                decoded = self.serializers.loads(raw.encode("utf-8", "surrogatepass"), mimetype)
            except (ValueError, SerializationError):  # an error page in HTML, a proxy's text: keep it as text
                decoded = raw
        return TransportApiResponse(meta, decoded)

    def close(self) -> None:
        self._client.close()


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _collection(value: Any, default: Collection[int]) -> Collection[int]:
    if isinstance(value, int):
        return (value,)
    if isinstance(value, (tuple, list, set, frozenset, range)):
        return value
    return default
