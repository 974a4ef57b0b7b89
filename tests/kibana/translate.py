"""Turn saved objects into the Elasticsearch requests Kibana would send for them.

Kibana cannot run here, so the tests play its part: KQL (the subset the objects use) becomes the query
DSL Kibana's ``@kbn/es-query`` produces, a saved search becomes Discover's request, and a Lens layer
becomes the nested aggregations ``esaggs`` sends, flattened back into rows the way Lens reads them.
Anything outside the subset raises, so an object cannot silently use syntax the tests do not check.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<lpar>\() | (?P<rpar>\)) | (?P<colon>:) |
        (?P<range>>=|<=|>|<) |
        (?P<quoted>"(?:[^"\\]|\\.)*") |
        (?P<word>[^\s():<>"]+)
    )""",
    re.VERBOSE,
)
_RANGE_OPS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}


class KqlError(ValueError):
    """The query uses KQL outside the subset the translator knows."""


@dataclass
class _Tok:
    kind: str
    text: str


def _tokens(query: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(query):
        if query[pos:].strip() == "":
            break
        m = _TOKEN.match(query, pos)
        if not m or m.end() == pos:
            raise KqlError(f"cannot tokenise {query[pos:]!r}")
        kind = m.lastgroup or ""
        out.append(_Tok(kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, query: str) -> None:
        self.toks = _tokens(query)
        self.i = 0
        self.fields: list[str] = []

    def peek(self) -> _Tok | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, kind: str | None = None) -> _Tok:
        tok = self.peek()
        if tok is None or (kind and tok.kind != kind):
            raise KqlError(f"expected {kind or 'a token'} at {self.i}, got {tok}")
        self.i += 1
        return tok

    def keyword(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.kind == "word" and tok.text.lower() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> dict[str, Any]:
        if not self.toks:
            return {"match_all": {}}
        node = self.or_expr()
        if self.peek() is not None:
            raise KqlError(f"unexpected {self.peek()}")
        return node

    def or_expr(self) -> dict[str, Any]:
        items = [self.and_expr()]
        while self.keyword("or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else {"bool": {"should": items, "minimum_should_match": 1}}

    def and_expr(self) -> dict[str, Any]:
        items = [self.not_expr()]
        while self.keyword("and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else {"bool": {"filter": items}}

    def not_expr(self) -> dict[str, Any]:
        if self.keyword("not"):
            return {"bool": {"must_not": self.not_expr()}}
        tok = self.peek()
        if tok is not None and tok.kind == "lpar":
            self.take("lpar")
            node = self.or_expr()
            self.take("rpar")
            return node
        return self.field_expr()

    def field_expr(self) -> dict[str, Any]:
        name = self.take("word").text
        self.fields.append(name)
        tok = self.take()
        if tok.kind == "range":
            value = self.take("word").text
            number: Any = float(value) if "." in value else int(value)
            clause = {"range": {name: {_RANGE_OPS[tok.text]: number}}}
            return {"bool": {"should": [clause], "minimum_should_match": 1}}
        if tok.kind != "colon":
            raise KqlError(f"expected ':' after {name}")
        values: list[_Tok] = []
        if self.peek() is not None and self.peek().kind == "lpar":  # type: ignore[union-attr]
            self.take("lpar")
            values.append(self.value())
            while self.keyword("or"):
                values.append(self.value())
            self.take("rpar")
        else:
            values.append(self.value())
        return {"bool": {"should": [_value_clause(name, v) for v in values], "minimum_should_match": 1}}

    def value(self) -> _Tok:
        tok = self.take()
        if tok.kind not in ("word", "quoted"):
            raise KqlError(f"expected a value, got {tok}")
        return tok


def _value_clause(name: str, tok: _Tok) -> dict[str, Any]:
    if tok.kind == "quoted":
        return {"match_phrase": {name: json.loads(tok.text)}}
    if tok.text == "*":
        return {"exists": {"field": name}}
    if "*" in tok.text:
        raise KqlError("wildcard values are outside the subset")
    value: Any = {"true": True, "false": False}.get(tok.text, tok.text)
    return {"match": {name: value}}


def kql_to_dsl(query: str) -> dict[str, Any]:
    """The Elasticsearch query Kibana builds from a KQL string (subset: and/or/not, :, ranges, exists)."""
    return _Parser(query).parse()


def kql_fields(query: str) -> list[str]:
    """Every field name a KQL string mentions."""
    parser = _Parser(query)
    parser.parse()
    return parser.fields


def _time_range(field: str, start: str, end: str) -> dict[str, Any]:
    return {"range": {field: {"format": "strict_date_optional_time", "gte": start, "lte": end}}}


def search_request(
    obj: dict[str, Any], data_view: dict[str, Any], *, start: str, end: str, extra_kql: str = "", size: int = 500
) -> dict[str, Any]:
    """Discover's request for a saved search over ``[start, end]``; ``extra_kql`` is what a user adds."""
    source = json.loads(obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    query = source["query"]["query"]
    if extra_kql:
        query = f"({query}) and ({extra_kql})"
    time_field = data_view["attributes"]["timeFieldName"]
    sort = [{f: {"order": d, "unmapped_type": "boolean"}} for f, d in obj["attributes"]["sort"]]
    return {
        "index": data_view["attributes"]["title"],
        "query": {
            "bool": {
                "must": [],
                "filter": [kql_to_dsl(query), _time_range(time_field, start, end)],
                "should": [],
                "must_not": [],
            }
        },
        "sort": sort,
        "size": size,
        "track_total_hits": True,
    }


# --- Lens ----------------------------------------------------------------------------------------------

_SIMPLE_METRICS = {"max": "max", "min": "min", "average": "avg", "sum": "sum", "unique_count": "cardinality"}


def _metric_agg(col: dict[str, Any]) -> dict[str, Any] | None:
    op = col["operationType"]
    if op in _SIMPLE_METRICS:
        agg: dict[str, Any] = {_SIMPLE_METRICS[op]: {"field": col["sourceField"]}}
    elif op == "percentile":
        agg = {"percentiles": {"field": col["sourceField"], "percents": [col["params"]["percentile"]]}}
    elif op == "count":
        agg = {}
    elif op in ("math", "formula"):
        return None
    else:
        raise KqlError(f"Lens operation {op} is outside what the translator knows")
    if "filter" in col:
        # Lens wraps a filtered metric in a filter bucket and reads the inner value (or its doc_count).
        inner = {"aggs": {"m": agg}} if agg else {}
        return {"filter": kql_to_dsl(col["filter"]["query"]), **inner}
    return agg or None


def _bucket_agg(col: dict[str, Any], columns: dict[str, Any], interval: str) -> dict[str, Any]:
    op = col["operationType"]
    if op == "date_histogram":
        # includeEmptyRows: Kibana asks for empty buckets too (min_doc_count 0); rows drop them below.
        return {
            "date_histogram": {
                "field": col["sourceField"],
                "fixed_interval": interval,
                "time_zone": "UTC",
                "min_doc_count": 0,
            }
        }
    if op == "terms":
        params = col["params"]
        direction = params["orderDirection"]
        if params["orderBy"]["type"] == "alphabetical":
            order = {"_key": direction}
        else:
            target_id = params["orderBy"]["columnId"]
            order = {_order_path(target_id, columns[target_id]): direction}
        return {"terms": {"field": col["sourceField"], "size": params["size"], "order": order}}
    raise KqlError(f"bucket operation {op} is outside what the translator knows")


def _order_path(col_id: str, col: dict[str, Any]) -> str:
    op = col["operationType"]
    if op == "count":
        return f"{col_id}._count" if "filter" in col else "_count"
    path = f"{col_id}[{float(col['params']['percentile'])}]" if op == "percentile" else col_id
    return f"{col_id}>m" + path[len(col_id):] if "filter" in col else path


@dataclass
class LayerRequest:
    """The request of one Lens layer, and what is needed to read its answer back into rows."""

    body: dict[str, Any]
    buckets: list[str]
    metrics: list[str]
    columns: dict[str, Any]


def control_filter(field: str, selected: list[str]) -> dict[str, Any]:
    """The filter an options-list control adds for its selected values (a phrase, or phrases)."""
    if len(selected) == 1:
        return {"match_phrase": {field: selected[0]}}
    return {"bool": {"should": [{"match_phrase": {field: v}} for v in selected], "minimum_should_match": 1}}


def lens_layer_request(
    lens: dict[str, Any],
    layer_id: str,
    *,
    time_field: str,
    start: str,
    end: str,
    interval: str = "1h",
    filters: list[dict[str, Any]] | None = None,
) -> LayerRequest:
    """Nested aggregations for one layer: buckets in column order, metrics under the innermost bucket."""
    state = lens["attributes"]["state"]
    layer = state["datasourceStates"]["formBased"]["layers"][layer_id]
    columns = layer["columns"]
    order = layer["columnOrder"]
    buckets = [c for c in order if columns[c]["isBucketed"]]
    metrics = [c for c in order if not columns[c]["isBucketed"]]
    metric_aggs = {c: a for c in metrics if (a := _metric_agg(columns[c])) is not None}
    aggs: dict[str, Any] = dict(metric_aggs)
    for col_id in reversed(buckets):
        col = columns[col_id]
        bucket = _bucket_agg(col, columns, interval)
        sub = dict(aggs)
        if sub:
            bucket["aggs"] = sub
        aggs = {col_id: bucket}
    clauses = [kql_to_dsl(state["query"]["query"]), *(filters or []), _time_range(time_field, start, end)]
    query = {"bool": {"filter": clauses}}
    return LayerRequest({"size": 0, "query": query, "aggs": aggs}, buckets, metrics, columns)



def _metric_value(col_id: str, col: dict[str, Any], bucket: dict[str, Any], values: dict[str, Any]) -> Any:
    op = col["operationType"]
    if op == "formula":
        return values[col["references"][0]]
    if op == "math":
        ast = col["params"]["tinymathAst"]
        if ast["name"] != "divide":
            raise KqlError(f"math {ast['name']} is outside what the translator knows")
        num, den = (values[a] for a in ast["args"])
        return None if not den else num / den
    agg = bucket.get(col_id) if col_id in bucket else None
    if op == "count":
        count = (agg["doc_count"] if agg else 0) if "filter" in col else bucket["doc_count"]
        # Lens shows an empty cell instead of 0 when the column says emptyAsNull.
        return None if count == 0 and col.get("params", {}).get("emptyAsNull") else count
    if "filter" in col:
        agg = agg["m"] if agg else None
    if agg is None:
        return None
    if op == "percentile":
        (value,) = agg["values"].values()
        return value
    return agg["value"]


def lens_rows(req: LayerRequest, response: dict[str, Any]) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """Rows of the layer's table: (bucket keys in column order, {metric column: value}); empty buckets dropped."""

    Row = tuple[tuple[Any, ...], dict[str, Any]]

    def walk(node: dict[str, Any], depth: int, keys: tuple[Any, ...]) -> Iterator[Row]:
        if depth == len(req.buckets):
            if keys and node.get("doc_count", 1) == 0:
                return
            values: dict[str, Any] = {}
            # Formulas refer to helper columns; evaluate in dependency order (helpers come after the formula).
            pending = list(req.metrics)
            while pending:
                col_id = pending.pop(0)
                col = req.columns[col_id]
                refs = col.get("references", [])
                if any(r not in values for r in refs):
                    pending.append(col_id)
                    continue
                values[col_id] = _metric_value(col_id, col, node, values)
            yield keys, values
            return
        col_id = req.buckets[depth]
        for bucket in node[col_id]["buckets"]:
            yield from walk(bucket, depth + 1, (*keys, bucket["key"]))

    yield from walk(response["aggregations"], 0, ())
