"""The report, search, task and lost commands: outputs, and one clear line for every wrong input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.dev.stack import free_port

from .conftest import WINDOW, Loaded
from .expected import stats_by

pytestmark = pytest.mark.integration

_WINDOW = ["--since", "2026-11-22T06:00:00Z", "--until", "2026-11-22T12:00:00Z"]


def _where(loaded: Loaded, es_url: str, *, entity: bool = True) -> list[str]:
    args = ["--es", es_url, "--index-prefix", loaded.prefix]
    return [*args, "--tasks-index", loaded.tasks_index] if entity else args


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.strip()


def test_report_to_json_file(loaded: Loaded, es_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`report --format json --out FILE` writes the numbers and says where."""
    out = tmp_path / "r.json"
    code = main(["report", *_where(loaded, es_url), *_WINDOW, "--format", "json", "--out", str(out)])
    assert code == 0
    assert capsys.readouterr().err == f"report written to {out}\n"
    data = json.loads(out.read_text())
    want = stats_by(loaded.tasks, WINDOW, lambda t: t.name)
    assert {r["key"]: r["runs"] for r in data["tasks"]} == {k: v.runs for k, v in want.items()}
    assert len(data["lost"]) == 3


def test_report_filters_and_html(loaded: Loaded, es_url: str, tmp_path: Path) -> None:
    """Filter flags reach the query; the format follows --out's extension when not given."""
    out = tmp_path / "r.html"
    code = main(["report", *_where(loaded, es_url), *_WINDOW, "--task", "mail.send_welcome", "--out", str(out)])
    assert code == 0
    html = out.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert "mail.send_welcome" in html
    assert "billing.charge</td>" not in html


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (
            ["--format", "pdf"],
            2,
            "celery-logs report: unknown --format 'pdf' (choose from table, csv, json, markdown, html)",
        ),
        (["--since", "yesterday"], 2, "celery-logs report: unparseable time 'yesterday'"),
        (["--since", "1h", "--until", "2h"], 2, "celery-logs report: the window is empty"),
        (["--heartbeat-timeout", "soon"], 2, "celery-logs report: --heartbeat-timeout: unparseable duration 'soon'"),
        (["--format", "csv", "--csv-section", "x"], 2, "celery-logs report: unknown CSV section 'x'"),
    ],
)
def test_wrong_input_is_one_line(
    loaded: Loaded, es_url: str, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, message: str
) -> None:
    """Each wrong value gets its own one-line message and a usage exit code."""
    assert main(["report", *_where(loaded, es_url), *argv]) == code
    assert _one_line_error(capsys).startswith(message)


def test_unreachable_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    """A cluster nobody listens on: exit 3 and one line."""
    assert main(["report", "--es", f"http://127.0.0.1:{free_port()}", "--timeout", "5"]) == 3
    assert _one_line_error(capsys).startswith("celery-logs report: cannot reach Elasticsearch")


def test_missing_indices(es_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Indices that do not exist yet: exit 5 and a line naming them, for report, search, task and lost."""
    assert main(["report", "--es", es_url, "--index-prefix", "never-shipped"]) == 5
    assert "no record index matches 'never-shipped-2*' yet" in _one_line_error(capsys)
    assert main(["search", "x", "--es", es_url, "--index-prefix", "never-shipped"]) == 5
    _one_line_error(capsys)
    assert main(["task", "abc", "--es", es_url, "--index-prefix", "never-shipped"]) == 5
    _one_line_error(capsys)
    assert main(["lost", "--es", es_url, "--tasks-index", "never-shipped-tasks"]) == 5
    assert "'never-shipped-tasks' does not exist yet" in _one_line_error(capsys)


def test_unknown_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong flag is named in one line, exit 2."""
    with pytest.raises(SystemExit) as exc:
        main(["report", "--bogus"])
    assert exc.value.code == 2
    assert "--bogus" in _one_line_error(capsys)


def test_search_json_and_task(loaded: Loaded, es_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`search --json` prints one record per line; `task ID` prints its timeline; bad queries are one line."""
    assert (
        main(["search", "lookup_customer", *_where(loaded, es_url, entity=False), *_WINDOW, "--json", "--size", "3"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert "lookup_customer" in first["error"]["stack_trace"]
    assert main(["task", first["celery"]["task"]["id"], *_where(loaded, es_url, entity=False), "--color", "never"]) == 0
    assert capsys.readouterr().out.startswith(f"task {first['celery']['task']['id']}")
    assert main(["search", "foo:(", *_where(loaded, es_url, entity=False), *_WINDOW]) == 2
    assert "refused the query 'foo:('" in _one_line_error(capsys)
    assert main(["task", "no-such-task", *_where(loaded, es_url, entity=False)]) == 1
    assert "no record of task 'no-such-task'" in _one_line_error(capsys)


def test_lost_command(loaded: Loaded, es_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`lost --json` lists the three lost tasks with their reasons."""
    assert main(["lost", *_where(loaded, es_url), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(r["task_id"] for r in rows) == sorted(t.task_id for t in loaded.current.tasks if t.lost)
    assert sorted(r["reason"] for r in rows) == ["heartbeat-timeout", "heartbeat-timeout", "worker-lost-error"]
