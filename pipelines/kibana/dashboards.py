"""The OpenSearch Dashboards saved objects of celery-logs, built from the same tables as the Kibana ones.

OpenSearch Dashboards (a fork of Kibana 7.10) has no Lens: every Lens layer of
:func:`pipelines.kibana.objects.default_catalog` becomes a ``visualization`` of its own aggregation-based
types (``line``, ``area``, ``histogram``, ``horizontal_bar``, ``table``), the dashboard's options-list
controls become one ``input_control_vis``, and index patterns and saved searches keep their tables'
queries, columns and sort. The committed files under ``kibana/opensearch-dashboards/`` are this module's
output (``python -m pipelines.kibana.dashboards`` rewrites them; a test checks they are current).

What an aggregation-based visualization cannot say is left out rather than approximated: a metric with
a filter of its own (Lens's "filter by") and a ratio column inside a table. A chart whose only metric is
a ratio (the failure rate) is drawn as the share of each bucket's records that match the filter: a
``filters`` split stacked to 100 %, which is the same quotient.

Migration versions are the newest ones OpenSearch Dashboards 2.x declares for each type, so it imports
the objects without migrating them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from pipelines.kibana.objects import (
    DASHBOARD_ID,
    RECORDS_DATA_VIEW_ID,
    Catalog,
    Column,
    DataView,
    Layer,
    Lens,
    SavedSearch,
    default_catalog,
)

NDJSON_NAME: Final = "celery-logs-opensearch-dashboards.ndjson"
#: Newest migration of each type in OpenSearch Dashboards 2.x (src/plugins/*/server/saved_objects).
MIGRATION_VERSIONS: Final[dict[str, str]] = {
    "index-pattern": "7.6.0",
    "search": "7.9.3",
    "visualization": "7.10.0",
    "dashboard": "7.9.3",
}
CONTROLS_ID: Final = "celery-logs-controls"

#: Lens XY series type -> aggregation-based visualization type and how its series are drawn.
_XY_TYPES: Final[dict[str, tuple[str, str, str]]] = {
    "bar_stacked": ("histogram", "histogram", "stacked"),
    "bar": ("histogram", "histogram", "normal"),
    "bar_horizontal": ("horizontal_bar", "histogram", "normal"),
    "line": ("line", "line", "normal"),
    "area_stacked": ("area", "area", "stacked"),
}
#: Lens metric operation -> aggregation type.
_METRICS: Final[dict[str, str]] = {
    "count": "count",
    "percentile": "percentiles",
    "max": "max",
    "min": "min",
    "average": "avg",
    "sum": "sum",
    "unique_count": "cardinality",
}
_INDEX_REF: Final = "kibanaSavedObjectMeta.searchSourceJSON.index"

_DURATION_FORMAT: Final = {
    "id": "duration",
    "params": {"inputFormat": "nanoseconds", "outputFormat": "asSeconds", "outputPrecision": 3},
}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _envelope(type_: str, id_: str, attributes: dict[str, Any], references: list[dict[str, str]]) -> dict[str, Any]:
    return {
        "attributes": attributes,
        "id": id_,
        "migrationVersion": {type_: MIGRATION_VERSIONS[type_]},
        "references": references,
        "type": type_,
    }


def _kql(query: str) -> dict[str, str]:
    return {"query": query, "language": "kuery"}


def index_pattern_object(view: DataView) -> dict[str, Any]:
    """The ``index-pattern`` saved object of a data view."""
    return _envelope(
        "index-pattern",
        view.id,
        {
            "fieldFormatMap": _dumps({f: _DURATION_FORMAT for f in view.duration_fields}),
            "fields": "[]",
            "timeFieldName": view.time_field,
            "title": view.title,
        },
        [],
    )


def search_object(search: SavedSearch) -> dict[str, Any]:
    """The ``search`` saved object (Discover) of a saved search."""
    source = {"filter": [], "indexRefName": _INDEX_REF, "query": _kql(search.query)}
    return _envelope(
        "search",
        search.id,
        {
            "columns": list(search.columns),
            "description": search.description,
            "hits": 0,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps(source)},
            "sort": [list(s) for s in search.sort],
            "title": search.title,
            "version": 1,
        },
        [{"id": search.data_view, "name": _INDEX_REF, "type": "index-pattern"}],
    )


def visualization_id(lens: Lens, layer: Layer) -> str:
    """One visualization per Lens layer: the Lens id, with the layer's id when there are several."""
    return lens.id if len(lens.layers) == 1 else f"{lens.id}-{layer.id}"


def _kept(col: Column, *, table: bool) -> bool:
    if col.op in ("date_histogram", "terms"):
        return True
    if col.op == "ratio":
        return not table
    return col.filter is None


def _metric_agg(agg_id: str, col: Column) -> dict[str, Any]:
    params: dict[str, Any] = {"customLabel": col.label}
    if col.field is not None and col.op != "count":
        params["field"] = col.field
    if col.op == "percentile":
        params["percents"] = [col.percentile]
        # The advanced "JSON input": OpenSearch's t-digest keeps every sample of up to about a thousand
        # values with this compression, so the percentile is exact there (with 100 it is not).
        params["json"] = _dumps({"tdigest": {"compression": 1000}})
    return {"enabled": True, "id": agg_id, "params": params, "schema": "metric", "type": _METRICS[col.op]}


def _bucket_agg(agg_id: str, col: Column, schema: str, ids: Mapping[str, str]) -> dict[str, Any]:
    if col.op == "date_histogram":
        params: dict[str, Any] = {
            "drop_partials": False, "extended_bounds": {}, "field": col.field, "interval": "auto", "min_doc_count": 1,
            "scaleMetricValues": False, "useNormalizedOpenSearchInterval": True,
        }  # fmt: skip
        return {"enabled": True, "id": agg_id, "params": params, "schema": schema, "type": "date_histogram"}
    params = {
        "customLabel": col.label,
        "field": col.field,
        "missingBucket": False,
        "missingBucketLabel": "Missing",
        "order": "desc" if col.order_by else "asc",
        "orderBy": ids[col.order_by] if col.order_by else "_key",
        "otherBucket": False,
        "otherBucketLabel": "Other",
        "size": col.size,
    }
    return {"enabled": True, "id": agg_id, "params": params, "schema": schema, "type": "terms"}


def visualization_aggs(lens: Lens, layer: Layer) -> list[dict[str, Any]]:
    """The aggregations of a layer's visualization: metrics first (ids 1..), then buckets in nesting order."""
    table = lens.vis == "lnsDatatable"
    columns = [c for c in layer.columns if _kept(c, table=table)]
    metrics = [c for c in columns if c.op not in ("date_histogram", "terms")]
    buckets = [c for c in columns if c.op in ("date_histogram", "terms")]
    ids: dict[str, str] = {}
    aggs: list[dict[str, Any]] = []
    for col in metrics:
        ids[col.id] = str(len(ids) + 1)
        if col.op == "ratio":  # the share of each bucket's records that match the filter (see the module doc)
            aggs.append({"enabled": True, "id": ids[col.id], "params": {"customLabel": "Records"},
                         "schema": "metric", "type": "count"})  # fmt: skip
        else:
            aggs.append(_metric_agg(ids[col.id], col))
    for col in buckets:
        ids[col.id] = str(len(ids) + 1)
        schema = "bucket" if table else ("segment" if col.id == layer.x else "group")
        aggs.append(_bucket_agg(ids[col.id], col, schema, ids))
    for col in metrics:
        if col.op == "ratio":
            assert col.filter is not None
            aggs.append({
                "enabled": True, "id": str(len(aggs) + 1), "schema": "group", "type": "filters",
                "params": {"filters": [{"input": _kql(col.filter), "label": col.label},
                                       {"input": _kql(f"not ({col.filter})"), "label": "Other"}]},
            })  # fmt: skip
    return aggs


def _xy_params(lens: Lens, layer: Layer, aggs: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    vis_type, series_type, mode = _XY_TYPES[layer.series_type]
    share = any(a["type"] == "filters" for a in aggs)
    if share:
        mode = "stacked"
    horizontal = vis_type == "horizontal_bar"
    metrics = [a for a in aggs if a["schema"] == "metric"]
    category_axis = {
        "id": "CategoryAxis-1", "labels": {"show": True, "truncate": 100},
        "position": "left" if horizontal else "bottom",
        "scale": {"type": "linear"}, "show": True, "style": {}, "title": {}, "type": "category",
    }  # fmt: skip
    value_axis = {
        "id": "ValueAxis-1", "labels": {"show": True, "truncate": 100}, "name": "LeftAxis-1",
        "position": "bottom" if horizontal else "left",
        "scale": {"mode": "percentage" if share else "normal", "type": "linear"},
        "show": True, "style": {}, "title": {"text": "Share" if share else metrics[0]["params"]["customLabel"]},
        "type": "value",
    }  # fmt: skip
    series = [
        {
            "data": {"id": m["id"], "label": m["params"]["customLabel"]},
            "drawLinesBetweenPoints": True,
            "mode": mode,
            "show": True,
            "showCircles": True,
            "type": series_type,
            "valueAxis": "ValueAxis-1",
        }
        for m in metrics
    ]
    params = {
        "addLegend": True, "addTimeMarker": False, "addTooltip": True, "categoryAxes": [category_axis],
        "grid": {"categoryLines": False}, "legendPosition": "right", "seriesParams": series, "times": [],
        "type": vis_type, "valueAxes": [value_axis],
    }  # fmt: skip
    return vis_type, params


def visualization_object(lens: Lens, layer: Layer) -> dict[str, Any]:
    """The ``visualization`` saved object of one Lens layer."""
    aggs = visualization_aggs(lens, layer)
    if lens.vis == "lnsDatatable":
        vis_type = "table"
        params: dict[str, Any] = {
            "perPage": 20, "percentageCol": "", "showMetricsAtAllLevels": False, "showPartialRows": False,
            "showTotal": False, "sort": {"columnIndex": None, "direction": None}, "totalFunc": "sum",
        }  # fmt: skip
    else:
        vis_type, params = _xy_params(lens, layer, aggs)
    title = lens.title if len(lens.layers) == 1 else f"{lens.title}: {_layer_title(layer)}"
    source = {"filter": [], "indexRefName": _INDEX_REF, "query": _kql(lens.query)}
    return _envelope(
        "visualization",
        visualization_id(lens, layer),
        {
            "description": lens.description,
            "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps(source)},
            "title": title,
            "uiStateJSON": "{}",
            "version": 1,
            "visState": _dumps({"aggs": aggs, "params": params, "title": title, "type": vis_type}),
        },
        [{"id": lens.data_view, "name": _INDEX_REF, "type": "index-pattern"}],
    )


def _layer_title(layer: Layer) -> str:
    metrics = [c.label for c in layer.columns if c.op not in ("date_histogram", "terms")]
    return " / ".join(metrics)


def controls_object(catalog: Catalog) -> dict[str, Any]:
    """The dashboard's options-list controls, as one ``input_control_vis``."""
    controls = []
    references = []
    for n, control in enumerate(catalog.controls):
        ref = f"control_{n}_index_pattern"
        controls.append({
            "fieldName": control.field, "id": control.id, "indexPatternRefName": ref, "label": control.title,
            "options": {"dynamicOptions": True, "multiselect": True, "order": "desc", "size": 20, "type": "terms"},
            "parent": "", "type": "list",
        })  # fmt: skip
        references.append({"id": RECORDS_DATA_VIEW_ID, "name": ref, "type": "index-pattern"})
    params = {"controls": controls, "pinFilters": False, "updateFiltersOnChange": True, "useTimeFilter": True}
    vis_state = {"aggs": [], "params": params, "title": "Celery: filters", "type": "input_control_vis"}
    return _envelope(
        "visualization",
        CONTROLS_ID,
        {
            "description": "Service, environment, queue, task and worker filters for the dashboard.",
            "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps({"filter": [], "query": _kql("")})},
            "title": "Celery: filters",
            "uiStateJSON": "{}",
            "version": 1,
            "visState": _dumps(vis_state),
        },
        references,
    )


def _panel_objects(catalog: Catalog) -> list[tuple[str, str, int, int, int, int]]:
    """``(type, id, x, y, w, h)`` of each panel: the controls on top, then the Kibana grid pushed down."""
    lenses = {lens.id: lens for lens in catalog.lenses}
    out: list[tuple[str, str, int, int, int, int]] = [("visualization", CONTROLS_ID, 0, 0, 48, 5)]
    for panel in catalog.panels:
        y = panel.y + 5
        if panel.type != "lens":
            out.append((panel.type, panel.ref, panel.x, y, panel.w, panel.h))
            continue
        lens = lenses[panel.ref]
        width = panel.w // len(lens.layers)
        for n, layer in enumerate(lens.layers):
            out.append(("visualization", visualization_id(lens, layer), panel.x + n * width, y, width, panel.h))
    return out


def dashboard_object(catalog: Catalog) -> dict[str, Any]:
    """The ``dashboard`` saved object: every visualization, the failed-tasks search and the controls."""
    panels = []
    references = []
    for n, (type_, id_, x, y, w, h) in enumerate(_panel_objects(catalog)):
        index = str(n + 1)
        panels.append({
            "embeddableConfig": {}, "gridData": {"h": h, "i": index, "w": w, "x": x, "y": y},
            "panelIndex": index, "panelRefName": f"panel_{n}", "version": "2.19.0",
        })  # fmt: skip
        references.append({"id": id_, "name": f"panel_{n}", "type": type_})
    attributes = {
        "description": catalog.dashboard_description,
        "hits": 0,
        "kibanaSavedObjectMeta": {"searchSourceJSON": _dumps({"filter": [], "query": _kql("")})},
        "optionsJSON": _dumps({"hidePanelTitles": False, "useMargins": True}),
        "panelsJSON": _dumps(panels),
        "refreshInterval": {"pause": True, "value": 60000},
        "timeFrom": "now-24h",
        "timeRestore": True,
        "timeTo": "now",
        "title": catalog.dashboard_title,
        "version": 1,
    }
    return _envelope("dashboard", DASHBOARD_ID, attributes, references)


def build_objects(catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """Every saved object, in dependency order (index patterns, searches, visualizations, dashboard)."""
    catalog = catalog or default_catalog()
    return [
        *(index_pattern_object(v) for v in catalog.data_views),
        *(search_object(s) for s in catalog.searches),
        *(visualization_object(lens, layer) for lens in catalog.lenses for layer in lens.layers),
        controls_object(catalog),
        dashboard_object(catalog),
    ]


def to_ndjson(objects: Sequence[Mapping[str, Any]]) -> str:
    """The objects as an OpenSearch Dashboards export: one compact JSON object a line, then the summary."""
    lines = [json.dumps(o, separators=(",", ":"), sort_keys=True) for o in objects]
    summary = {"exportedCount": len(objects), "missingRefCount": 0, "missingReferences": []}
    lines.append(json.dumps(summary, separators=(",", ":"), sort_keys=True))
    return "\n".join(lines) + "\n"


def rendered_files(objects: Sequence[Mapping[str, Any]] | None = None) -> dict[str, str]:
    """Relative file name -> content of everything under ``kibana/opensearch-dashboards``."""
    objects = build_objects() if objects is None else objects
    files = {f"{o['type']}/{o['id']}.json": json.dumps(o, indent=2, sort_keys=True) + "\n" for o in objects}
    files[NDJSON_NAME] = to_ndjson(objects)
    return files


def dashboards_dir(*, package_dir: Path | None = None) -> Path:
    """Where the shipped objects are: the package data in a wheel, ``kibana/opensearch-dashboards`` in a checkout."""
    here = package_dir or Path(__file__).resolve().parent.parent
    for candidate in (here / "kibana" / "_osd_data", here.parent / "kibana" / "opensearch-dashboards"):
        if (candidate / NDJSON_NAME).is_file():
            return candidate
    raise FileNotFoundError(f"the OpenSearch Dashboards objects ({NDJSON_NAME}) are not in {here} or a checkout")


def write_files(directory: Path, files: Mapping[str, str] | None = None) -> list[Path]:
    """Write :func:`rendered_files` under ``directory``, removing stale object files."""
    files = rendered_files() if files is None else files
    for old in directory.glob("*/*.json"):
        if str(old.relative_to(directory)) not in files:
            old.unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def iter_queries(objects: Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, str]]:
    """Every KQL string the objects hold, as ``(object id, query)``: searches, visualizations and filters."""
    for obj in objects:
        if obj["type"] not in ("search", "visualization"):
            continue
        source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        if source["query"]["query"]:
            yield obj["id"], source["query"]["query"]
        if obj["type"] == "visualization":
            for agg in json.loads(obj["attributes"]["visState"])["aggs"]:
                for f in agg["params"].get("filters", []):
                    yield obj["id"], f["input"]["query"]


if __name__ == "__main__":  # pragma: no cover - regeneration helper
    target = Path(__file__).resolve().parents[2] / "kibana" / "opensearch-dashboards"
    for written in write_files(target):
        sys.stdout.write(f"{written}\n")
