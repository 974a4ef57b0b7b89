"""`celery-logs kibana import|export` against a local server that checks requests as Kibana's API does."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.kibana import client as _kibana
from pipelines.kibana import objects as ko
from tests.kibana.fake_kibana import FakeKibana, running

SHIPPED = [json.loads(line) for line in (ko.objects_dir() / ko.NDJSON_NAME).read_text().splitlines()][:-1]
KEYS = {(o["type"], o["id"]) for o in SHIPPED}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No connection settings leak in from the developer's environment."""
    for name in (
        "CELERY_LOGS_KIBANA_URL", "CELERY_LOGS_KIBANA_SPACE", "CELERY_LOGS_KIBANA_API_KEY",
        "CELERY_LOGS_KIBANA_USERNAME", "CELERY_LOGS_KIBANA_PASSWORD", "CELERY_LOGS_KIBANA_CA_CERTS",
        "CELERY_LOGS_ES_API_KEY", "CELERY_LOGS_ES_USERNAME", "CELERY_LOGS_ES_PASSWORD",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def kibana() -> Iterator[FakeKibana]:
    with running(FakeKibana()) as server:
        yield server


def test_import_creates_everything_then_updates_it_in_place(
    kibana: FakeKibana, capsys: pytest.CaptureFixture[str]
) -> None:
    """First import creates all 21 objects; a second one updates the same 21 (idempotent), exit 0 both times."""
    assert main(["kibana", "import", "--kibana", kibana.url]) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[-1] == f"Kibana at {kibana.url}: 21 created, 0 updated, 0 refused"
    assert "created  dashboard      celery-logs-dashboard  Celery tasks" in first
    assert set(kibana.store["default"]) == KEYS
    assert main(["kibana", "import", "--kibana", kibana.url]) == 0
    second = capsys.readouterr().out.splitlines()
    assert second[-1] == f"Kibana at {kibana.url}: 0 created, 21 updated, 0 refused"
    assert [o for _k, o in sorted(kibana.store["default"].items())] == sorted(
        SHIPPED, key=lambda o: (o["type"], o["id"])
    )


def test_import_request_is_what_kibanas_api_defines(kibana: FakeKibana) -> None:
    """POST /api/saved_objects/_import?overwrite=true, kbn-xsrf, multipart with one `file` part named *.ndjson."""
    assert main(["kibana", "import", "--kibana", kibana.url]) == 0
    (req,) = kibana.requests
    assert (req.method, req.path, req.query) == ("POST", "/api/saved_objects/_import", {"overwrite": ["true"]})
    assert req.headers["kbn-xsrf"]
    assert "authorization" not in req.headers
    boundary = req.headers["content-type"].removeprefix("multipart/form-data; boundary=")
    head, rest = req.body.split(b"\r\n\r\n", 1)
    assert head.split(b"\r\n") == [
        f"--{boundary}".encode(),
        b'Content-Disposition: form-data; name="file"; filename="celery-logs.ndjson"',
        b"Content-Type: application/ndjson",
    ]
    assert rest.endswith(f"\r\n--{boundary}--\r\n".encode())
    assert rest[: -len(f"\r\n--{boundary}--\r\n")] == (ko.objects_dir() / ko.NDJSON_NAME).read_bytes()


def test_import_into_a_space_with_an_api_key(kibana: FakeKibana, monkeypatch: pytest.MonkeyPatch) -> None:
    """--space puts the call under /s/<space>; the API key comes from the environment as `ApiKey <key>`."""
    kibana.spaces.add("ops")
    kibana.authorization = "ApiKey a2V5OnNlY3JldA=="
    monkeypatch.setenv("CELERY_LOGS_KIBANA_API_KEY", "a2V5OnNlY3JldA==")
    assert main(["kibana", "import", "--kibana", kibana.url, "--space", "ops"]) == 0
    assert kibana.requests[-1].path == "/s/ops/api/saved_objects/_import"
    assert set(kibana.store["ops"]) == KEYS
    assert "default" not in kibana.store


def test_import_with_basic_auth_from_a_password_file(
    kibana: FakeKibana, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--username with --password-file sends basic auth; wrong credentials end in one line and exit 1."""
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    kibana.authorization = "Basic " + base64.b64encode(b"elastic:s3cret").decode()
    args = ["kibana", "import", "--kibana", kibana.url, "--username", "elastic", "--password-file", str(secret)]
    assert main(args) == 0
    secret.write_text("wrong\n")
    capsys.readouterr()
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err == (
        "celery-logs kibana: Kibana answered 401 Unauthorized (check the credentials): "
        "[security_exception]: unable to authenticate user\n"
    )
    assert "wrong" not in err


def test_partial_errors_are_reported_object_by_object(kibana: FakeKibana, capsys: pytest.CaptureFixture[str]) -> None:
    """A Kibana without Lens refuses the Lens objects and the dashboard that needs them; exit 4 (partial)."""
    kibana.supported_types.discard("lens")
    assert main(["kibana", "import", "--kibana", kibana.url]) == 4
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"Kibana at {kibana.url}: 11 created, 0 updated, 10 refused"
    assert (
        "refused  lens           celery-logs-throughput  Celery: throughput by outcome  "
        "(unsupported type in this Kibana)"
    ) in out
    dashboard_line = next(line for line in out if "celery-logs-dashboard" in line)
    assert dashboard_line.startswith("refused  dashboard")
    assert "missing references: lens:celery-logs-throughput, lens:celery-logs-failure-rate" in dashboard_line
    assert {k[0] for k in kibana.store["default"]} == {"index-pattern", "search"}


def test_no_overwrite_reports_conflicts(kibana: FakeKibana, capsys: pytest.CaptureFixture[str]) -> None:
    """--no-overwrite leaves existing objects alone and reports each as a conflict."""
    assert main(["kibana", "import", "--kibana", kibana.url]) == 0
    assert main(["kibana", "import", "--kibana", kibana.url, "--no-overwrite"]) == 4
    assert kibana.requests[-1].query == {}
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"Kibana at {kibana.url}: 0 created, 0 updated, 21 refused"
    assert out[-2].endswith("(conflict with an existing object)")


def test_export_fetches_the_shipped_objects(kibana: FakeKibana, tmp_path: Path) -> None:
    """export POSTs the shipped type/id pairs to _export (references included) and writes Kibana's NDJSON."""
    assert main(["kibana", "import", "--kibana", kibana.url]) == 0
    target = tmp_path / "out.ndjson"
    assert main(["kibana", "export", "--kibana", kibana.url, "--output", str(target)]) == 0
    req = kibana.requests[-1]
    assert (req.method, req.path, req.headers["content-type"]) == (
        "POST", "/api/saved_objects/_export", "application/json")
    assert json.loads(req.body) == {
        "objects": [{"type": o["type"], "id": o["id"]} for o in SHIPPED],
        "includeReferencesDeep": True,
        "excludeExportDetails": False,
    }
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines[:-1] == [json.loads(json.dumps(o, sort_keys=True)) for o in SHIPPED]
    assert lines[-1]["exportedCount"] == 21


def test_wait_retries_while_kibana_is_starting(kibana: FakeKibana, capsys: pytest.CaptureFixture[str]) -> None:
    """--wait repeats the import while Kibana answers 503, then reports it; without --wait a 503 is an error."""
    kibana.not_ready_for = 2
    assert main(["kibana", "import", "--kibana", kibana.url, "--wait", "30"]) == 0
    assert len(kibana.requests) == 3
    assert capsys.readouterr().out.splitlines()[-1].endswith("21 created, 0 updated, 0 refused")
    kibana.requests.clear()
    kibana.not_ready_for = 1
    assert main(["kibana", "import", "--kibana", kibana.url]) == 1
    assert capsys.readouterr().err == (
        "celery-logs kibana: Kibana answered 503 Service Unavailable: Kibana server is not ready yet\n"
    )


def test_retry_gives_up_at_the_deadline_and_never_retries_other_errors() -> None:
    """retry_until_ready stops before the deadline, and a 400 is raised at the first attempt."""
    now = [0.0]
    calls: list[int] = []

    def unavailable() -> None:
        calls.append(1)
        raise _kibana.KibanaUnavailable("down")

    with pytest.raises(_kibana.KibanaUnavailable):
        _kibana.retry_until_ready(
            unavailable, wait=4.0, sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0]
        )
    assert (len(calls), now[0]) == (4, 3.5)

    def bad_request() -> None:
        calls.append(1)
        raise _kibana.KibanaError("bad", status=400)

    calls.clear()
    with pytest.raises(_kibana.KibanaError):
        _kibana.retry_until_ready(bad_request, wait=60.0, sleep=lambda s: None)
    assert len(calls) == 1


def test_unreachable_kibana_is_one_line_and_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    """No Kibana listening: one line naming where, exit 3, no traceback."""
    with running(FakeKibana()) as server:
        url = server.url
    assert main(["kibana", "import", "--kibana", url]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"celery-logs kibana: cannot reach Kibana at {url}: ")
    assert len(err.splitlines()) == 1


def test_bad_settings_are_one_line_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A bad space id, a missing file and a non-HTTP URL each end in one line naming the problem."""
    assert main(["kibana", "import", "--space", "Ops Team"]) == 1
    assert "invalid Kibana space id 'Ops Team'" in capsys.readouterr().err
    assert main(["kibana", "import", "--file", str(tmp_path / "nope.ndjson")]) == 1
    missing = tmp_path / "nope.ndjson"
    assert capsys.readouterr().err == f"celery-logs kibana: cannot read {missing}: No such file or directory\n"
    assert main(["kibana", "import", "--kibana", "ftp://kibana:5601"]) == 1
    assert "must start with http:// or https://" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["kibana", "import", "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    assert main(["kibana", "import", "--kibana", "https://elastic:pw@kb.example"]) == 1
    assert capsys.readouterr().err == (
        "celery-logs kibana: the Kibana URL must not hold credentials: use --username with --password-file, "
        "--api-key-file or the environment\n"
    )


def test_settings_prefer_kibana_variables_and_fall_back_to_elasticsearch_ones() -> None:
    """Kibana-specific env wins; the Elasticsearch credentials are the fallback; secrets stay out of repr."""
    import argparse

    parser = argparse.ArgumentParser()
    _kibana.add_arguments(parser)
    args = parser.parse_args([])
    es_only = _kibana.KibanaSettings.from_args(
        args, environ={"CELERY_LOGS_ES_USERNAME": "elastic", "CELERY_LOGS_ES_PASSWORD": "pw"}
    )
    assert (es_only.username, es_only.password, es_only.url) == ("elastic", "pw", "http://127.0.0.1:5601")
    both = _kibana.KibanaSettings.from_args(
        args,
        environ={
            "CELERY_LOGS_ES_USERNAME": "elastic",
            "CELERY_LOGS_ES_PASSWORD": "pw",
            "CELERY_LOGS_KIBANA_API_KEY": "k",
            "CELERY_LOGS_KIBANA_URL": "https://kb.example:5601/base",
        },
    )
    assert (both.api_key, both.username, both.password) == ("k", None, None)
    assert both.api_url("/api/saved_objects/_import", {"overwrite": "true"}) == (
        "https://kb.example:5601/base/api/saved_objects/_import?overwrite=true"
    )
    assert "api_key" not in repr(both)
    assert "password" not in repr(es_only)
