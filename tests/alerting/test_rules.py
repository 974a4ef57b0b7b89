"""The rule table, its ElastAlert files (committed and current) and `celery-logs alerts export`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from celery_logs import _schema
from pipelines.alerting import RULES, AlertSettings, AlertSettingsError, rendered_files, rule_document
from pipelines.alerting.elastalert import to_yaml
from pipelines.cli import main
from pipelines.kibana.objects import build_objects

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "alerting" / "elastalert"
#: Fields other engineers are adding to the schema now (beat records, lost-task classes).
PENDING_FIELDS = {"celery.beat.entry", "lost_class"}


def test_committed_rules_are_current() -> None:
    """alerting/elastalert holds exactly what the table renders with the defaults (regenerate with
    `python -m pipelines.alerting.elastalert`)."""
    on_disk = {str(p.relative_to(COMMITTED)): p.read_text() for p in COMMITTED.rglob("*.yaml")}
    assert on_disk == rendered_files()


def test_yaml_reads_back_as_the_rule() -> None:
    """Each file parses (PyYAML, as ElastAlert reads it) to exactly the rule's document."""
    files = rendered_files()
    for rule in RULES:
        text = files[f"rules/{rule.id}.yaml"]
        assert yaml.safe_load(text) == rule_document(rule, AlertSettings())
    tricky = {"a": "yes", "b": "1e3", "c": "x: y # z", "d": [], "e": {}, "f": 1.5, "g": None, "h": ["", {"i": True}]}
    assert yaml.safe_load(to_yaml(tricky)) == tricky


def test_links_name_saved_searches_and_data_views_that_exist() -> None:
    """Every saved search and data view a rule links to is one of the shipped Kibana objects."""
    shipped = {(o["type"], o["id"]) for o in build_objects()}
    for rule in RULES:
        assert ("index-pattern", rule.data_view) in shipped, rule.id
        if rule.saved_search:
            assert ("search", rule.saved_search) in shipped, rule.id


def test_every_field_a_rule_reads_is_in_the_schema() -> None:
    """Keys, time fields and measured fields are fields of the records or of the tasks index."""
    records = set(_schema.FIELDS_BY_NAME) | {"@timestamp"}
    tasks = {f.name for f in _schema.TASK_FIELDS}
    for rule in RULES:
        known = (tasks if rule.source == "tasks" else records) | PENDING_FIELDS
        for name in (rule.key, rule.time_field, *(f for f in (rule.metric,) if f), *rule.columns):
            assert name in known, (rule.id, name)


def test_each_alert_names_its_key_and_links_to_kibana() -> None:
    """The subject of every rule names its key; the text carries the Discover link; post sends key and rule."""
    settings = AlertSettings(post_urls=("http://alerts.example/hook",), kibana_url="https://kb.example")
    for rule in RULES:
        doc = rule_document(rule, settings)
        assert doc["alert_subject_args"][0] in (rule.key, "key"), rule.id
        if rule.kind == "flatline":
            link = "https://kb.example/app/discover#/?_g=(time:(from:now-24h,to:now))"
            assert link in doc["alert_text"]
            assert f"query:'{rule.key}:%22{{{{ key | urlencode }}}}%22'" in doc["alert_text"]
        else:
            assert doc["alert_text_args"] == ["kibana_discover_url"]
            assert doc["kibana_discover_app_url"].startswith("https://kb.example/app/discover#/")
        assert doc["alert"] == ["debug", "post"] and doc["http_post_url"] == ["http://alerts.example/hook"]
        assert doc["http_post_static_payload"] == {"rule": rule.id}
        assert doc["query_key"] == rule.key


def test_export_writes_the_files_with_the_users_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Prefix, tasks index, thresholds and the cluster URL reach the files; stale rule files go, others stay."""
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "celery-logs-gone.yaml").write_text("old")
    (tmp_path / "rules" / "my-own.yaml").write_text("mine")
    argv = ["alerts", "export", "--elastalert", str(tmp_path), "--es", "https://es.example:9243/base",
            "--index-prefix", "billing", "--tasks-index", "billing-tasks", "--failure-rate", "25",
            "--run-time-p95", "2.5", "--worker-silence", "3"]  # fmt: skip
    assert main(argv) == 0
    assert capsys.readouterr().out == f"wrote 7 ElastAlert rules and config.yaml to {tmp_path}\n"
    names = sorted(p.name for p in (tmp_path / "rules").iterdir())
    assert names == sorted([*(f"{r.id}.yaml" for r in RULES), "my-own.yaml"])
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert (config["es_host"], config["es_port"], config["use_ssl"], config["es_url_prefix"]) == (
        "es.example", 9243, True, "base"
    )
    load = lambda rule_id: yaml.safe_load((tmp_path / "rules" / f"{rule_id}.yaml").read_text())  # noqa: E731
    assert load("celery-logs-failure-rate")["index"] == "billing-*"
    assert load("celery-logs-failure-rate")["max_percentage"] == 25
    assert load("celery-logs-lost-tasks")["index"] == "billing-tasks"
    assert load("celery-logs-run-time-p95")["max_threshold"] == 2_500_000_000
    assert load("celery-logs-worker-silent")["timeframe"] == {"minutes": 3}
    assert load("celery-logs-worker-silent")["alert"] == ["debug"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--failure-rate", "100"], "failure-rate must be from 0 to below 100 %, not 100.0"),
        (["--window", "0"], "window must be above 0, not 0"),
        (["--realert", "-1"], "realert must be 0 or more minutes, not -1"),
        (["--index-prefix", "a,b"], "index-prefix 'a,b' is not a valid index name"),
        (["--post-url", "ftp://x"], "post-url 'ftp://x' must be an http:// or https:// URL"),
        (["--es", "http://user:pw@es:9200"], "es must not hold credentials (ElastAlert reads ES_USERNAME etc.)"),
    ],
)
def test_a_wrong_setting_is_a_one_line_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    """Out-of-range settings exit 2 with one line naming the setting, and write nothing."""
    assert main(["alerts", "export", "--elastalert", str(tmp_path), *flags]) == 2
    assert capsys.readouterr().err == f"celery-logs alerts: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_settings_are_checked_in_the_library_too() -> None:
    """AlertSettings refuses a window that is not a whole number of runs."""
    with pytest.raises(AlertSettingsError, match=r"window \(10 min\) must be a multiple of run-every \(3 min\)"):
        AlertSettings(window_minutes=10, run_every_minutes=3)


def test_rule_ids_and_titles_are_unique() -> None:
    """Ids name files and Kibana rules, titles name ElastAlert rules: neither may repeat."""
    assert len({r.id for r in RULES}) == len({r.title for r in RULES}) == len(RULES) == 7
