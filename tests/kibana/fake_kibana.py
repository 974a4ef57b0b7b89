"""A stand-in for Kibana's saved-objects API that checks each request the way Kibana does and answers alike.

It keeps saved objects per space, validates the import request (method, path, ``kbn-xsrf``, credentials,
multipart body with one ``file`` part named ``*.ndjson``), resolves references, honours ``overwrite``,
and answers with Kibana's JSON: ``success``, ``successCount``, ``successResults`` and ``errors``.
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
from urllib.parse import parse_qs, urlsplit

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

    # --- the API --------------------------------------------------------------------------------------

    def handle(self, seen: Seen) -> tuple[int, str, bytes]:
        self.requests.append(seen)
        if len(self.requests) <= self.not_ready_for:
            return _error(503, "Service Unavailable", "Kibana server is not ready yet")
        space, api = self._split_space(seen.path)
        if self.authorization is not None and seen.headers.get("authorization") != self.authorization:
            return _error(401, "Unauthorized", "[security_exception]: unable to authenticate user")
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
