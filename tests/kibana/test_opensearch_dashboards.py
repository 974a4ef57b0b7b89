"""The OpenSearch Dashboards objects: current, within OpenSearch Dashboards' saved-object mappings, and
answering their questions when their queries run on the real OpenSearch node."""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from celery_logs import _schema
from pipelines.cli import main
from pipelines.dev import synth as _synth
from pipelines.dev.stack import LocalOpenSearch
from pipelines.kibana import dashboards as osd
from pipelines.kibana import objects as ko
from tests.analytics.expected import percentile
from tests.kibana.fake_kibana import osd as fake_osd
from tests.kibana.fake_kibana import running
from tests.kibana.translate import kql_fields, kql_to_dsl, search_request
from tests.support.engines import client_for

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = osd.build_objects()
BY_KEY = {(o["type"], o["id"]): o for o in OBJECTS}

# The attribute mappings OpenSearch Dashboards 2.x declares (src/plugins/{data,discover,visualizations,
# dashboard}/server/saved_objects/*.ts). Its saved-objects index maps them strictly: any other attribute
# of search, visualization or dashboard is refused. index-pattern is ``dynamic: false`` and holds the
# attributes its index-patterns service reads (title, timeFieldName, fields, fieldFormatMap, ...).
SCHEMAS: dict[str, dict[str, frozenset[str]]] = {
    "index-pattern": {
        "required": frozenset({"title"}),
        "allowed": frozenset(
            {"title", "type", "dataSource", "timeFieldName", "intervalName", "fields", "fieldFormatMap",
             "sourceFilters", "typeMeta", "notExpandable"}
        ),
        "json": frozenset({"fields", "fieldFormatMap"}),
    },
    "search": {
        "required": frozenset({"title", "kibanaSavedObjectMeta"}),
        "allowed": frozenset(
            {"columns", "description", "hits", "kibanaSavedObjectMeta", "sort", "columnWidths", "title", "version"}
        ),
        "json": frozenset({"kibanaSavedObjectMeta.searchSourceJSON"}),
    },
    "visualization": {
        "required": frozenset({"title", "visState", "kibanaSavedObjectMeta"}),
        "allowed": frozenset(
            {"description", "kibanaSavedObjectMeta", "savedSearchRefName", "title", "uiStateJSON", "version",
             "visState"}
        ),
        "json": frozenset({"kibanaSavedObjectMeta.searchSourceJSON", "uiStateJSON", "visState"}),
    },
    "dashboard": {
        "required": frozenset({"title", "panelsJSON"}),
        "allowed": frozenset(
            {"description", "hits", "kibanaSavedObjectMeta", "optionsJSON", "panelsJSON", "refreshInterval",
             "timeFrom", "timeRestore", "timeTo", "title", "version"}
        ),
        "json": frozenset({"kibanaSavedObjectMeta.searchSourceJSON", "optionsJSON", "panelsJSON"}),
    },
}
#: refreshInterval's own mapping in the dashboard type.
REFRESH_INTERVAL_KEYS = frozenset({"display", "pause", "section", "value"})
#: Aggregation-based visualization types of OpenSearch Dashboards 2.x, and the aggregations used here.
VIS_TYPES = frozenset({"line", "area", "histogram", "horizontal_bar", "table", "metric", "input_control_vis"})
AGG_TYPES = {
    "count": "metric", "percentiles": "metric", "max": "metric", "min": "metric", "avg": "metric", "sum": "metric",
    "cardinality": "metric", "date_histogram": "bucket", "terms": "bucket", "filters": "bucket",
}  # fmt: skip
#: The newest migration each type declares in OpenSearch Dashboards 2.x: never declare a newer one.
NEWEST_MIGRATION = {"index-pattern": "7.6.0", "search": "7.9.3", "visualization": "7.10.0", "dashboard": "7.9.3"}


def _dotted(attrs: dict[str, Any], name: str) -> Any:
    value: Any = attrs
    for part in name.split("."):
        value = value[part]
    return value


def _field_types() -> dict[str, dict[str, str]]:
    """Index pattern id -> field -> mapping type, from the schema's template and entity mapping."""

    def flatten(props: dict[str, Any], prefix: str = "") -> dict[str, str]:
        out: dict[str, str] = {}
        for name, spec in props.items():
            if "properties" in spec:
                out.update(flatten(spec["properties"], f"{prefix}{name}."))
            else:
                out[f"{prefix}{name}"] = spec.get("type", "object")
        return out

    template = _schema.index_template(prefix="celery-logs")["template"]["mappings"]["properties"]
    tasks = _schema.tasks_index_body()["mappings"]["properties"]
    # The periodic view is the entity index again, timed by when beat sent the task.
    return {
        ko.RECORDS_DATA_VIEW_ID: flatten(template),
        ko.TASKS_DATA_VIEW_ID: flatten(tasks),
        ko.PERIODIC_DATA_VIEW_ID: flatten(tasks),
    }


AGGREGATABLE = frozenset({"keyword", "date", "date_nanos", "long", "integer", "short", "byte", "double", "float",
                          "boolean", "scaled_float", "unsigned_long"})  # fmt: skip


def _vis_state(obj: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(obj["attributes"]["visState"])
    return state


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_committed_files_are_current() -> None:
    """kibana/opensearch-dashboards holds exactly what the generator writes (regenerate with the module)."""
    directory = ROOT / "kibana" / "opensearch-dashboards"
    expected = osd.rendered_files()
    on_disk = {
        str(p.relative_to(directory)): p.read_text(encoding="utf-8") for p in directory.rglob("*") if p.is_file()
    }
    assert on_disk == expected


def test_every_kibana_object_has_its_counterpart() -> None:
    """The same index patterns, searches and dashboard as Kibana's, and a visualization per Lens layer."""
    kibana = ko.build_objects()
    for obj in kibana:
        if obj["type"] == "lens":
            lens_layers = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
            ids = {obj["id"]} if len(lens_layers) == 1 else {f"{obj['id']}-{layer}" for layer in lens_layers}
            assert all(("visualization", i) in BY_KEY for i in ids)
        else:
            assert (obj["type"], obj["id"]) in BY_KEY
            assert BY_KEY[(obj["type"], obj["id"])]["attributes"]["title"] == obj["attributes"]["title"]


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: f"{o['type']}:{o['id']}")
def test_attributes_follow_the_type_mapping(obj: dict[str, Any]) -> None:
    """Attributes are within the type's mapping; JSON strings parse; the migration version is not newer than 2.x's."""
    schema = SCHEMAS[obj["type"]]
    attrs = obj["attributes"]
    assert schema["required"] <= set(attrs) <= schema["allowed"]
    for name in schema["json"]:
        if name.split(".")[0] in attrs:
            json.loads(_dotted(attrs, name))
    if "refreshInterval" in attrs:
        assert set(attrs["refreshInterval"]) <= REFRESH_INTERVAL_KEYS
    if "kibanaSavedObjectMeta" in attrs:
        assert set(attrs["kibanaSavedObjectMeta"]) == {"searchSourceJSON"}
    (declared,) = obj["migrationVersion"].items()
    assert declared[0] == obj["type"] and _version(declared[1]) <= _version(NEWEST_MIGRATION[obj["type"]])
    assert set(obj) == {"attributes", "id", "migrationVersion", "references", "type"}


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: f"{o['type']}:{o['id']}")
def test_references_resolve(obj: dict[str, Any]) -> None:
    """Every reference names an object of the set; every *RefName inside the object names a reference."""
    names = {r["name"] for r in obj["references"]}
    for ref in obj["references"]:
        assert (ref["type"], ref["id"]) in BY_KEY
    wanted: list[str] = []
    meta = obj["attributes"].get("kibanaSavedObjectMeta")
    if meta:
        ref_name = json.loads(meta["searchSourceJSON"]).get("indexRefName")
        if ref_name:
            wanted.append(ref_name)
    if obj["type"] == "visualization":
        wanted += [c["indexPatternRefName"] for c in _vis_state(obj)["params"].get("controls", [])]
    if obj["type"] == "dashboard":
        wanted += [p["panelRefName"] for p in json.loads(obj["attributes"]["panelsJSON"])]
    assert set(wanted) == names
    assert wanted or obj["type"] == "index-pattern"


VISUALIZATIONS = [o for o in OBJECTS if o["type"] == "visualization"]


@pytest.mark.parametrize("obj", VISUALIZATIONS, ids=lambda o: o["id"])
def test_visualization_aggs_use_fields_that_support_them(obj: dict[str, Any]) -> None:
    """Known types and aggregations, schemas that fit, fields that exist and aggregate, orderBy naming a metric."""
    state = _vis_state(obj)
    assert state["type"] in VIS_TYPES and state["title"] == obj["attributes"]["title"]
    fields = _field_types()[obj["references"][0]["id"]]
    ids = {a["id"] for a in state["aggs"]}
    assert len(ids) == len(state["aggs"])
    for agg in state["aggs"]:
        kind = AGG_TYPES[agg["type"]]
        assert (agg["schema"] == "metric") == (kind == "metric")
        if "field" in agg["params"]:
            assert fields[agg["params"]["field"]] in AGGREGATABLE, agg["params"]["field"]
        if agg["type"] == "terms" and agg["params"]["orderBy"] != "_key":
            target = next(a for a in state["aggs"] if a["id"] == agg["params"]["orderBy"])
            assert target["schema"] == "metric"
    if state["type"] == "input_control_vis":
        for control in state["params"]["controls"]:
            assert fields[control["fieldName"]] == "keyword"
        return
    metrics = [a["id"] for a in state["aggs"] if a["schema"] == "metric"]
    assert metrics
    if state["type"] != "table":
        assert [s["data"]["id"] for s in state["params"]["seriesParams"]] == metrics
        assert sum(a["schema"] == "segment" for a in state["aggs"]) == 1


def test_queries_name_indexed_fields() -> None:
    """Every KQL string (searches, visualizations, filters) names fields of the pattern it runs on."""
    types = _field_types()
    for object_id, query in osd.iter_queries(OBJECTS):
        obj = next(o for o in OBJECTS if o["id"] == object_id)
        fields = types[obj["references"][0]["id"]]
        for name in kql_fields(query):
            assert name in fields, (object_id, name)


def test_dashboard_grid_fits_and_panels_do_not_overlap() -> None:
    """48 columns wide, nothing overlapping, the Kibana dashboard's panels and the failed-tasks search on it."""
    dashboard = BY_KEY[("dashboard", ko.DASHBOARD_ID)]
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridData"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 48
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not area & cells
        cells |= area
    on_board = {(r["type"], r["id"]) for r in dashboard["references"]}
    # Each panel of the Kibana dashboard is there: a Lens of several layers as one visualization per layer.
    kibana = next(o for o in ko.build_objects() if o["type"] == "dashboard")
    for ref in {r["id"] for r in kibana["references"] if r["type"] != "index-pattern"}:
        assert any(i == ref or i.startswith(f"{ref}-") for _, i in on_board), ref
    assert ("search", "celery-logs-failed-tasks") in on_board


# --- meaning: the queries run on the real OpenSearch node ------------------------------------------------

HOUR_MS = 3_600_000


class Loaded:
    """The generated history in OpenSearch, and the objects pointed at its indices."""

    def __init__(self, es: Any, history: _synth.SynthHistory, prefix: str, tasks_index: str) -> None:
        self.es = es
        self.tasks = history.tasks
        catalog = ko.default_catalog(records_pattern=f"{prefix}-*", tasks_pattern=tasks_index)
        self.objects = {o["id"]: o for o in osd.build_objects(catalog)}
        stamps = sorted(r["@timestamp"] for r in history.records)
        self.start, self.end = "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"
        assert self.start < stamps[0] and stamps[-1] < self.end

    def search(self, object_id: str) -> list[dict[str, Any]]:
        obj = self.objects[object_id]
        view = self.objects[obj["references"][0]["id"]]
        req = search_request(obj, view, start=self.start, end=self.end, size=5000)
        index = req.pop("index")
        resp = self.es.search(index=index, **req)
        hits: list[dict[str, Any]] = resp["hits"]["hits"]
        assert resp["hits"]["total"]["value"] == len(hits)
        return hits

    def rows(self, object_id: str) -> dict[tuple[Any, ...], dict[str, Any]]:
        """The visualization's request (buckets nested in order, metrics inside), as rows keyed by bucket keys."""
        obj = self.objects[object_id]
        state = _vis_state(obj)
        view = self.objects[obj["references"][0]["id"]]
        source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        metrics = {a["id"]: a for a in state["aggs"] if a["schema"] == "metric"}
        buckets = [a for a in state["aggs"] if a["schema"] != "metric"]
        leaf: dict[str, Any] = {}
        for agg_id, agg in metrics.items():
            if agg["type"] != "count":
                body = {k: v for k, v in agg["params"].items() if k in ("field", "percents")}
                body.update(json.loads(agg["params"].get("json") or "{}"))
                leaf[agg_id] = {agg["type"]: body}
        aggs = leaf
        for agg in reversed(buckets):
            p = agg["params"]
            if agg["type"] == "date_histogram":
                spec: dict[str, Any] = {"date_histogram": {"field": p["field"], "fixed_interval": "1h",
                                                           "time_zone": "UTC", "min_doc_count": 1}}  # fmt: skip
            elif agg["type"] == "terms":
                order = {"_key": p["order"]} if p["orderBy"] == "_key" else {
                    ("_count" if metrics[p["orderBy"]]["type"] == "count" else p["orderBy"]): p["order"]
                }  # fmt: skip
                spec = {"terms": {"field": p["field"], "size": p["size"], "order": order}}
            else:
                spec = {"filters": {"filters": {f["label"]: kql_to_dsl(f["input"]["query"]) for f in p["filters"]}}}
            aggs = {agg["id"]: {**spec, "aggs": aggs}} if aggs else {agg["id"]: spec}
        time_field = view["attributes"]["timeFieldName"]
        query = {"bool": {"filter": [kql_to_dsl(source["query"]["query"]),
                                     {"range": {time_field: {"gte": self.start, "lte": self.end}}}]}}  # fmt: skip
        resp = self.es.search(index=view["attributes"]["title"], size=0, query=query, aggs=aggs)

        out: dict[tuple[Any, ...], dict[str, Any]] = {}

        def walk(node: dict[str, Any], depth: int, key: tuple[Any, ...]) -> None:
            if depth == len(buckets):
                row = {}
                for agg_id, agg in metrics.items():
                    if agg["type"] == "count":
                        row[agg_id] = node["doc_count"]
                    elif agg["type"] == "percentiles":
                        (row[agg_id],) = node[agg_id]["values"].values()
                    else:
                        row[agg_id] = node[agg_id]["value"]
                out[key] = row
                return
            container = node[buckets[depth]["id"]]["buckets"]
            items = container.items() if isinstance(container, dict) else ((b["key"], b) for b in container)
            for bucket_key, bucket in items:
                if bucket["doc_count"]:
                    walk(bucket, depth + 1, (*key, bucket_key))

        walk(resp["aggregations"], 0, ())
        return out


@pytest.fixture(scope="module")
def loaded(os_node: LocalOpenSearch) -> Iterator[Loaded]:
    """One generated history (failures, retries, revokes, lost tasks) loaded into OpenSearch once."""
    es = client_for(os_node.url, request_timeout=120)
    prefix = f"t{uuid.uuid4().hex[:10]}-celery-logs"
    tasks_index = f"tasks-{prefix}"
    history = _synth.generate(tasks=300, seed=11, lost_tasks=2, revoke_probability=0.03)
    try:
        _synth.load(es, history, prefix=prefix, tasks_index=tasks_index)
        for task in history.tasks:
            if task.lost:
                es.update(index=tasks_index, id=task.task_id, doc={"lost": True, "lost_reason": "heartbeat-timeout"})
        es.indices.refresh(index=tasks_index)
        yield Loaded(es, history, prefix, tasks_index)
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{prefix}-*,{tasks_index}", expand_wildcards="all")
        es.close()


def _hour(t: datetime) -> int:
    ms = int(t.astimezone(timezone.utc).timestamp() * 1000)
    return ms - ms % HOUR_MS


def _finished(loaded: Loaded) -> dict[str, list[_synth.SynthTask]]:
    by_name: dict[str, list[_synth.SynthTask]] = defaultdict(list)
    for t in loaded.tasks:
        if t.end_action:
            by_name[t.name].append(t)
    return by_name


@pytest.mark.integration
def test_every_saved_search_runs_and_failed_tasks_lists_each_failure(loaded: Loaded) -> None:
    """Every search runs on OpenSearch; failed tasks and lost tasks hold exactly the ground truth's tasks."""
    for obj in OBJECTS:
        if obj["type"] == "search":
            loaded.search(obj["id"])
    failed = Counter(h["_source"]["celery"]["task"]["id"] for h in loaded.search("celery-logs-failed-tasks"))
    assert failed == dict.fromkeys((t.task_id for t in loaded.tasks if t.outcome == "failure"), 1)
    lost = sorted(h["_source"]["task_id"] for h in loaded.search("celery-logs-lost-tasks"))
    assert lost == sorted(t.task_id for t in loaded.tasks if t.lost)


@pytest.mark.integration
def test_throughput_by_outcome(loaded: Loaded) -> None:
    """Throughput: finished tasks per hour per outcome."""
    rows = loaded.rows("celery-logs-throughput")
    expected = Counter((_hour(t.ended_at), t.outcome) for t in loaded.tasks if t.end_action and t.ended_at)
    assert {k: v["1"] for k, v in rows.items()} == expected


@pytest.mark.integration
def test_failure_share_by_task(loaded: Loaded) -> None:
    """Failure rate: the failure share of each task's finished runs is failures / finished runs."""
    rows = loaded.rows("celery-logs-failure-rate")
    got: dict[str, dict[str, int]] = defaultdict(dict)
    for (name, series), row in rows.items():
        got[name][series] = row["1"]
    for name, ts in _finished(loaded).items():
        failures = sum(t.outcome == "failure" for t in ts)
        assert got[name].get("Failure rate", 0) == failures
        assert got[name].get("Failure rate", 0) + got[name].get("Other", 0) == len(ts)


@pytest.mark.integration
def test_task_table(loaded: Loaded) -> None:
    """Task table: per task its finished runs, exact p50 / p95 (OpenSearch's rule) and max run time."""
    state = _vis_state(loaded.objects["celery-logs-task-table"])
    label = {a["params"]["customLabel"]: a["id"] for a in state["aggs"] if a["schema"] == "metric"}
    rows = loaded.rows("celery-logs-task-table")
    for name, ts in _finished(loaded).items():
        row = rows[(name,)]
        durations = [t.duration_ns for t in ts if t.duration_ns is not None]
        assert row[label["Runs"]] == len(ts)
        assert row[label["Max"]] == max(durations)
        assert row[label["p50"]] == pytest.approx(percentile(durations, 50, engine="opensearch"), rel=1e-9)
        assert row[label["p95"]] == pytest.approx(percentile(durations, 95, engine="opensearch"), rel=1e-9)
    assert len(rows) == len(_finished(loaded))


@pytest.mark.integration
def test_top_exceptions(loaded: Loaded) -> None:
    """Top exceptions: failures per exception group and type, and the distinct tasks they hit."""
    rows = loaded.rows("celery-logs-top-exceptions")
    failed = [t for t in loaded.tasks if t.outcome == "failure"]
    hits = loaded.search("celery-logs-failed-tasks")
    by_key = Counter((h["_source"]["error"]["grouping_key"], h["_source"]["error"]["type"]) for h in hits)
    assert {k: v["1"] for k, v in rows.items()} == by_key
    assert sum(by_key.values()) == len(failed)


# --- import: `celery-logs kibana import --target opensearch-dashboards` ----------------------------------


def test_import_into_opensearch_dashboards_creates_then_updates(capsys: pytest.CaptureFixture[str]) -> None:
    """The OpenSearch Dashboards objects go to its import API with osd-xsrf; a second import updates them."""
    shipped = (osd.dashboards_dir() / osd.NDJSON_NAME).read_bytes()
    count = len(OBJECTS)
    with running(fake_osd()) as server:
        argv = ["kibana", "import", "--target", "opensearch-dashboards", "--kibana", server.url]
        assert main(argv) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[-1] == f"OpenSearch Dashboards at {server.url}: {count} created, 0 updated, 0 refused"
        assert set(server.store["default"]) == set(BY_KEY)
        assert main(argv) == 0
        assert capsys.readouterr().out.splitlines()[-1].endswith(f": 0 created, {count} updated, 0 refused")
        req = server.requests[0]
        assert (req.method, req.path, req.query) == ("POST", "/api/saved_objects/_import", {"overwrite": ["true"]})
        assert req.headers["osd-xsrf"] == "true" and "kbn-xsrf" not in req.headers
        assert b'filename="celery-logs-opensearch-dashboards.ndjson"' in req.body and shipped in req.body


def test_kibana_objects_are_refused_by_opensearch_dashboards(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --target, the Lens objects and the missing osd-xsrf header are what OpenSearch Dashboards refuses."""
    with running(fake_osd()) as server:
        assert main(["kibana", "import", "--kibana", server.url]) == 1
    assert capsys.readouterr().err.startswith("celery-logs kibana: Kibana answered 400 Bad Request")


def test_opensearch_dashboards_has_no_spaces(capsys: pytest.CaptureFixture[str]) -> None:
    """--space with the OpenSearch Dashboards target is one line, exit 1."""
    argv = ["kibana", "import", "--target", "opensearch-dashboards", "--space", "ops", "--kibana", "http://127.0.0.1:9"]
    assert main(argv) == 1
    assert capsys.readouterr().err == "celery-logs kibana: OpenSearch Dashboards has no Kibana spaces: drop --space\n"
