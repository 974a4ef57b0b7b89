"""A stand-in for Kibana's saved-objects API that checks each request the way Kibana does and answers alike.

It keeps saved objects per space, validates the import request (method, path, ``kbn-xsrf``, credentials,
multipart body with one ``file`` part named ``*.ndjson``), resolves references, honours ``overwrite``,
and answers with Kibana's JSON: ``success``, ``successCount``, ``successResults`` and ``errors``.

It also keeps alerting rules per space (``GET``/``POST``/``PUT /api/alerting/rule/{id}``), checking each
body against Kibana's create and update schemas (unknown keys refused, required keys present) and the
params of rule type ``.es-query`` against that rule type's schema (``rule_type_params.ts``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

ICONS = {
    "index-pattern": "indexPatternApp", "search": "discoverApp", "lens": "lensApp", "dashboard": "dashboardApp",
    "visualization": "visualizeApp",
}  # fmt: skip


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeKibana:
    """Server state: objects per space, what it accepts, and every request seen."""

    supported_types: set[str] = field(default_factory=lambda: set(ICONS))
    #: ``Authorization`` header value required (``None``: security off).
    authorization: str | None = None
    spaces: set[str] = field(default_factory=lambda: {"default"})
    store: dict[str, dict[tuple[str, str], dict[str, Any]]] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    url: str = ""
    #: Answer this many requests with 503 "not ready yet" first, like a Kibana still starting.
    not_ready_for: int = 0
    #: The header a write must carry: Kibana's, or ``osd-xsrf`` for OpenSearch Dashboards (see :func:`osd`).
    xsrf_header: str = "kbn-xsrf"
    #: Alerting rules per space, by id, as Kibana answers them.
    rules: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    # --- the API --------------------------------------------------------------------------------------

    def handle(self, seen: Seen) -> tuple[int, str, bytes]:
        self.requests.append(seen)
        if len(self.requests) <= self.not_ready_for:
            return _error(503, "Service Unavailable", "Kibana server is not ready yet")
        space, api = self._split_space(seen.path)
        if self.authorization is not None and seen.headers.get("authorization") != self.authorization:
            return _error(401, "Unauthorized", "[security_exception]: unable to authenticate user")
        if api.startswith(_RULE_PATH):
            if seen.method != "GET" and "kbn-xsrf" not in seen.headers:
                return _error(400, "Bad Request", "Request must contain a kbn-xsrf header.")
            if space not in self.spaces:
                return _error(404, "Not Found", f"Saved object [space/{space}] not found")
            return self._rule(space, unquote(api.removeprefix(_RULE_PATH)), seen)
        if seen.method != "POST" or api not in ("/api/saved_objects/_import", "/api/saved_objects/_export"):
            return _error(404, "Not Found", "Not Found")
        if self.xsrf_header not in seen.headers:
            return _error(400, "Bad Request", f"Request must contain a {self.xsrf_header} header.")
        if space not in self.spaces:
            return _error(404, "Not Found", f"Saved object [space/{space}] not found")
        if api.endswith("_import"):
            return self._import(space, seen)
        return self._export(space, seen)

    def _split_space(self, path: str) -> tuple[str, str]:
        if path.startswith("/s/"):
            _, _, space, rest = path.split("/", 3)
            return space, "/" + rest
        return "default", path

    def _import(self, space: str, seen: Seen) -> tuple[int, str, bytes]:
        unknown = set(seen.query) - {"overwrite", "createNewCopies", "compatibilityMode"}
        if unknown:
            key = sorted(unknown)[0]
            return _error(400, "Bad Request", f"[request query.{key}]: definition for this key is missing")
        overwrite = seen.query.get("overwrite") == ["true"]
        ctype = seen.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data; boundary="):
            return _error(415, "Unsupported Media Type", "Unsupported Media Type")
        message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + seen.body)
        parts = list(message.iter_parts())
        if [p.get_param("name", header="content-disposition") for p in parts] != ["file"]:
            message_text = "[request body.file]: expected value of type [Stream] but got [undefined]"
            return _error(400, "Bad Request", message_text)
        filename = parts[0].get_filename() or ""
        if not filename.endswith(".ndjson"):
            ext = "." + filename.rsplit(".", 1)[-1] if "." in filename else ""
            return _error(400, "Bad Request", f"Invalid file extension {ext}")
        payload = parts[0].get_payload(decode=True)
        assert isinstance(payload, bytes)
        objects = []
        for line in payload.decode("utf-8").splitlines():
            if not line.strip():
                continue
            obj = json.loads(line)
            if "exportedCount" in obj and "type" not in obj:
                continue  # Kibana skips the export summary line
            objects.append(obj)
        store = self.store.setdefault(space, {})
        importing = {(o["type"], o["id"]) for o in objects if o["type"] in self.supported_types}
        results, errors = [], []
        for obj in objects:
            key = (obj["type"], obj["id"])
            title = obj.get("attributes", {}).get("title", obj["id"])
            meta = {"title": title, "icon": ICONS.get(obj["type"], "")}
            base = {"id": obj["id"], "type": obj["type"], "title": title, "meta": meta}
            if obj["type"] not in self.supported_types:
                errors.append({**base, "error": {"type": "unsupported_type"}})
                continue
            missing = [
                {"type": r["type"], "id": r["id"]}
                for r in obj.get("references", [])
                if (r["type"], r["id"]) not in importing and (r["type"], r["id"]) not in store
            ]
            if missing:
                errors.append({**base, "error": {"type": "missing_references", "references": missing}})
                continue
            existed = key in store
            if existed and not overwrite:
                errors.append({**base, "error": {"type": "conflict"}})
                continue
            store[key] = obj
            result: dict[str, Any] = {"id": obj["id"], "type": obj["type"], "meta": meta, "managed": False}
            if existed:
                result["overwrite"] = True
            results.append(result)
        answer: dict[str, Any] = {
            "success": not errors,
            "successCount": len(results),
            "successResults": results,
            "warnings": [],
        }
        if errors:
            answer["errors"] = errors
        return 200, "application/json", json.dumps(answer).encode()

    def _export(self, space: str, seen: Seen) -> tuple[int, str, bytes]:
        if not seen.headers.get("content-type", "").startswith("application/json"):
            return _error(415, "Unsupported Media Type", "Unsupported Media Type")
        request = json.loads(seen.body)
        store = self.store.get(space, {})
        wanted = [(o["type"], o["id"]) for o in request["objects"]]
        missing = [{"type": t, "id": i} for t, i in wanted if (t, i) not in store]
        if missing:
            return _error(400, "Bad Request", f"Error fetching objects to export: {json.dumps(missing)}")
        lines = [json.dumps(store[k], sort_keys=True) for k in wanted]
        summary = {"exportedCount": len(lines), "missingRefCount": 0, "missingReferences": [],
                   "excludedObjects": [], "excludedObjectsCount": 0}
        lines.append(json.dumps(summary))
        return 200, "application/ndjson", ("\n".join(lines) + "\n").encode()


    def _rule(self, space: str, rule_id: str, seen: Seen) -> tuple[int, str, bytes]:
        store = self.rules.setdefault(space, {})
        if not rule_id or "/" in rule_id:
            return _error(404, "Not Found", "Not Found")
        if seen.method == "GET":
            if rule_id not in store:
                return _error(404, "Not Found", f"Saved object [alert/{rule_id}] not found")
            return 200, "application/json", json.dumps(store[rule_id]).encode()
        if seen.method not in ("POST", "PUT"):
            return _error(404, "Not Found", "Not Found")
        if not seen.headers.get("content-type", "").startswith("application/json"):
            return _error(415, "Unsupported Media Type", "Unsupported Media Type")
        body = json.loads(seen.body)
        creating = seen.method == "POST"
        problem = _check_keys(body, _CREATE_KEYS if creating else _UPDATE_KEYS, _CREATE_REQUIRED if creating else
                              _UPDATE_REQUIRED)  # fmt: skip
        if problem:
            return _error(400, "Bad Request", problem)
        if creating and rule_id in store:
            return _error(409, "Conflict", f"Saved object [alert/{rule_id}] conflict")
        if not creating and rule_id not in store:
            return _error(404, "Not Found", f"Saved object [alert/{rule_id}] not found")
        rule_type = body["rule_type_id"] if creating else store[rule_id]["rule_type_id"]
        if rule_type != ".es-query":
            return _error(400, "Bad Request", f'Rule type "{rule_type}" is not registered.')
        problem = _check_es_query_params(body.get("params", {}))
        if problem:
            return _error(400, "Bad Request", f"params invalid: {problem}")
        for action in body.get("actions", []):
            problem = _check_keys(action, _ACTION_KEYS, {"id"})
            if problem:
                return _error(400, "Bad Request", problem)
        old = store.get(rule_id, {})
        rule = {
            "id": rule_id,
            "name": body["name"],
            "tags": body.get("tags", []),
            "enabled": body.get("enabled", True) if creating else old["enabled"],
            "consumer": body["consumer"] if creating else old["consumer"],
            "rule_type_id": rule_type,
            "schedule": body["schedule"],
            "params": body.get("params", {}),
            # Kibana answers actions with the connector's type beside what was sent.
            "actions": [{**a, "connector_type_id": ".webhook"} for a in body.get("actions", [])],
            "revision": old.get("revision", -1) + 1,
        }
        store[rule_id] = rule
        return 200, "application/json", json.dumps(rule).encode()


_RULE_PATH = "/api/alerting/rule/"
# Kibana's createBodySchema / updateBodySchema (x-pack/plugins/alerting/common/routes/rule/apis/*/schemas/v1.ts).
_CREATE_KEYS = {"name", "rule_type_id", "enabled", "consumer", "tags", "throttle", "params", "schedule", "actions",
                "notify_when", "alert_delay", "flapping"}  # fmt: skip
_CREATE_REQUIRED = {"name", "rule_type_id", "consumer", "schedule"}
_UPDATE_KEYS = {"name", "tags", "schedule", "throttle", "params", "actions", "notify_when", "alert_delay", "flapping"}
_UPDATE_REQUIRED = {"name", "schedule"}
_ACTION_KEYS = {"group", "id", "params", "frequency", "uuid", "alerts_filter", "use_alert_data_for_template"}
# .es-query params (x-pack/plugins/stack_alerts/server/rule_types/es_query/rule_type_params.ts).
_ES_QUERY_KEYS = {"size", "timeWindowSize", "excludeHitsFromPreviousRun", "timeWindowUnit", "threshold",
                  "thresholdComparator", "aggType", "aggField", "groupBy", "termField", "termSize", "searchType",
                  "timeField", "searchConfiguration", "esQuery", "index", "esqlQuery"}  # fmt: skip
_COMPARATORS = {">", ">=", "<", "<=", "between", "notBetween"}
_AGG_TYPES = {"count", "avg", "min", "max", "sum"}
_MAX_GROUPS = 1000


def _check_keys(body: Any, allowed: set[str], required: set[str]) -> str | None:
    if not isinstance(body, dict):
        return "[request body]: expected a plain object value"
    for key in sorted(body):
        if key not in allowed:
            return f"[request body.{key}]: definition for this key is missing"
    for key in sorted(required):
        if key not in body:
            return f"[request body.{key}]: expected value of type [string] but got [undefined]"
    return None


def _check_es_query_params(params: dict[str, Any]) -> str | None:
    for key in sorted(params):
        if key not in _ES_QUERY_KEYS:
            return f"[{key}]: definition for this key is missing"
    size = params.get("size")
    if not isinstance(size, int) or not 0 <= size <= 10000:
        return "[size]: must be a number from 0 to 10000"
    if not isinstance(params.get("timeWindowSize"), int) or params["timeWindowSize"] < 1:
        return "[timeWindowSize]: must be a number of at least 1"
    if params.get("timeWindowUnit") not in ("s", "m", "h", "d"):
        return f"[timeWindowUnit]: invalid timeWindowUnit: \"{params.get('timeWindowUnit')}\""
    threshold = params.get("threshold")
    if not isinstance(threshold, list) or not 1 <= len(threshold) <= 2:
        return "[threshold]: array size is out of range"
    if params.get("thresholdComparator") not in _COMPARATORS:
        return f"invalid thresholdComparator specified: {params.get('thresholdComparator')}"
    if params["thresholdComparator"] in ("between", "notBetween") and len(threshold) == 1:
        return f'[threshold]: must have two elements for the "{params["thresholdComparator"]}" comparator'
    agg_type = params.get("aggType", "count")
    if agg_type not in _AGG_TYPES:
        return f'[aggType]: invalid aggType: "{agg_type}"'
    if agg_type != "count" and not params.get("aggField"):
        return f'[aggField]: must have a value when [aggType] is "{agg_type}"'
    group_by = params.get("groupBy", "all")
    if group_by not in ("all", "top"):
        return f'[groupBy]: invalid groupBy: "{group_by}"'
    if group_by == "top":
        if params.get("termField") is None:
            return "[termField]: termField required when [groupBy] is top"
        if params.get("termSize") is None:
            return "[termSize]: termSize required when [groupBy] is top"
        if params["termSize"] > _MAX_GROUPS:
            return f"[termSize]: must be less than or equal to {_MAX_GROUPS}"
    if params.get("searchType", "esQuery") != "esQuery":
        return None
    if not isinstance(params.get("timeField"), str) or not params["timeField"]:
        return "[timeField]: expected value of type [string] but got [undefined]"
    index = params.get("index")
    if not isinstance(index, list) or not index or not all(isinstance(i, str) and i for i in index):
        return "[index]: array size is [0], but cannot be smaller than [1]"
    try:
        query = json.loads(params.get("esQuery") or "")
    except ValueError:
        return "[esQuery]: must be valid JSON"
    if not query.get("query"):
        return '[esQuery]: must contain "query"'
    return None


def osd() -> FakeKibana:
    """OpenSearch Dashboards 2.x: ``osd-xsrf``, no spaces, no Lens, the aggregation-based visualizations."""
    return FakeKibana(
        supported_types={"index-pattern", "search", "visualization", "dashboard"}, xsrf_header="osd-xsrf"
    )


def _error(status: int, error: str, message: str) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps({"statusCode": status, "error": error, "message": message}).encode()


@contextmanager
def running(kibana: FakeKibana) -> Iterator[FakeKibana]:
    """Serve ``kibana`` on a free local port in a thread for the duration of the block."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def do_PUT(self) -> None:
            self._serve()

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            seen = Seen(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length),
            )
            status, ctype, body = kibana.handle(seen)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep the test output clean; requests are recorded in ``kibana.requests``."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    kibana.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield kibana
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
