"""The Elasticsearch the suite runs against is a real server, and the schema's template works on it."""

from __future__ import annotations

from elasticsearch import Elasticsearch, helpers

from celery_logs import _schema


def test_indexes_and_reads_back_through_search_and_aggregation(es: Elasticsearch, index_prefix: str) -> None:
    """Documents bulk-indexed over HTTP come back from a search and a terms + percentiles aggregation."""
    index = f"{index_prefix}-2026.11.22"
    docs = [{"_index": index, "_id": str(i), "name": "a" if i % 3 else "b", "ms": i} for i in range(1, 31)]
    ok, errors = helpers.bulk(es, docs, refresh=True)
    assert (ok, errors) == (30, [])
    hits = es.search(index=index, query={"term": {"name.keyword": "b"}}, size=100)["hits"]
    assert hits["total"]["value"] == 10
    assert sorted(int(h["_id"]) for h in hits["hits"]) == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]
    aggs = es.search(
        index=index,
        size=0,
        aggs={"by": {"terms": {"field": "name.keyword"}, "aggs": {"mx": {"max": {"field": "ms"}}}}},
    )["aggregations"]["by"]["buckets"]
    assert [(b["key"], b["doc_count"], b["mx"]["value"]) for b in aggs] == [("a", 20, 29.0), ("b", 10, 30.0)]


def test_template_from_the_schema_is_accepted_and_applied(es: Elasticsearch, index_prefix: str) -> None:
    """The generated index template installs, and a daily index created under it gets its mappings."""
    name = f"{index_prefix}-template"
    es.indices.put_index_template(name=name, **_schema.index_template(prefix=index_prefix))
    try:
        index = _schema.daily_index(index_prefix, "2026-11-22T10:00:00.000000Z")
        es.index(
            index=index,
            id="e1",
            document={"@timestamp": "2026-11-22T10:00:00.000000Z", "labels": {"tenant": "acme"}, "surprise": {"x": 1}},
        )
        props = es.indices.get_mapping(index=index)[index]["mappings"]["properties"]
        assert props["event"]["properties"]["duration"] == {"type": "long"}
        assert props["error"]["properties"]["message"]["fields"]["keyword"]["type"] == "keyword"
        assert props["labels"]["properties"]["tenant"]["type"] == "keyword"
        assert "surprise" not in props
    finally:
        es.indices.delete_index_template(name=name)


def test_create_twice_is_a_version_conflict(es: Elasticsearch, index_prefix: str) -> None:
    """Bulk `create` of an existing `_id` answers 409, which the shipper counts as already indexed."""
    index = f"{index_prefix}-2026.11.23"
    body = [{"create": {"_index": index, "_id": "same"}}, {"message": "x"}] * 2
    items = es.bulk(operations=body, refresh=True)["items"]
    assert [i["create"]["status"] for i in items] == [201, 409]
