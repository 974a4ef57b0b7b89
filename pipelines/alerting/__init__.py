"""Alerting: the alert rules as a data table (``rules``) and their renderers, ElastAlert 2 rule files
(``elastalert``) and Kibana Elasticsearch-query rules (``kibana_rules``). This wing imports only the
shared top modules and ``celery_logs``; the cli and dev wings use it.
"""

from pipelines.alerting.elastalert import ELASTALERT_VERSION, rendered_files, rule_document
from pipelines.alerting.elastalert import write_files as write_elastalert_files
from pipelines.alerting.kibana_rules import NOT_IN_KIBANA, KibanaRule, elastalert_only, kibana_rules
from pipelines.alerting.rules import RULES, AlertRule, AlertSettings, AlertSettingsError, rule_by_id

__all__ = [
    "ELASTALERT_VERSION",
    "NOT_IN_KIBANA",
    "RULES",
    "AlertRule",
    "AlertSettings",
    "AlertSettingsError",
    "KibanaRule",
    "elastalert_only",
    "kibana_rules",
    "rendered_files",
    "rule_by_id",
    "rule_document",
    "write_elastalert_files",
]
