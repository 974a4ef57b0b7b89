"""Index templates of overlapping prefixes (`prod`, `prod-eu`) install side by side on the real node."""

from __future__ import annotations

import uuid

from elasticsearch import Elasticsearch

from celery_logs._schema import index_template
from pipelines._setup import install, template_name


def test_overlapping_prefixes_both_set_up_and_each_index_gets_its_own(es: Elasticsearch) -> None:
    """`p` and `p-eu` both install (also over a template of the old `p-*` pattern); each daily index is
    matched by its own prefix's template only."""
    base = f"t{uuid.uuid4().hex[:10]}"
    eu = f"{base}-eu"
    try:
        # What an older celery-logs installed for `base`: the pattern that also matched `base-eu-*`.
        old = index_template(prefix=base)
        old.update(index_patterns=[f"{base}-*"], priority=200)
        es.indices.put_index_template(name=template_name(base), body=old)
        assert install(es, index_prefix=eu, tasks_index=None).template == eu
        assert install(es, index_prefix=base, tasks_index=None).template == base
        assert install(es, index_prefix=eu, tasks_index=None).template == eu  # again: idempotent
        for prefix in (base, eu):
            sim = es.indices.simulate_index_template(name=f"{prefix}-2026.11.30")
            assert sim.body.get("overlapping", []) == []
            assert sim["template"]["settings"]["index"]["refresh_interval"] == "5s"
        patterns = {
            t["name"]: (t["index_template"]["index_patterns"], t["index_template"]["priority"])
            for t in es.indices.get_index_template(name=f"{base}*")["index_templates"]
        }
        assert patterns == {base: ([f"{base}-2*"], 200 + len(base)), eu: ([f"{eu}-2*"], 200 + len(eu))}
        es.index(index=f"{eu}-2026.11.30", document={"@timestamp": "2026-11-30T12:00:00Z"}, refresh=True)
        es.index(index=f"{base}-2026.11.30", document={"@timestamp": "2026-11-30T12:00:00Z"}, refresh=True)
        assert es.count(index=f"{base}-2*")["count"] == 1
        assert es.count(index=f"{eu}-2*")["count"] == 1
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{base}-*", expand_wildcards="all")
        for name in (base, eu):
            es.options(ignore_status=404).indices.delete_index_template(name=name)
