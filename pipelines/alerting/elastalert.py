"""ElastAlert 2 rule files (and its ``config.yaml``) from the rule table.

One YAML file per row of :data:`pipelines.alerting.rules.RULES`, named ``<rule id>.yaml`` under
``rules/``, plus ``config.yaml`` beside it pointing there; ``python -m pipelines.alerting.elastalert``
rewrites the committed copy under ``alerting/elastalert/`` (a test checks it is current).

Every alert names its key (task, exception group, worker or beat entry) and its count in the subject,
and its text carries a Kibana Discover link: ElastAlert's own (``kibana_discover_url``, to the rule's
saved search filtered to the key and the time of the breach), or for a silence a link to the key's
records of the last day. With ``post_urls`` the ``post`` alerter sends the match as JSON with ``rule``,
``key``, ``count`` and (but for silences) ``kibana_url`` on top.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from pipelines.alerting.rules import KIBANA_DISCOVER_VERSION, RULES, AlertRule, AlertSettings

ELASTALERT_VERSION: Final = "2.19.0"
RULES_DIR: Final = "rules"
CONFIG_NAME: Final = "config.yaml"
#: Keys (task names, workers, entries) each evaluation looks at; ElastAlert's default of 50 would drop
#: the least busy tasks of a large app without a word.
TERMS_SIZE: Final = 1000


def _minutes(value: int) -> dict[str, int]:
    return {"minutes": value}


def _discover_url(rule: AlertRule, settings: AlertSettings) -> str:
    base = settings.kibana_url.rstrip("/")
    if rule.saved_search:
        return f"{base}/app/discover#/view/{rule.saved_search}"
    return f"{base}/app/discover#/"


def _flatline_link(rule: AlertRule, settings: AlertSettings) -> str:
    """A Discover link to the last day of the silent key's records, as a Jinja template.

    ElastAlert's own link cannot filter a flatline alert to its key: the match it builds holds the key as
    ``key``, not under the field's name, so its filter would read "field does not exist".
    """
    columns = ",".join(rule.columns)
    return (
        f"{settings.kibana_url.rstrip('/')}/app/discover#/?_g=(time:(from:now-24h,to:now))"
        f"&_a=(columns:!({columns}),index:'{rule.data_view}',"
        f"query:(language:kuery,query:'{rule.key}:%22{{{{ key | urlencode }}}}%22'))"
    )


def _kind_options(rule: AlertRule, settings: AlertSettings) -> tuple[dict[str, Any], str | None, str, list[str]]:
    """ElastAlert options of the row's kind, where its count is, and the subject with its arguments.

    A new exception group has no count: it is its first failure (ElastAlert alerts on the first one).
    """
    window = settings.window_minutes
    if rule.kind == "failure-rate":
        options = {
            "type": "percentage_match",
            "match_bucket_filter": [dict(c) for c in rule.failing],
            "max_percentage": settings.bound(rule),
            "min_denominator": settings.min_runs,
            "terms_size": TERMS_SIZE,
            "percentage_format_string": "%.1f",
            # Each window is evaluated once, whole: ElastAlert waits until buffer_time has passed.
            "buffer_time": _minutes(window),
        }
        subject = f"Celery: {rule.key_label} {{0}} failed in {{1}} % of {{2}} finished runs in {window} min"
        return options, "denominator", subject, [rule.key, "percentage_formatted", "denominator"]
    if rule.kind == "new-term":
        options = {
            "type": "new_term",
            "fields": [rule.key],
            "terms_window_size": {"days": settings.new_group_lookback_days},
            "use_keyword_postfix": False,
            "alert_on_missing_field": False,
        }
        subject = f"Celery: new {rule.key_label} {{0}} ({{1}}) in task {{2}}"
        return options, None, subject, [rule.key, "error.type", "celery.task.name"]
    if rule.kind == "lost":
        options = {
            "type": "metric_aggregation",
            # Every marked document has its time field, and it keeps doc values (task_id is only the _id).
            "metric_agg_key": rule.time_field,
            "metric_agg_type": "value_count",
            "max_threshold": 0,
            "terms_size": TERMS_SIZE,
            "metric_format_string": "{:.0f}",
            "buffer_time": _minutes(window),
        }
        subject = f"Celery: {{1}} {rule.key_label}(s) {{0}} lost in {window} min"
        return options, "metric_agg_value", subject, [rule.key, "metric_agg_value_formatted"]
    if rule.kind == "flatline":
        minutes = int(settings.bound(rule))
        options = {
            "type": "flatline",
            "threshold": 1,
            "timeframe": _minutes(minutes),
            # One alert per silence: the key is forgotten until it is heard from again.
            "forget_keys": True,
            "use_terms_query": True,
            "terms_size": TERMS_SIZE,
        }
        what = "heartbeat" if rule.key == "celery.worker" else "beat-sent record"
        subject = f"Celery: {rule.key_label} {{0}} sent {{1}} {what}s in {minutes} min"
        return options, "count", subject, ["key", "count"]
    if rule.kind == "p95":
        bound = settings.bound(rule)
        options = {
            "type": "metric_aggregation",
            "metric_agg_key": rule.metric,
            "metric_agg_type": "percentiles",
            "percentile_range": 95,
            "max_threshold": bound,
            "min_doc_count": settings.min_runs,
            "terms_size": TERMS_SIZE,
            "metric_format_string": "{:,.0f}",
            "buffer_time": _minutes(window),
        }
        label = "queue wait" if rule.metric == "celery.queue_wait" else "run time"
        subject = (
            f"Celery: {label} p95 of {rule.key_label} {{0}} is {{1}} ns over {window} min "
            f"(bound {bound / 1e9:g} s, at least {settings.min_runs} runs)"
        )
        return options, "metric_agg_value", subject, [rule.key, "metric_agg_value_formatted"]
    raise ValueError(f"unknown kind of rule {rule.kind!r} ({rule.id})")


def rule_document(rule: AlertRule, settings: AlertSettings) -> dict[str, Any]:
    """The ElastAlert rule of one row, as the dict its YAML file holds."""
    options, count_field, subject, subject_args = _kind_options(rule, settings)
    key_field = "key" if rule.kind == "flatline" else rule.key
    doc: dict[str, Any] = {
        "name": rule.title,
        "description": rule.description,
        "index": settings.index_of(rule),
        "timestamp_field": rule.time_field,
        "filter": [dict(c) for c in rule.filter],
        "query_key": rule.key,
        **options,
        "realert": _minutes(settings.realert_minutes),
        "alert_subject": subject,
        "alert_subject_args": subject_args,
    }
    if rule.kind == "flatline":
        doc |= {
            "alert_text_type": "alert_text_jinja",
            "alert_text": f"{rule.description}\nRecords in Kibana: {_flatline_link(rule, settings)}\n",
        }
    else:
        # The link covers the breach: the window before the match; a new group: ten minutes around it;
        # lost tasks: the day before, since the tasks data view's time is when a task was received.
        span = {"new-term": _minutes(10), "lost": {"hours": 24}}.get(rule.kind, _minutes(settings.window_minutes))
        doc |= {
            "alert_text": f"{rule.description}\nRecords in Kibana: {{0}}\n",
            "alert_text_args": ["kibana_discover_url"],
            "generate_kibana_discover_url": True,
            "kibana_discover_app_url": _discover_url(rule, settings),
            "kibana_discover_version": KIBANA_DISCOVER_VERSION,
            "kibana_discover_index_pattern_id": rule.data_view,
            "kibana_discover_columns": list(rule.columns),
            "kibana_discover_from_timedelta": span,
            "kibana_discover_to_timedelta": span if rule.kind == "new-term" else _minutes(0),
        }
    # The debug alerter writes every alert (subject and text) to ElastAlert's log, beside any other.
    doc["alert"] = ["debug"]
    if settings.post_urls:
        doc |= {
            "alert": ["debug", "post"],
            "http_post_url": list(settings.post_urls),
            "http_post_all_values": True,
            "http_post_payload": {
                "key": key_field,
                **({"count": count_field} if count_field else {}),
                **({"kibana_url": "kibana_discover_url"} if rule.kind != "flatline" else {}),
            },
            "http_post_static_payload": {"rule": rule.id},
        }
    return doc


def config_document(settings: AlertSettings) -> dict[str, Any]:
    """ElastAlert's ``config.yaml``: where Elasticsearch is, how often rules run, the rules folder.

    Credentials are never written here: ElastAlert reads ``ES_USERNAME``/``ES_PASSWORD``/``ES_API_KEY``
    (and ``ES_HOST``/``ES_PORT``, which override the file) from its environment.
    """
    parts = urllib.parse.urlsplit(settings.es_url)
    https = parts.scheme == "https"
    doc: dict[str, Any] = {
        "rules_folder": RULES_DIR,
        "run_every": _minutes(settings.run_every_minutes),
        "buffer_time": _minutes(settings.window_minutes),
        "es_host": parts.hostname,
        "es_port": parts.port or (443 if https else 9200),
        "use_ssl": https,
        "writeback_index": settings.writeback_index,
        "alert_time_limit": {"days": 2},
    }
    if parts.path.strip("/"):
        doc["es_url_prefix"] = parts.path.strip("/")
    return doc


def rendered_files(settings: AlertSettings | None = None) -> dict[str, str]:
    """Relative file name -> YAML text: ``config.yaml`` and ``rules/<id>.yaml`` for every row."""
    settings = settings or AlertSettings()
    header = f"# Generated by celery-logs for ElastAlert {ELASTALERT_VERSION}; regenerate, don't edit.\n"
    files = {CONFIG_NAME: header + to_yaml(config_document(settings))}
    for rule in RULES:
        files[f"{RULES_DIR}/{rule.id}.yaml"] = header + to_yaml(rule_document(rule, settings))
    return files


def write_files(directory: Path, files: Mapping[str, str] | None = None) -> list[Path]:
    """Write :func:`rendered_files` under ``directory``, removing rule files no row makes any more."""
    files = rendered_files() if files is None else files
    rules_dir = directory / RULES_DIR
    if rules_dir.is_dir():
        for old in rules_dir.glob("celery-logs-*.yaml"):
            if f"{RULES_DIR}/{old.name}" not in files:
                old.unlink()
    written = []
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


# --- a small YAML writer --------------------------------------------------------------------------
# Rules are plain data (dicts, lists, strings, numbers, booleans); strings are written JSON-quoted,
# which YAML reads as double-quoted scalars, so no value can change meaning (no "yes", "1e3", ": ").

_PLAIN_KEY = re.compile(r"^[A-Za-z_@][A-Za-z0-9_.@-]*$")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    raise TypeError(f"cannot write {type(value).__name__} as YAML")


def _key(key: Any) -> str:
    text = str(key)
    return text if _PLAIN_KEY.match(text) else json.dumps(text)


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            if isinstance(v, (Mapping, list)) and v:
                out.append(f"{pad}{_key(k)}:")
                out += _lines(v, indent + 2)
            else:
                out.append(f"{pad}{_key(k)}: {_inline(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (Mapping, list)) and item:
                nested = _lines(item, indent + 2)
                out.append(f"{pad}- {nested[0].lstrip()}")
                out += nested[1:]
            else:
                out.append(f"{pad}- {_inline(item)}")
    else:
        out.append(pad + _scalar(value))
    return out


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def to_yaml(value: Mapping[str, Any]) -> str:
    """Block-style YAML of plain data (what PyYAML's ``safe_load`` reads back equal)."""
    return "\n".join(_lines(value, 0)) + "\n"


if __name__ == "__main__":  # pragma: no cover - regeneration helper
    default = Path(__file__).resolve().parents[2] / "alerting" / "elastalert"
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    for path in write_files(target):
        sys.stdout.write(f"{path}\n")
