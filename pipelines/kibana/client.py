"""Talking to Kibana's saved-objects API (import the shipped objects, export them back) and its alerting
API (create or update a rule by id).

Only the standard library is used (``urllib``): each is a few plain HTTP calls, and the command must
work wherever the shipper works. Secrets follow :mod:`pipelines._connection`'s rules: environment
variables or files only, never part of a ``repr`` or a message.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from pipelines._connection import ENV_API_KEY, ENV_PASSWORD, ENV_USERNAME, ConnectionConfigError, _read_secret

T = TypeVar("T")

DEFAULT_KIBANA_URL: Final = "http://127.0.0.1:5601"
ENV_KIBANA_URL: Final = "CELERY_LOGS_KIBANA_URL"
ENV_KIBANA_SPACE: Final = "CELERY_LOGS_KIBANA_SPACE"
ENV_KIBANA_API_KEY: Final = "CELERY_LOGS_KIBANA_API_KEY"
ENV_KIBANA_USERNAME: Final = "CELERY_LOGS_KIBANA_USERNAME"
ENV_KIBANA_PASSWORD: Final = "CELERY_LOGS_KIBANA_PASSWORD"  # noqa: S105 - the variable's name, not a secret
ENV_KIBANA_CA_CERTS: Final = "CELERY_LOGS_KIBANA_CA_CERTS"

# Kibana's rule for space ids: lowercase letters, digits, "_" and "-".
_SPACE_ID = re.compile(r"^[a-z0-9_-]+$")
#: Longest piece of a Kibana error body quoted back to the user.
_MAX_ERROR_CHARS: Final = 300


OPENSEARCH_DASHBOARDS = "opensearch-dashboards"
TARGETS = ("kibana", OPENSEARCH_DASHBOARDS)


class KibanaError(Exception):
    """Kibana answered with an error (or something that is not its API); ``status`` is the HTTP status."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class KibanaUnavailable(KibanaError):
    """Kibana could not be reached at all (connection refused, DNS, TLS, timeout)."""


@dataclass(frozen=True, kw_only=True)
class KibanaSettings:
    """Where Kibana is, which space, and how to authenticate; build with :meth:`from_args` or directly."""

    url: str = DEFAULT_KIBANA_URL
    space: str | None = None
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_certs: str | None = None
    verify_certs: bool = True
    timeout: float = 60.0
    #: ``kibana`` or ``opensearch-dashboards``: which API dialect (XSRF header, spaces) to speak.
    target: str = "kibana"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConnectionConfigError(f"unknown target {self.target!r}: {' or '.join(TARGETS)}")
        if self.space is not None and self.target == OPENSEARCH_DASHBOARDS:
            raise ConnectionConfigError("OpenSearch Dashboards has no Kibana spaces: drop --space")
        if self.space is not None and not _SPACE_ID.match(self.space):
            raise ConnectionConfigError(
                f"invalid Kibana space id {self.space!r}: use lowercase letters, digits, '_' and '-'"
            )
        if self.api_key and (self.username or self.password):
            raise ConnectionConfigError("give either a Kibana API key or a username and password, not both")
        parts = urllib.parse.urlsplit(self.url)
        if "@" in parts.netloc:
            # Credentials in a URL end up in shell history and `ps`; the message must not echo them.
            raise ConnectionConfigError(
                "the Kibana URL must not hold credentials: use --username with --password-file, "
                "--api-key-file or the environment"
            )
        if parts.scheme not in ("http", "https"):
            raise ConnectionConfigError(f"the Kibana URL must start with http:// or https://, not {self.display!r}")

    @classmethod
    def from_args(cls, args: argparse.Namespace, *, environ: Mapping[str, str] | None = None) -> KibanaSettings:
        """Settings from the options of :func:`add_arguments`; secrets from files or the environment.

        Kibana-specific variables win; the Elasticsearch ones (``CELERY_LOGS_ES_*``) are the fallback,
        since Kibana usually accepts the same credentials as the cluster behind it.
        """
        env = dict(os.environ if environ is None else environ)
        api_key = _read_secret(args.api_key_file) if args.api_key_file else None
        password = _read_secret(args.password_file) if args.password_file else None
        username = args.username
        if not (api_key or password or username):
            api_key = env.get(ENV_KIBANA_API_KEY) or None
            username = env.get(ENV_KIBANA_USERNAME) or None
            password = env.get(ENV_KIBANA_PASSWORD) or None
            if not (api_key or username or password):
                api_key = env.get(ENV_API_KEY) or None
                username = env.get(ENV_USERNAME) or None
                password = env.get(ENV_PASSWORD) or None
        elif username and not password:
            password = env.get(ENV_KIBANA_PASSWORD) or env.get(ENV_PASSWORD) or None
        if password and not username:
            raise ConnectionConfigError(
                f"a Kibana password was given without a username (--username or {ENV_KIBANA_USERNAME})"
            )
        return cls(
            url=args.kibana or env.get(ENV_KIBANA_URL) or DEFAULT_KIBANA_URL,
            space=args.space or env.get(ENV_KIBANA_SPACE) or None,
            api_key=api_key,
            username=username,
            password=password,
            ca_certs=args.ca_certs or env.get(ENV_KIBANA_CA_CERTS),
            verify_certs=not args.insecure,
            timeout=args.timeout,
            target=getattr(args, "target", None) or "kibana",
        )

    @property
    def display(self) -> str:
        """Where it points, safe to print: no credentials."""
        parts = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def api_url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        """Absolute URL of an API path in the configured space (``/s/<space>`` unless the default space)."""
        parts = urllib.parse.urlsplit(self.url)
        base = parts.path.rstrip("/")
        if self.space and self.space != "default":
            base += f"/s/{self.space}"
        qs = urllib.parse.urlencode(dict(query or {}))
        return urllib.parse.urlunsplit((parts.scheme, parts.netloc, base + path, qs, ""))

    def headers(self) -> dict[str, str]:
        """Headers every API call carries: the XSRF header Kibana demands, and the credentials."""
        # OpenSearch Dashboards renamed Kibana's XSRF header; each refuses a write without its own.
        headers = {"osd-xsrf": "true"} if self.target == OPENSEARCH_DASHBOARDS else {"kbn-xsrf": "celery-logs"}
        if self.api_key:
            headers["Authorization"] = f"ApiKey {self.api_key}"
        elif self.username:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        return headers

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https"):
            return None
        context = ssl.create_default_context(cafile=self.ca_certs)
        if not self.verify_certs:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


@dataclass(frozen=True, kw_only=True)
class ImportedObject:
    """What an import did to one object: ``created``, ``updated`` (overwritten) or ``refused``."""

    type: str
    id: str
    title: str
    outcome: str
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class ImportReport:
    """Kibana's answer to an import, object by object."""

    success: bool
    objects: tuple[ImportedObject, ...]

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.objects if o.outcome == outcome)

    @property
    def refused(self) -> tuple[ImportedObject, ...]:
        return tuple(o for o in self.objects if o.outcome == "refused")

    def summary(self) -> str:
        """One line: how many objects were created, updated and refused."""
        return (
            f"{self.count('created')} created, {self.count('updated')} updated, {self.count('refused')} refused"
        )

    @classmethod
    def from_response(cls, body: Mapping[str, Any]) -> ImportReport:
        """Read ``POST /api/saved_objects/_import``'s JSON answer."""
        if not isinstance(body, Mapping) or "success" not in body:
            raise KibanaError(f"unexpected answer from the import API: {_clip(json.dumps(body))}")
        objects = [
            ImportedObject(
                type=str(r.get("type")),
                id=str(r.get("destinationId") or r.get("id")),
                title=str((r.get("meta") or {}).get("title") or r.get("id")),
                outcome="updated" if r.get("overwrite") else "created",
            )
            for r in body.get("successResults") or []
        ]
        objects += [
            ImportedObject(
                type=str(e.get("type")),
                id=str(e.get("id")),
                title=str(e.get("title") or (e.get("meta") or {}).get("title") or e.get("id")),
                outcome="refused",
                reason=_describe_import_error(e.get("error") or {}),
            )
            for e in body.get("errors") or []
        ]
        return cls(success=bool(body["success"]), objects=tuple(objects))


def _describe_import_error(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", "unknown"))
    if kind == "missing_references":
        refs = ", ".join(f"{r.get('type')}:{r.get('id')}" for r in error.get("references") or [])
        return f"missing references: {refs}"
    if kind in ("conflict", "ambiguous_conflict"):
        return f"{kind.replace('_', ' ')} with an existing object"
    if kind == "unsupported_type":
        return "unsupported type in this Kibana"
    message = error.get("message")
    return f"{kind}: {_clip(str(message))}" if message else kind


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


def multipart_file(field_name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body holding one file; returns ``(body, content type)``."""
    boundary = f"celery-logs-{uuid.uuid4().hex}"
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'
        "Content-Type: application/ndjson\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class KibanaClient:
    """The saved-objects calls celery-logs makes (import, export), and the alerting-rule calls (get, put)."""

    def __init__(self, settings: KibanaSettings) -> None:
        self.settings = settings

    def _request(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> bytes:
        req = urllib.request.Request(  # noqa: S310 - the scheme is checked to be http(s) in KibanaSettings
            url, data=body, method=method, headers={**self.settings.headers(), **headers}
        )
        try:
            with urllib.request.urlopen(  # noqa: S310 - same
                req, timeout=self.settings.timeout, context=self.settings.ssl_context()
            ) as resp:
                data: bytes = resp.read()
                return data
        except urllib.error.HTTPError as exc:
            raise KibanaError(_http_error_message(exc), status=exc.code) from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise KibanaUnavailable(f"cannot reach Kibana at {self.settings.display}: {reason}") from None

    def import_ndjson(
        self, data: bytes, *, filename: str = "celery-logs.ndjson", overwrite: bool = True
    ) -> ImportReport:
        """``POST /api/saved_objects/_import``; with ``overwrite`` a second import updates in place."""
        if not filename.endswith(".ndjson"):
            raise ValueError(f"Kibana only imports *.ndjson files, not {filename!r}")
        body, content_type = multipart_file("file", filename, data)
        url = self.settings.api_url("/api/saved_objects/_import", {"overwrite": "true"} if overwrite else None)
        raw = self._request("POST", url, body, {"Content-Type": content_type})
        try:
            answer = json.loads(raw)
        except ValueError:
            raise KibanaError(f"the import API did not answer JSON: {_clip(raw.decode('utf-8', 'replace'))}") from None
        return ImportReport.from_response(answer)

    def export_ndjson(self, objects: Sequence[tuple[str, str]], *, include_references: bool = True) -> bytes:
        """``POST /api/saved_objects/_export`` of the given ``(type, id)`` pairs; Kibana's NDJSON, summary included."""
        payload = {
            "objects": [{"type": t, "id": i} for t, i in objects],
            "includeReferencesDeep": include_references,
            "excludeExportDetails": False,
        }
        url = self.settings.api_url("/api/saved_objects/_export")
        return self._request("POST", url, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    # --- alerting rules (``/api/alerting/rule/{id}``) ----------------------------------------------

    def _json(self, method: str, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        raw = self._request(method, self.settings.api_url(path), body, headers)
        try:
            return json.loads(raw)
        except ValueError:
            text = _clip(raw.decode("utf-8", "replace"))
            raise KibanaError(f"the alerting API did not answer JSON: {text}") from None

    @staticmethod
    def _rule_path(rule_id: str) -> str:
        return f"/api/alerting/rule/{urllib.parse.quote(rule_id, safe='')}"

    def get_rule(self, rule_id: str) -> dict[str, Any] | None:
        """``GET /api/alerting/rule/{id}``: the rule, or ``None`` when there is none with that id."""
        try:
            found = self._json("GET", self._rule_path(rule_id))
        except KibanaError as exc:
            if exc.status == 404:
                return None
            raise
        if not isinstance(found, dict):
            raise KibanaError(f"unexpected answer from the alerting API: {_clip(json.dumps(found))}")
        return found

    def put_rule(
        self, rule_id: str, *, create: Mapping[str, Any], update: Mapping[str, Any], dry_run: bool = False
    ) -> str:
        """Create the rule (``POST``) or update it in place (``PUT``); returns ``created`` or ``updated``.

        An update keeps the actions (connectors) users added to the rule in Kibana, since Kibana replaces
        the whole list. With ``dry_run`` only the ``GET`` is made.
        """
        existing = self.get_rule(rule_id)
        if existing is None:
            if not dry_run:
                self._json("POST", self._rule_path(rule_id), create)
            return "created"
        if not dry_run:
            kept = [{k: v for k, v in a.items() if k in _ACTION_KEYS} for a in existing.get("actions") or []]
            self._json("PUT", self._rule_path(rule_id), {**update, "actions": kept})
        return "updated"


#: The keys of a rule action Kibana accepts in a request (its answers add others, like connector_type_id).
_ACTION_KEYS: Final = frozenset(
    {"group", "id", "params", "frequency", "uuid", "alerts_filter", "use_alert_data_for_template"}
)


def is_not_ready(exc: KibanaError) -> bool:
    """Kibana is down or still starting (it answers 503 until its plugins are up)."""
    return isinstance(exc, KibanaUnavailable) or exc.status == 503


def retry_until_ready(
    call: Callable[[], T],
    *,
    wait: float,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``call``, repeating it while Kibana is not ready, for at most ``wait`` seconds.

    Made for a compose setup service started together with Kibana. Only safe for idempotent calls
    (an import with overwrite, an export); any other error is raised at once.
    """
    deadline = clock() + wait
    delay = 0.5
    while True:
        try:
            return call()
        except KibanaError as exc:
            if not is_not_ready(exc) or clock() + delay > deadline:
                raise
        sleep(delay)
        delay = min(delay * 2, 5.0)


def _http_error_message(exc: urllib.error.HTTPError) -> str:
    try:
        body = exc.read().decode("utf-8", "replace")
    except OSError:
        body = ""
    detail = body
    try:
        parsed = json.loads(body)
        if isinstance(parsed, Mapping) and parsed.get("message"):
            detail = str(parsed["message"])
    except ValueError:
        pass
    hint = {401: " (check the credentials)", 403: " (the user may not manage saved objects in this space)"}
    reason = f"Kibana answered {exc.code} {exc.reason}{hint.get(exc.code, '')}"
    return f"{reason}: {_clip(detail)}" if detail.strip() else reason


def shipped_ndjson(target: str = "kibana") -> Path:
    """The NDJSON file celery-logs ships for ``target`` (package data in a wheel, ``kibana/`` in a checkout)."""
    if target == OPENSEARCH_DASHBOARDS:
        from pipelines.kibana import dashboards

        return dashboards.dashboards_dir() / dashboards.NDJSON_NAME
    from pipelines.kibana.objects import NDJSON_NAME, objects_dir

    return objects_dir() / NDJSON_NAME


def shipped_object_keys(path: Path | None = None) -> list[tuple[str, str]]:
    """``(type, id)`` of every object in an export file (the summary line is skipped)."""
    keys = []
    for line in (path or shipped_ndjson()).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)
        if "type" in obj and "id" in obj:
            keys.append((str(obj["type"]), str(obj["id"])))
    return keys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The Kibana connection options (the same names and secret rules as the Elasticsearch ones)."""
    g = parser.add_argument_group("Kibana connection")
    g.add_argument("--kibana", metavar="URL", help=f"Kibana URL (env {ENV_KIBANA_URL}; default {DEFAULT_KIBANA_URL})")
    g.add_argument("--space", metavar="ID", help=f"Kibana space id (env {ENV_KIBANA_SPACE}; default space if unset)")
    g.add_argument(
        "--api-key-file",
        metavar="FILE",
        help=f"file holding an API key (or env {ENV_KIBANA_API_KEY}, then {ENV_API_KEY})",
    )
    g.add_argument(
        "--username", metavar="NAME", help=f"basic-auth user (env {ENV_KIBANA_USERNAME}, then {ENV_USERNAME})"
    )
    g.add_argument(
        "--password-file",
        metavar="FILE",
        help=f"file holding the basic-auth password (or env {ENV_KIBANA_PASSWORD}, then {ENV_PASSWORD})",
    )
    g.add_argument("--ca-certs", metavar="PEM", help=f"CA bundle to verify Kibana (env {ENV_KIBANA_CA_CERTS})")
    g.add_argument("--insecure", action="store_true", help="do not verify TLS certificates (testing only)")
    g.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS", help="request timeout (default 60)")
