"""Deploy comparison: each task's runs, failure % and p50/p95 side by side per service.version, against ground truth."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from pipelines.analytics import ReportSettings, Window, build_report, render
from pipelines.cli import main
from pipelines.dev import synth as _synth
from tests.support.engines import client_for

from .expected import Expected, percentile, stats_by

pytestmark = pytest.mark.integration

START = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)
WINDOW = Window(START, START + timedelta(hours=4))
OLD, NEW = "1.4.2", "1.5.0"
#: The new version makes billing.charge flakier and reports.build_pdf slower.
NEW_TASKS = tuple(
    (n, q, m * (2.0 if n == "reports.build_pdf" else 1.0), 0.30 if n == "billing.charge" else f, r)
    for n, q, m, f, r in _synth.DEFAULT_TASKS
)


@pytest.fixture(scope="module")
def deploys(es_url: str) -> Iterator[tuple[Elasticsearch, str, dict[str, dict[str, Expected]]]]:
    """Two hours on 1.4.2, then two hours on 1.5.0, loaded into indices of their own."""
    es = client_for(es_url, request_timeout=120)
    prefix = f"t{uuid.uuid4().hex[:10]}-celery-logs"
    old = _synth.generate(tasks=300, seed=41, start=START, span=timedelta(hours=2), lost_tasks=0, version=OLD)
    new = _synth.generate(tasks=300, seed=42, start=START + timedelta(hours=2), span=timedelta(hours=2),
                          lost_tasks=0, version=NEW, task_kinds=NEW_TASKS)
    _synth.load(es, _synth.SynthHistory(records=old.records + new.records), prefix=prefix, tasks_index=None)
    truth = {OLD: stats_by(old.tasks, WINDOW, lambda t: t.name), NEW: stats_by(new.tasks, WINDOW, lambda t: t.name)}
    yield es, prefix, truth
    es.options(ignore_status=404).indices.delete(index=f"{prefix}-*", expand_wildcards="all")
    es.options(ignore_status=404).indices.delete_index_template(name=f"{prefix}-template")
    es.close()


Deploys = tuple[Elasticsearch, str, dict[str, dict[str, Expected]]]


def test_compare_puts_two_versions_side_by_side(deploys: Deploys, engine: str) -> None:
    """--compare 1.4.2 1.5.0: per task and version exact runs and failures, ES-exact p50/p95, and the changes."""
    es, prefix, truth = deploys
    report = build_report(es, ReportSettings(window=WINDOW, prefix=prefix, tasks_index="none-here", lost=False,
                                             compare_by="service.version", compare_values=(OLD, NEW)))
    assert report.comparison is not None and report.comparison.values == (OLD, NEW)
    rows = {r.task: r for r in report.comparison.rows}
    assert sorted(rows) == sorted(set(truth[OLD]) | set(truth[NEW]))
    for task, row in rows.items():
        for version in (OLD, NEW):
            got, want = row.get(version), truth[version][task]
            assert got is not None
            assert (got.runs, got.successes, got.failures, got.retries) == (
                want.runs, want.successes, want.failures, want.retries)
            assert got.failure_pct == pytest.approx(want.failure_pct)
            assert got.run_p50 == pytest.approx(percentile(want.durations, 50, engine=engine), rel=1e-9)
            assert got.run_p95 == pytest.approx(percentile(want.durations, 95, engine=engine), rel=1e-9)
    data = json.loads(render(report, "json"))["by_version"]
    assert data["values"] == [OLD, NEW]
    charge = next(t for t in data["tasks"] if t["task"] == "billing.charge")
    old, new = truth[OLD]["billing.charge"], truth[NEW]["billing.charge"]
    assert charge["versions"][OLD]["runs"] == old.runs and charge["versions"][NEW]["failures"] == new.failures
    assert charge["failure_pct_change_pt"] == pytest.approx(new.failure_pct - old.failure_pct)  # type: ignore[operator]
    assert charge["failure_pct_change_pt"] > 5
    pdf = next(t for t in data["tasks"] if t["task"] == "reports.build_pdf")
    assert pdf["run_p95_change_pct"] > 50
    table = render(report, "table")
    assert "== Tasks by service.version ==" in table and f"{NEW} p95" in table


def test_by_version_shows_every_version_seen(deploys: Deploys) -> None:
    """--by service.version: every version in the window, in order, without the pairwise changes."""
    es, prefix, _truth = deploys
    report = build_report(es, ReportSettings(window=WINDOW, prefix=prefix, tasks_index="none-here", lost=False,
                                             compare_by="service.version"))
    assert report.comparison is not None and report.comparison.values == (OLD, NEW)
    assert "failure_pct_change_pt" not in json.loads(render(report, "json"))["by_version"]["tasks"][0]


def test_cli_compare_and_a_wrong_by(deploys: Deploys, es_url: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`report --compare A B` writes the comparison; `--by` with an unknown field is a usage error (exit 2)."""
    _es, prefix, truth = deploys
    out = tmp_path / "r.json"
    argv = ["report", "--es", es_url, "--index-prefix", prefix, "--since", "2026-11-22T06:00:00Z",
            "--until", "2026-11-22T10:00:00Z", "--compare", OLD, NEW, "--out", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())["by_version"]
    assert {t["task"] for t in data["tasks"]} == set(truth[OLD])
    with pytest.raises(SystemExit) as exc:
        main(["report", "--by", "celery.task.args"])
    assert exc.value.code == 2
    assert "--by" in capsys.readouterr().err


def test_cli_by_choices_are_the_comparisons() -> None:
    """The CLI's --by choices (kept light for --help) are exactly the fields the comparison knows."""
    from pipelines.analytics.versions import BY_FIELDS
    from pipelines.cli.report import _BY_FIELDS

    assert _BY_FIELDS == BY_FIELDS
