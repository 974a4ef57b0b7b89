"""The shipper against a node with TLS on HTTP and authentication (x-pack security of the server build).

Certificates are made in the test with ``openssl`` (a CA and a node certificate for 127.0.0.1); the user
comes from the node's file realm. The password reaches the shipper only through an environment variable
and a file, and never shows in its output.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from pipelines.dev.stack import DevStackError, LocalElasticsearch, _chown_nobody, ensure_distribution, find_java_home
from tests.ship import records
from tests.ship.helpers import expected_ids, last_json, run_cli, ship_command, stored_ids

pytestmark = pytest.mark.integration

USER = "shipper"
PASSWORD = "s3cret-Pa55-for-tests"
#: docs/shipper.md's least-privilege role, for the prefix ``least``: no template management, no refresh
#: (``maintenance``), no cluster privileges.
WRITER = "writer"
WRITER_ROLE = """\
celery_logs_writer:
  indices:
    - names: ["least-*", "least.tasks"]
      privileges: ["create_index", "create_doc", "write", "read", "view_index_metadata"]
celery_logs_pruner:
  indices:
    - names: ["least-*", "least.tasks"]
      privileges: ["read", "delete", "delete_index", "view_index_metadata"]
"""
#: docs/shipper.md's role for `prune`: it reads and deletes, and writes nothing.
PRUNER = "pruner"


@dataclass
class _SecureNode(LocalElasticsearch):
    """LocalElasticsearch speaking HTTPS with basic auth; health is checked the same way."""

    ca: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        assert self.ca is not None
        ctx = ssl.create_default_context(cafile=str(self.ca))
        req = urllib.request.Request(f"{self.url}/_cluster/health")
        req.add_header("Authorization", "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
                return b'"status":"red"' not in resp.read()
        except OSError:
            return False


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certs(certs: Path) -> None:
    certs.mkdir(parents=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=celery-logs test CA", cwd=certs)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr",
             "-subj", "/CN=127.0.0.1", cwd=certs)
    (certs / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "node.crt", "-days", "2", "-extfile", "san.ext", cwd=certs)


@pytest.fixture(scope="module")
def secure_node() -> Iterator[_SecureNode]:
    """A node with TLS on HTTP and a superuser in its file realm (its directory readable by `nobody`)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    work = Path(tempfile.mkdtemp(prefix="celery-logs-es-tls-"))
    home = ensure_distribution()
    shutil.copytree(home / "config", work / "config")
    _make_certs(work / "config" / "certs")
    env = {**os.environ, "ES_PATH_CONF": str(work / "config"), "ES_JAVA_HOME": str(find_java_home())}
    subprocess.run([str(home / "bin" / "elasticsearch-users"), "useradd", USER, "-p", PASSWORD, "-r", "superuser"],
                   env=env, check=True, capture_output=True, timeout=180)
    with (work / "config" / "roles.yml").open("a") as roles:
        roles.write("\n" + WRITER_ROLE)
    subprocess.run([str(home / "bin" / "elasticsearch-users"), "useradd", WRITER, "-p", PASSWORD, "-r",
                    "celery_logs_writer"], env=env, check=True, capture_output=True, timeout=180)  # fmt: skip
    subprocess.run([str(home / "bin" / "elasticsearch-users"), "useradd", PRUNER, "-p", PASSWORD, "-r",
                    "celery_logs_pruner"], env=env, check=True, capture_output=True, timeout=180)  # fmt: skip
    _chown_nobody(work)
    node = _SecureNode(
        heap="384m",
        workdir=work,
        ca=work / "config" / "certs" / "ca.crt",
        settings={
            "xpack.security.enabled": True,
            "xpack.security.http.ssl.enabled": True,
            "xpack.security.http.ssl.key": "certs/node.key",
            "xpack.security.http.ssl.certificate": "certs/node.crt",
            "xpack.security.http.ssl.certificate_authorities": ["certs/ca.crt"],
            "xpack.security.transport.ssl.enabled": False,
        },
    )
    try:
        node.start()
    except DevStackError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the TLS node is required in CI and could not start: {exc}", pytrace=False)
        pytest.skip(f"TLS node unavailable: {exc}")
    yield node
    node.cleanup()


def test_ship_over_tls_with_basic_auth_from_a_password_file(secure_node: _SecureNode, tmp_path: Path) -> None:
    """Verified TLS with the test CA and a password from a file: everything ships, no secret is printed."""
    assert secure_node.ca is not None
    logs = _logs(tmp_path, 500)
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    cmd = [*ship_command(secure_node.url, tmp_path / "state", "secure", [str(logs / "*.jsonl")], "--once",
                         "--stats"), "--username", USER, "--password-file", str(pw), "--ca-certs",
           str(secure_node.ca)]
    proc = run_cli(cmd)
    assert proc.returncode == 0, proc.stderr
    assert last_json(proc.stdout)["shipped"] == 500
    assert PASSWORD not in proc.stdout + proc.stderr
    es = Elasticsearch(secure_node.url, basic_auth=(USER, PASSWORD), ca_certs=str(secure_node.ca))
    try:
        assert sorted(stored_ids(es, "secure")) == expected_ids(0, 500)
    finally:
        es.close()


def test_wrong_password_and_unverifiable_certificate_are_one_line_errors(
    secure_node: _SecureNode, tmp_path: Path
) -> None:
    """A refused password exits 3 without the secret; without the CA the certificate is not trusted."""
    assert secure_node.ca is not None
    logs = _logs(tmp_path, 10)
    base = ship_command(secure_node.url, tmp_path / "state", "secure2", [str(logs / "*.jsonl")], "--once")
    env_cmd = [*base, "--username", USER, "--ca-certs", str(secure_node.ca)]
    os.environ["CELERY_LOGS_ES_PASSWORD"] = "not-the-password"
    try:
        proc = run_cli(env_cmd)
    finally:
        del os.environ["CELERY_LOGS_ES_PASSWORD"]
    assert proc.returncode == 3
    assert "not-the-password" not in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("celery-logs ship: ")
    untrusted = run_cli([*base, "--username", USER, "--password-file", str(_pw_file(tmp_path))])
    assert untrusted.returncode == 3
    assert untrusted.stderr.strip().splitlines() == [untrusted.stderr.strip().splitlines()[-1]]
    assert "certificate verify failed" in untrusted.stderr
    assert PASSWORD not in untrusted.stdout + untrusted.stderr


def test_a_writer_without_the_refresh_privilege_ships_everything_and_exits_0(
    secure_node: _SecureNode, tmp_path: Path
) -> None:
    """A least-privilege writer (no maintenance privilege) ships all, warns that it could not refresh, exits 0."""
    assert secure_node.ca is not None
    logs = _logs(tmp_path, 30)
    auth = ["--password-file", str(_pw_file(tmp_path)), "--ca-certs", str(secure_node.ca)]
    setup = run_cli([sys.executable, "-m", "pipelines.cli", "setup", "--es", secure_node.url, "--index-prefix",
                     "least", "--tasks-index", "least.tasks", "--username", USER, *auth])  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    proc = run_cli([*ship_command(secure_node.url, tmp_path / "state", "least", [str(logs / "*.jsonl")], "--once",
                                  "--stats", "--skip-setup"), "--username", WRITER, *auth])  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (last_json(proc.stdout)["shipped"], last_json(proc.stdout)["tasks_updated"]) == (30, 30)
    warnings = [r for r in map(json.loads, proc.stderr.splitlines()) if r["log.level"] == "warning"]
    assert [w["message"] for w in warnings] == [
        "shipped, but could not refresh; the last records become searchable at the next refresh"
    ]
    assert "403" in warnings[0]["error"] and PASSWORD not in proc.stdout + proc.stderr
    es = Elasticsearch(secure_node.url, basic_auth=(USER, PASSWORD), ca_certs=str(secure_node.ca))
    try:
        assert sorted(stored_ids(es, "least")) == expected_ids(0, 30)
    finally:
        es.close()


def test_prune_needs_only_read_and_delete(secure_node: _SecureNode, tmp_path: Path) -> None:
    """The documented pruner role deletes an old day and its task's document, and keeps today's task."""
    from datetime import datetime, timedelta, timezone

    assert secure_node.ca is not None
    auth = ["--password-file", str(_pw_file(tmp_path)), "--ca-certs", str(secure_node.ca)]
    setup = run_cli([sys.executable, "-m", "pipelines.cli", "setup", "--es", secure_node.url, "--index-prefix",
                     "least", "--tasks-index", "least.tasks", "--username", USER, *auth])  # fmt: skip
    assert setup.returncode == 0, setup.stderr
    now = datetime.now(timezone.utc)
    old_day = f"least-{now - timedelta(days=40):%Y.%m.%d}"
    es = Elasticsearch(secure_node.url, basic_auth=(USER, PASSWORD), ca_certs=str(secure_node.ca))
    try:
        es.indices.create(index=old_day)
        for tid, when in (("pruned-task", now - timedelta(days=40)), ("kept-task", now)):
            es.index(index="least.tasks", id=tid, document={"received_at": when.isoformat()}, refresh=True)
        proc = run_cli([sys.executable, "-m", "pipelines.cli", "prune", "--es", secure_node.url, "--index-prefix",
                        "least", "--tasks-index", "least.tasks", "--keep", "30d", "--apply", "--username", PRUNER,
                        *auth])  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        cutoff = (now - timedelta(days=30)).date().isoformat()
        assert proc.stdout.splitlines()[:2] == [
            f"deleting {old_day}",
            f"entity index least.tasks: 1 task documents deleted (every record of the task before {cutoff})",
        ]
        assert not es.indices.exists(index=old_day)
        assert (es.exists(index="least.tasks", id="pruned-task"), es.exists(index="least.tasks", id="kept-task")) == (
            False, True
        )  # fmt: skip
    finally:
        es.close()


def _logs(tmp_path: Path, n: int) -> Path:
    """A directory holding one file of ``n`` records."""
    logs = tmp_path / "logs"
    logs.mkdir()
    records.write(logs / "a.jsonl", 0, n)
    return logs


def _pw_file(tmp_path: Path) -> Path:
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    return pw
