"""Structure and fields of the Kibana objects, checked against Kibana's attribute schemas and our mappings."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from celery_logs import _schema
from pipelines.kibana import objects as ko
from tests.kibana.translate import kql_fields, kql_to_dsl

ROOT = Path(__file__).resolve().parents[2]
OBJECTS = ko.build_objects()
BY_KEY = {(o["type"], o["id"]): o for o in OBJECTS}

# Attribute schemas of each type as Kibana 8.11 declares them (data_views, saved_search, lens and
# dashboard plugins): required names, every allowed name, and which hold JSON inside a string.
SCHEMAS: dict[str, dict[str, frozenset[str]]] = {
    "index-pattern": {
        "required": frozenset({"title"}),
        "allowed": frozenset(
            {
                "title", "timeFieldName", "fields", "fieldFormatMap", "sourceFilters", "runtimeFieldMap",
                "fieldAttrs", "typeMeta", "type", "name", "allowNoIndex", "allowHidden",
            }
        ),
        "json": frozenset({"fields", "fieldFormatMap", "sourceFilters", "runtimeFieldMap", "fieldAttrs", "typeMeta"}),
    },
    "search": {
        "required": frozenset({"title", "kibanaSavedObjectMeta"}),
        "allowed": frozenset(
            {
                "title", "description", "columns", "sort", "grid", "rowHeight", "rowsPerPage", "hideChart",
                "breakdownField", "kibanaSavedObjectMeta", "isTextBasedQuery", "usesAdHocDataView", "timeRestore",
                "timeRange", "refreshInterval", "viewMode", "hideAggregatedPreview", "hits", "version",
            }
        ),
        "json": frozenset({"kibanaSavedObjectMeta.searchSourceJSON"}),
    },
    "lens": {
        "required": frozenset({"title", "visualizationType", "state"}),
        "allowed": frozenset({"title", "description", "visualizationType", "state", "uiStateJSON", "visState"}),
        "json": frozenset(),
    },
    "dashboard": {
        "required": frozenset({"title", "kibanaSavedObjectMeta"}),
        "allowed": frozenset(
            {
                "title", "description", "kibanaSavedObjectMeta", "timeRestore", "timeFrom", "timeTo",
                "refreshInterval", "controlGroupInput", "panelsJSON", "optionsJSON", "hits", "version",
            }
        ),
        "json": frozenset(
            {
                "kibanaSavedObjectMeta.searchSourceJSON", "panelsJSON", "optionsJSON",
                "controlGroupInput.panelsJSON", "controlGroupInput.ignoreParentSettingsJSON",
            }
        ),
    },
}
#: Newest migration version each type has in Kibana 8.11; declaring a newer one would refuse older Kibanas.
MAX_TYPE_MIGRATION = {"index-pattern": (8, 0, 0), "search": (8, 0, 0), "lens": (8, 9, 0), "dashboard": (8, 9, 0)}

AGGREGATABLE = {"keyword", "long", "integer", "float", "double", "date", "boolean"}
NUMERIC = {"long", "integer", "float", "double"}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _dotted(attrs: dict[str, Any], name: str) -> Any:
    node: Any = attrs
    for part in name.split("."):
        node = node[part]
    return node


def _refs(obj: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {r["name"]: r for r in obj["references"]}


def _field_types(*, searchable: bool = False) -> dict[str, dict[str, tuple[str, bool]]]:
    """Data view id -> field -> (type, aggregatable), straight from the generated mappings.

    ``searchable``: (type, searchable) instead. A field with doc values and no index is both: both engines
    search doc values (Elasticsearch since 8.1, OpenSearch since 2.14), as the field-caps API reports.
    """

    def flatten(props: dict[str, Any], prefix: str = "") -> dict[str, tuple[str, bool]]:
        out: dict[str, tuple[str, bool]] = {}
        for name, spec in props.items():
            if "properties" in spec:
                out |= flatten(spec["properties"], f"{prefix}{name}.")
            elif "type" in spec:
                indexed, doc_values = spec.get("index", True), spec.get("doc_values", True)
                out[prefix + name] = (spec["type"], (indexed or doc_values) if searchable else doc_values)
                for sub, sub_spec in spec.get("fields", {}).items():
                    out[f"{prefix}{name}.{sub}"] = (sub_spec["type"], True)
        return out

    records = flatten(_schema.index_template()["template"]["mappings"]["properties"])
    tasks = flatten(_schema.tasks_index_body()["mappings"]["properties"])
    return {ko.RECORDS_DATA_VIEW_ID: records, ko.TASKS_DATA_VIEW_ID: tasks, ko.PERIODIC_DATA_VIEW_ID: tasks}


FIELDS = _field_types()
SEARCHABLE = _field_types(searchable=True)


def _data_view_of(obj: dict[str, Any]) -> str:
    ref_names = {"search": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    if obj["type"] in ref_names:
        return _refs(obj)[ref_names[obj["type"]]]["id"]
    (view,) = {r["id"] for r in obj["references"] if r["type"] == "index-pattern"}
    return view


def test_committed_files_are_current() -> None:
    """kibana/objects holds exactly what the generator renders (regenerate: python -m pipelines.kibana.objects)."""
    directory = ROOT / "kibana" / "objects"
    expected = ko.rendered_files()
    files = [p for p in directory.rglob("*") if p.is_file()]
    on_disk = {str(p.relative_to(directory)): p.read_text(encoding="utf-8") for p in files}
    assert sorted(on_disk) == sorted(expected)
    stale = [name for name in expected if on_disk[name] != expected[name]]
    assert stale == []


def test_objects_dir_resolves_to_the_checkout() -> None:
    """The resolver finds the committed objects in an editable checkout."""
    assert ko.objects_dir() == ROOT / "kibana" / "objects"


def test_objects_dir_prefers_the_package_data_of_a_wheel(tmp_path: Path) -> None:
    """Installed from a wheel (pipelines/kibana/_data), the package data is found; with neither, a clear error."""
    data = tmp_path / "site-packages" / "pipelines" / "kibana" / "_data"
    data.mkdir(parents=True)
    (data / ko.NDJSON_NAME).write_text("{}\n")
    assert ko.objects_dir(package_dir=tmp_path / "site-packages" / "pipelines") == data
    with pytest.raises(FileNotFoundError, match=r"celery-logs\.ndjson"):
        ko.objects_dir(package_dir=tmp_path / "elsewhere" / "pipelines")


def test_ndjson_is_an_export_with_its_summary_line() -> None:
    """One object a line in dependency order, then Kibana's export summary counting them."""
    lines = ko.to_ndjson(OBJECTS).splitlines()
    assert [json.loads(line) for line in lines[:-1]] == OBJECTS
    assert json.loads(lines[-1]) == {
        "excludedObjects": [],
        "excludedObjectsCount": 0,
        "exportedCount": 21,
        "missingRefCount": 0,
        "missingReferences": [],
    }
    assert Counter(o["type"] for o in OBJECTS) == {"index-pattern": 3, "search": 8, "lens": 9, "dashboard": 1}


def test_type_and_id_are_unique() -> None:
    """No two objects share type:id."""
    assert len(BY_KEY) == len(OBJECTS)


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: f"{o['type']}:{o['id']}")
def test_attributes_follow_the_type_schema(obj: dict[str, Any]) -> None:
    """Required attributes present, nothing Kibana would reject, JSON strings parse, versions not too new."""
    schema = SCHEMAS[obj["type"]]
    attrs = obj["attributes"]
    assert schema["required"] <= set(attrs)
    assert set(attrs) <= schema["allowed"]
    for name in schema["json"]:
        assert isinstance(_dotted(attrs, name), str)
        json.loads(_dotted(attrs, name))
    assert isinstance(attrs["title"], str) and attrs["title"]
    assert obj["coreMigrationVersion"] == "8.8.0"
    assert _version(obj["typeMigrationVersion"]) <= MAX_TYPE_MIGRATION[obj["type"]]
    assert set(obj) == {"attributes", "coreMigrationVersion", "id", "managed", "references", "type",
                        "typeMigrationVersion"}


@pytest.mark.parametrize("obj", OBJECTS, ids=lambda o: f"{o['type']}:{o['id']}")
def test_references_resolve(obj: dict[str, Any]) -> None:
    """Every reference points at an object of the export, with the type it claims; names are unique."""
    names = [r["name"] for r in obj["references"]]
    assert len(names) == len(set(names))
    for ref in obj["references"]:
        assert (ref["type"], ref["id"]) in BY_KEY, ref


@pytest.mark.parametrize("obj", [o for o in OBJECTS if o["type"] == "search"], ids=lambda o: o["id"])
def test_search_source_index_is_a_reference(obj: dict[str, Any]) -> None:
    """The search source names its data view through indexRefName, matched by a reference to a data view."""
    source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert source["query"]["language"] == "kuery"
    assert "index" not in source
    assert _refs(obj)[source["indexRefName"]]["type"] == "index-pattern"
    assert all(len(s) == 2 and s[1] in ("asc", "desc") for s in obj["attributes"]["sort"])


@pytest.mark.parametrize("obj", [o for o in OBJECTS if o["type"] == "lens"], ids=lambda o: o["id"])
def test_lens_layers_are_complete(obj: dict[str, Any]) -> None:
    """Each layer has its data-view reference and consistent columns; the chart draws only what exists."""
    state = obj["attributes"]["state"]
    layers = state["datasourceStates"]["formBased"]["layers"]
    refs = _refs(obj)
    assert set(refs) == {
        "indexpattern-datasource-current-indexpattern",
        *(f"indexpattern-datasource-layer-{layer_id}" for layer_id in layers),
    }
    for layer in layers.values():
        assert sorted(layer["columnOrder"]) == sorted(layer["columns"])
        for col in layer["columns"].values():
            assert set(col.get("references", [])) <= set(layer["columns"])
            if col["operationType"] == "terms" and col["params"]["orderBy"]["type"] == "column":
                assert col["params"]["orderBy"]["columnId"] in layer["columns"]
    vis = state["visualization"]
    vis_layers = vis["layers"] if obj["attributes"]["visualizationType"] == "lnsXY" else [vis]
    assert {v["layerId"] for v in vis_layers} == set(layers)
    for v in vis_layers:
        columns = layers[v["layerId"]]["columns"]
        drawn = [c["columnId"] for c in v["columns"]] if "columns" in v else [
            *v["accessors"], v["xAccessor"], *([v["splitAccessor"]] if "splitAccessor" in v else [])]
        assert set(drawn) <= set(columns)
        if "accessors" in v:
            assert all(not columns[a]["isBucketed"] for a in v["accessors"])


def _dashboard() -> dict[str, Any]:
    return BY_KEY[("dashboard", ko.DASHBOARD_ID)]


def test_dashboard_panels_reference_their_objects() -> None:
    """Every panelRefName is matched by a reference of the panel's type; every reference is used."""
    obj = _dashboard()
    panels = json.loads(obj["attributes"]["panelsJSON"])
    refs = _refs(obj)
    used = set()
    for panel in panels:
        name = f"{panel['panelIndex']}:{panel['panelRefName']}"
        assert refs[name]["type"] == panel["type"]
        assert panel["gridData"]["i"] == panel["panelIndex"]
        used.add(name)
    controls = json.loads(obj["attributes"]["controlGroupInput"]["panelsJSON"])
    for control_id in controls:
        name = f"controlGroup_{control_id}:optionsListDataView"
        assert refs[name]["type"] == "index-pattern"
        used.add(name)
    assert used == set(refs)


def test_dashboard_grid_fits_and_panels_do_not_overlap() -> None:
    """All panels within 48 columns, positive sizes, no two panels sharing a cell."""
    panels = json.loads(_dashboard()["attributes"]["panelsJSON"])
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        g = panel["gridData"]
        assert g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0
        assert g["x"] + g["w"] <= 48
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['panelIndex']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["panelIndex"]
    assert len({p["panelIndex"] for p in panels}) == len(panels)


def test_dashboard_controls_cover_the_filters_users_need() -> None:
    """Options-list controls for service, environment, queue, task name and worker, on aggregatable keywords."""
    controls = json.loads(_dashboard()["attributes"]["controlGroupInput"]["panelsJSON"])
    fields = [c["explicitInput"]["fieldName"] for c in sorted(controls.values(), key=lambda c: c["order"])]
    assert fields == ["service.name", "service.environment", "celery.queue", "celery.task.name", "celery.worker"]
    for name in fields:
        assert FIELDS[ko.RECORDS_DATA_VIEW_ID][name] == ("keyword", True)
    assert {c["type"] for c in controls.values()} == {"optionsListControl"}


@pytest.mark.parametrize("obj", [o for o in OBJECTS if o["type"] == "search"], ids=lambda o: o["id"])
def test_search_fields_exist(obj: dict[str, Any]) -> None:
    """Columns exist in the data view's mapping; sort fields are sortable (doc values); the time field is a date."""
    fields = FIELDS[_data_view_of(obj)]
    for column in obj["attributes"]["columns"]:
        assert column in fields, column
    for name, _direction in obj["attributes"]["sort"]:
        assert fields[name][0] in AGGREGATABLE and fields[name][1], name


@pytest.mark.parametrize("obj", [o for o in OBJECTS if o["type"] == "index-pattern"], ids=lambda o: o["id"])
def test_data_view_fields_exist(obj: dict[str, Any]) -> None:
    """The time field is a date and the duration-formatted fields are nanosecond longs."""
    fields = FIELDS[obj["id"]]
    assert fields[obj["attributes"]["timeFieldName"]][0] == "date"
    formats = json.loads(obj["attributes"]["fieldFormatMap"])
    assert formats
    for name, fmt in formats.items():
        assert fields[name][0] == "long"
        assert fmt["id"] == "duration" and fmt["params"]["inputFormat"] == "nanoseconds"


def test_records_data_view_formats_durations() -> None:
    """event.duration and celery.queue_wait are shown as durations."""
    formats = json.loads(BY_KEY[("index-pattern", ko.RECORDS_DATA_VIEW_ID)]["attributes"]["fieldFormatMap"])
    assert sorted(formats) == ["celery.queue_wait", "event.duration"]


_OPERATION_NEEDS = {
    "date_histogram": {"date"},
    "terms": {"keyword", "boolean", *NUMERIC},
    "percentile": NUMERIC,
    "max": NUMERIC | {"date"},
    "min": NUMERIC | {"date"},
    "average": NUMERIC,
    "sum": NUMERIC,
    "unique_count": {"keyword", "boolean", "date", *NUMERIC},
}


@pytest.mark.parametrize("obj", [o for o in OBJECTS if o["type"] == "lens"], ids=lambda o: o["id"])
def test_lens_columns_use_fields_that_support_them(obj: dict[str, Any]) -> None:
    """Every Lens column's field exists, is aggregatable, and has a type its operation accepts."""
    fields = FIELDS[_data_view_of(obj)]
    for layer in obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values():
        for col in layer["columns"].values():
            op = col["operationType"]
            if op in ("count", "math", "formula"):
                continue
            ftype, aggregatable = fields[col["sourceField"]]
            assert aggregatable, col["sourceField"]
            assert ftype in _OPERATION_NEEDS[op], (op, col["sourceField"], ftype)


def _kql_strings() -> list[tuple[str, str]]:
    return list(ko.iter_kql(OBJECTS))


@pytest.mark.parametrize(("object_id", "query"), _kql_strings())
def test_kql_names_indexed_fields(object_id: str, query: str) -> None:
    """Every query and column filter parses (in the subset tested against Elasticsearch) and names searchable fields."""
    obj = next(o for o in OBJECTS if o["id"] == object_id)
    fields = SEARCHABLE[_data_view_of(obj)]
    kql_to_dsl(query)
    for name in kql_fields(query):
        assert name in fields, name
        assert fields[name][1], f"{name} is not searchable"


def test_kql_translation_matches_kibana() -> None:
    """The translator builds the query DSL Kibana's KQL builds (match, match_phrase, exists, range, bool)."""
    assert kql_to_dsl('event.action:"task-failed" and not lost:true or event.duration >= 5') == {
        "bool": {
            "should": [
                {
                    "bool": {
                        "filter": [
                            {"bool": {"should": [{"match_phrase": {"event.action": "task-failed"}}],
                                      "minimum_should_match": 1}},
                            {"bool": {"must_not": {"bool": {"should": [{"match": {"lost": True}}],
                                                            "minimum_should_match": 1}}}},
                        ]
                    }
                },
                {"bool": {"should": [{"range": {"event.duration": {"gte": 5}}}], "minimum_should_match": 1}},
            ],
            "minimum_should_match": 1,
        }
    }
    assert kql_to_dsl("x:(a or b)") == {
        "bool": {"should": [{"match": {"x": "a"}}, {"match": {"x": "b"}}], "minimum_should_match": 1}
    }
    assert kql_to_dsl("x:*") == {"bool": {"should": [{"exists": {"field": "x"}}], "minimum_should_match": 1}}


def _formulas() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for obj in OBJECTS:
        if obj["type"] != "lens":
            continue
        for layer in obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values():
            columns = layer["columns"]
            found += [(obj["id"], c, columns) for c in columns.values() if c["operationType"] == "formula"]
    return found


@pytest.mark.parametrize(
    ("object_id", "formula", "columns"), _formulas(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_formula_text_matches_its_helper_columns(
    object_id: str, formula: dict[str, Any], columns: dict[str, Any]
) -> None:
    """A formula's text and the math Lens stores for it agree: filtered count divided by the plain count."""
    (math_id,) = formula["references"]
    math = columns[math_id]
    ast = math["params"]["tinymathAst"]
    assert (ast["name"], ast["text"]) == ("divide", formula["params"]["formula"])
    numerator, denominator = (columns[a] for a in ast["args"])
    assert math["references"] == ast["args"]
    assert (numerator["operationType"], denominator["operationType"]) == ("count", "count")
    assert "filter" not in denominator
    kql = numerator["filter"]["query"]
    assert formula["params"]["formula"] == f"count(kql='{kql}') / count()"
    assert formula["params"]["isFormulaBroken"] is False
