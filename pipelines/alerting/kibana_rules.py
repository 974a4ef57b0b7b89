"""Kibana alerting rules (rule type ``.es-query``, Elasticsearch query DSL) from the rule table.

Kibana's Elasticsearch query rule counts the documents a query matches in a time window (optionally per
value of a term field, ``groupBy: top``) and compares the count, or a min/max/avg/sum of a field, with a
fixed threshold. Only rows whose meaning is exactly that are rendered; the others stay ElastAlert-only
(:data:`NOT_IN_KIBANA` says why), since a rule that approximates its meaning would give wrong answers.

The bodies follow Kibana's alerting API: ``POST /api/alerting/rule/{id}`` creates (``rule_type_id``,
``consumer``, ``enabled`` only there), ``PUT /api/alerting/rule/{id}`` updates (name, tags, schedule,
params, actions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from pipelines.alerting.rules import RULES, AlertRule, AlertSettings

RULE_TYPE: Final = ".es-query"
#: The Stack Management rules app owns rules of this type.
CONSUMER: Final = "stackAlerts"
TAGS: Final = ("celery-logs",)
#: Most groups (``termSize``) Kibana accepts.
MAX_GROUPS: Final = 1000

NOT_IN_KIBANA: Final[dict[str, str]] = {
    "failure-rate": "a failure rate is a ratio of two counts; the rule compares one count with a threshold",
    "new-term": "the rule has no first-seen condition (a value absent from the lookback)",
    "flatline": "the rule groups the documents it finds; a worker or entry with none in the window is no group",
    "p95": "the rule aggregates count, min, max, avg or sum, not percentiles",
}


@dataclass(frozen=True, kw_only=True)
class KibanaRule:
    """One rule: its id, and the bodies that create it and update it in place."""

    id: str
    name: str
    create: dict[str, Any]
    update: dict[str, Any]


def _body(rule: AlertRule, settings: AlertSettings) -> tuple[dict[str, Any], dict[str, Any]]:
    if rule.kind != "lost":
        raise ValueError(f"{rule.id} has no Kibana form: {NOT_IN_KIBANA[rule.kind]}")
    window = settings.window_minutes
    params = {
        "searchType": "esQuery",
        "index": [settings.index_of(rule)],
        "timeField": rule.time_field,
        "esQuery": json.dumps({"query": {"bool": {"filter": [dict(c) for c in rule.filter]}}}, sort_keys=True),
        "size": 100,
        "aggType": "count",
        "groupBy": "top",
        "termField": rule.key,
        "termSize": MAX_GROUPS,
        "threshold": [0],
        "thresholdComparator": ">",
        "timeWindowSize": window,
        "timeWindowUnit": "m",
        # Each lost task counts in one run only, so one batch of lost tasks is one alert per task name.
        "excludeHitsFromPreviousRun": True,
    }
    update = {
        "name": rule.title,
        "tags": list(TAGS),
        "schedule": {"interval": f"{settings.run_every_minutes}m"},
        "params": params,
        "actions": [],
    }
    create = {**update, "rule_type_id": RULE_TYPE, "consumer": CONSUMER, "enabled": True}
    return create, update


def kibana_rules(settings: AlertSettings | None = None) -> list[KibanaRule]:
    """Every rule of the table that Kibana's Elasticsearch query rule expresses exactly."""
    settings = settings or AlertSettings()
    out = []
    for rule in RULES:
        if rule.kind in NOT_IN_KIBANA:
            continue
        create, update = _body(rule, settings)
        out.append(KibanaRule(id=rule.id, name=rule.title, create=create, update=update))
    return out


def elastalert_only() -> list[tuple[str, str]]:
    """``(rule id, why)`` of the rules Kibana does not get."""
    return [(r.id, NOT_IN_KIBANA[r.kind]) for r in RULES if r.kind in NOT_IN_KIBANA]
