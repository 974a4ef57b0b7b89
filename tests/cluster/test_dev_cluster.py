"""`celery-logs dev up --nodes 3`: a real cluster on loopback that `status` sees and `down --purge` removes."""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.cli import main
from pipelines.dev.stack import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def dev_home(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A dev home the nodes can use even when the tests run as root (pytest's own tmp dirs are private)."""
    home = Path(tempfile.mkdtemp(prefix="celery-logs-devhome-"))
    home.chmod(0o755)
    monkeypatch.setenv("CELERY_LOGS_DEV_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


def test_dev_up_three_nodes(dev_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three nodes with their own data directories form one green cluster; status and down see all three."""
    port = free_port()
    try:
        assert main(["dev", "up", "--nodes", "3", "--port", str(port), "--heap", "384m"]) == 0
        out = capsys.readouterr().out
        assert "is a 3-node cluster at --es http://127.0.0.1:" in out
        state = json.loads((dev_home / "state.json").read_text())
        assert state["url"].split(",")[0] == f"http://127.0.0.1:{port}"
        assert len(state["url"].split(",")) == 3
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_cluster/health?wait_for_status=green") as resp:
            health = json.loads(resp.read())
        assert (health["number_of_nodes"], health["number_of_data_nodes"], health["status"]) == (3, 3, "green")
        assert sorted(p.name for p in (dev_home / "cluster").iterdir()) == ["node-1", "node-2", "node-3"]
        assert main(["dev", "status"]) == 0
        assert capsys.readouterr().out.startswith(f"3 of 3 nodes running at {state['url']} (healthy)")
    finally:
        assert main(["dev", "down", "--purge"]) == 0
    assert main(["dev", "status"]) == 3
    assert "not running" in capsys.readouterr().out
    assert not (dev_home / "cluster").exists()


def test_nodes_out_of_range_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """`--nodes 0` is refused in one line naming the flag."""
    with pytest.raises(SystemExit) as exc:
        main(["dev", "up", "--nodes", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "--nodes: must be 1 to 9, not 0" in err
