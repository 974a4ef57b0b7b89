"""The shipper against the real Elasticsearch: what ends up indexed, exactly once, and what is dead-lettered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from pipelines import Shipper, ShipperConfig, install
from tests.ship import records
from tests.ship.helpers import count, dead_letters, expected_ids, last_json, run_cli, ship_command, stored_ids

pytestmark = pytest.mark.integration


def _config(tmp_path: Path, prefix: str, *paths: str, **kw: object) -> ShipperConfig:
    return ShipperConfig(
        paths=paths or (str(tmp_path / "logs" / "*.jsonl"),),
        state_dir=tmp_path / "state",
        index_prefix=prefix,
        follow=False,
        **{"tasks_index": f"{prefix}.tasks", **kw},  # type: ignore[arg-type]
    )


def _setup(es: Elasticsearch, prefix: str) -> None:
    install(es, index_prefix=prefix, tasks_index=f"{prefix}.tasks")


def test_ships_every_record_once_and_builds_the_task_entities(
    es: Elasticsearch, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path
) -> None:
    """3 000 records over two days from two files land once each; 1 000 task documents hold the merged fields."""
    _setup(es, index_prefix)
    records.write(logs / "billing.1.jsonl", 0, 1500)
    with (logs / "billing.2.jsonl").open("wb") as fh:
        for i in range(1500, 3000):
            fh.write(json.dumps(records.record(i, day=23)).encode() + b"\n")
    stats = Shipper(_config(tmp_path, index_prefix), client=es).run_once()
    assert (stats.lines, stats.shipped, stats.duplicates, stats.dead_lettered) == (3000, 3000, 0, 0)
    assert stats.tasks_updated == 3000
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, 3000)
    assert count(es, f"{index_prefix}-2026.11.22") == 1500
    assert count(es, f"{index_prefix}-2026.11.23") == 1500
    assert count(es, tasks_index) == 1000
    doc = es.get(index=tasks_index, id="r-t7")["_source"]
    assert doc == {
        "task_id": "r-t7", "name": "billing.charge", "service": "billing", "environment": "test",
        "queue": "celery", "worker": "celery@worker-1", "received_at": "2026-11-22T10:00:21.000021Z",
        "started_at": "2026-11-22T10:00:22.000022Z", "retries": 0, "ended_at": "2026-11-22T10:00:23.000023Z",
        "end_action": "task-succeeded", "state": "SUCCESS", "outcome": "success", "duration": 1_000_023,
    }


def test_replay_after_the_checkpoint_is_deleted_counts_409s_as_done(
    es: Elasticsearch, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path
) -> None:
    """Shipping the same file again from scratch makes only 409s: no new document, no retry."""
    _setup(es, index_prefix)
    records.write(logs / "a.jsonl", 0, 2000)
    first = Shipper(_config(tmp_path, index_prefix), client=es).run_once()
    (tmp_path / "state" / "checkpoint.json").unlink()
    again = Shipper(_config(tmp_path, index_prefix), client=es).run_once()
    assert (first.shipped, first.duplicates) == (2000, 0)
    assert (again.shipped, again.duplicates, again.retried, again.request_retries) == (0, 2000, 0, 0)
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, 2000)


#: How each engine names a document its mapping refuses (Elasticsearch 8 renamed OpenSearch's, and adds a position).
PARSING_ERROR = {"elasticsearch": "document_parsing_exception: [1:16] ", "opensearch": "mapper_parsing_exception: "}


def test_mapping_conflicts_are_dead_lettered_once_and_do_not_block_the_good_ones(
    es: Elasticsearch, engine: str, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path
) -> None:
    """In one batch, records whose event.duration is not a number are dead-lettered once; the rest index."""
    _setup(es, index_prefix)
    bad_at = {5, 50, 77}
    with (logs / "a.jsonl").open("wb") as fh:
        for i in range(100):
            rec = records.record(i)
            if i in bad_at:
                rec["event"] = {**rec["event"], "duration": "very long"}  # type: ignore[dict-item]
            fh.write(json.dumps(rec).encode() + b"\n")
    stats = Shipper(_config(tmp_path, index_prefix, tasks_index=None), client=es).run_once()
    assert (stats.shipped, stats.dead_lettered, stats.retried) == (97, 3, 0)
    assert sorted(stored_ids(es, index_prefix)) == [i for i in expected_ids(0, 100) if int(i[-3:]) not in bad_at]
    dead = dead_letters(tmp_path / "state")
    assert [(d["status"], json.loads(d["line"])["event"]["id"]) for d in dead] == [
        (400, "r-e00000005"), (400, "r-e00000050"), (400, "r-e00000077")
    ]
    assert all(d["reason"].startswith(PARSING_ERROR[engine].split(":")[0]) for d in dead)
    assert all(d["file"] == str(logs / "a.jsonl") for d in dead)
    # The checkpoint passed them: a second run ships and dead-letters nothing more.
    again = Shipper(_config(tmp_path, index_prefix, tasks_index=None), client=es).run_once()
    assert (again.lines, again.dead_lettered) == (0, 0)
    assert len(dead_letters(tmp_path / "state")) == 3


def test_bad_lines_torn_writes_and_a_20_mb_line_are_handled_and_the_rest_ships(
    es: Elasticsearch, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path
) -> None:
    """Invalid JSON, invalid UTF-8, a 20 MB line and a missing timestamp are dead-lettered; a torn line waits."""
    _setup(es, index_prefix)
    f = logs / "a.jsonl"
    good = list(records.lines(0, 10))
    with f.open("wb") as fh:
        fh.write(good[0] + b"this is not json\n" + good[1])
        fh.write(b'{"@timestamp": "2026-11-22T10:00:00Z", "message": "caf\xe9"}\n')
        fh.write(b'{"message": "' + b"y" * (20 << 20) + b'"}\n')
        fh.write(good[2] + b'{"message": "no timestamp"}\n' + good[3])
        fh.write(good[4][:40])  # torn: the writer has not finished this line yet
    cfg = _config(tmp_path, index_prefix, tasks_index=None)
    first = Shipper(cfg, client=es).run_once()
    assert (first.shipped, first.dead_lettered) == (4, 4)
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, 4)
    dead = dead_letters(tmp_path / "state")
    assert [d["reason"] for d in dead] == [
        "not JSON: Expecting value: line 1 column 1 (char 0)",
        "invalid UTF-8 at byte 54",
        f"line of {(20 << 20) + 15} bytes exceeds the bound of {1 << 20} bytes",
        "no @timestamp",
    ]
    assert dead[0]["line"] == "this is not json"
    assert "line_base64" in dead[1]
    assert dead[2]["line_bytes"] == (20 << 20) + 15 and dead[2]["line_head"].startswith('{"message": "yyy')
    with f.open("ab") as fh:
        fh.write(good[4][40:])
        fh.writelines(good[5:])
    second = Shipper(cfg, client=es).run_once()
    assert (second.shipped, second.duplicates, second.dead_lettered) == (6, 0, 0)
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, 10)


def test_a_canonical_timestamp_with_an_impossible_time_is_refused_by_elasticsearch_and_dead_lettered(
    es: Elasticsearch, engine: str, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path
) -> None:
    """On a day already seen the shipper leaves the time of day to Elasticsearch, whose 400 is dead-lettered."""
    _setup(es, index_prefix)
    good = list(records.lines(0, 2))
    bad = json.loads(good[1])
    bad["@timestamp"] = "2026-11-22T99:77:00.000000Z"
    bad["event"]["id"] = "bad-time"
    (logs / "a.jsonl").write_bytes(good[0] + json.dumps(bad).encode() + b"\n" + good[1])
    stats = Shipper(_config(tmp_path, index_prefix, tasks_index=None), client=es).run_once()
    assert (stats.shipped, stats.dead_lettered) == (2, 1)
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, 2)
    (dead,) = dead_letters(tmp_path / "state")
    assert dead["status"] == 400 and dead["line"] == json.dumps(bad)
    assert dead["reason"] == PARSING_ERROR[engine] + (
        "failed to parse field [@timestamp] of type [date] in document with id "
        "'bad-time'. Preview of field's value: '2026-11-22T99:77:00.000000Z'"
    )


def test_a_truncated_checkpoint_file_means_a_harmless_replay(
    es: Elasticsearch, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path
) -> None:
    """A checkpoint cut short is ignored with a warning: everything is sent again as 409s, nothing doubles."""
    _setup(es, index_prefix)
    records.write(logs / "a.jsonl", 0, 500)
    cfg = _config(tmp_path, index_prefix, tasks_index=None)
    Shipper(cfg, client=es).run_once()
    cp = tmp_path / "state" / "checkpoint.json"
    cp.write_bytes(cp.read_bytes()[:20])
    records.write(logs / "a.jsonl", 500, 600)
    again = Shipper(cfg, client=es).run_once()
    assert (again.shipped, again.duplicates) == (100, 500)
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, 600)
    assert json.loads(cp.read_text())["version"] == 1


def test_cli_ship_once_setup_and_stats(
    es: Elasticsearch, es_url: str, index_prefix: str, tasks_index: str, tmp_path: Path, logs: Path
) -> None:
    """`celery-logs ship --once --stats` installs the template, ships, prints its counters, exits 0, and what it
    shipped is searchable when it exits (no refresh by the test)."""
    records.write(logs / "a.jsonl", 0, 300)
    proc = run_cli(ship_command(es_url, tmp_path / "state", index_prefix, [str(logs / "*.jsonl")], "--once",
                                "--stats"))
    assert proc.returncode == 0, proc.stderr
    stats = last_json(proc.stdout)
    assert (stats["shipped"], stats["dead_lettered"], stats["tasks_updated"]) == (300, 0, 300)
    assert es.count(index=f"{index_prefix}-2*")["count"] == 300
    assert es.count(index=tasks_index)["count"] == 100  # three records per task
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, 300)
    template = es.indices.get_index_template(name=index_prefix)["index_templates"][0]
    assert template["index_template"]["index_patterns"] == [f"{index_prefix}-2*"]
    for line in proc.stderr.splitlines():  # its own logs are JSON
        assert json.loads(line)["log.logger"] == "celery_logs.shipper"


def test_cli_exit_4_when_lines_were_dead_lettered_and_stdin_input(es: Elasticsearch, es_url: str,
                                                                   index_prefix: str, tmp_path: Path) -> None:
    """Reading `-` ships stdin; a dead-lettered line makes the exit code 4."""
    body = b"".join(records.lines(0, 20)) + b"garbage\n"
    cmd = ship_command(es_url, tmp_path / "state", index_prefix, ["-"], "--once", "--stats", "--no-tasks-index")
    cmd.remove("--tasks-index")
    cmd.remove(f"{index_prefix}.tasks")
    import os
    import subprocess

    from tests.ship.helpers import ROOT

    proc = subprocess.run(cmd, input=body, capture_output=True, cwd=ROOT, timeout=120, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 4, proc.stderr
    assert (last_json(proc.stdout.decode())["shipped"], last_json(proc.stdout.decode())["dead_lettered"]) == (20, 1)
    assert sorted(stored_ids(es, index_prefix)) == expected_ids(0, 20)


def test_cli_wrong_flag_and_unreachable_cluster_are_one_line_errors(tmp_path: Path) -> None:
    """A wrong flag names itself (exit 2); setup against a closed port says it cannot reach it (exit 3)."""
    from pipelines.dev.stack import free_port

    proc = run_cli([*ship_command("http://127.0.0.1:1", tmp_path, "x", ["a"]), "--bogus"])
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "celery-logs: error: unrecognized arguments: --bogus (see celery-logs --help)"
    ]
    port = free_port()
    proc = run_cli([sys_python(), "-m", "pipelines.cli", "setup", "--es", f"http://127.0.0.1:{port}", "--timeout", "2"])
    assert proc.returncode == 3
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("celery-logs setup: cannot reach Elasticsearch")


def test_prune_is_a_dry_run_unless_applied(es: Elasticsearch, es_url: str, index_prefix: str) -> None:
    """`prune --keep 30d` lists the old daily indices; with --apply it deletes exactly those."""
    from datetime import datetime, timedelta, timezone

    today = datetime.now(timezone.utc).date()
    days = [today - timedelta(days=n) for n in (0, 29, 30, 31, 400)]
    names = [f"{index_prefix}-{d:%Y.%m.%d}" for d in days]
    for name in names:
        es.indices.create(index=name)
    es.indices.create(index=f"{index_prefix}-notes")
    base = [sys_python(), "-m", "pipelines.cli", "prune", "--es", es_url, "--index-prefix", index_prefix,
            "--no-tasks-index", "--keep", "30d"]
    dry = run_cli(base)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[:2] == [f"would delete {names[4]}", f"would delete {names[3]}"]
    assert sorted(es.indices.get(index=f"{index_prefix}-*")) == sorted([*names, f"{index_prefix}-notes"])
    applied = run_cli([*base, "--apply"])
    assert applied.returncode == 0, applied.stderr
    assert sorted(es.indices.get(index=f"{index_prefix}-*")) == sorted([*names[:3], f"{index_prefix}-notes"])
    bad = run_cli([*base[:-1], "thirty"])
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "celery-logs prune: --keep takes a number of days or weeks like 30d or 8w, not 'thirty'"
    )


def sys_python() -> str:
    import sys

    return sys.executable
