"""Run Celery's own integration tests (from the sdist of the installed Celery) as released and with celery-logs.

    python -m tests.celery_suite.harness [--select t/integration/test_tasks.py ...]

Fetches ``celery-<installed version>.tar.gz`` from PyPI once (``pip download``, cached beside the
Elasticsearch build), starts a Redis for broker and result backend, runs the selection twice (each run
with a fresh Redis database and its own session worker, prefork as the suite configures it) and prints
the tests whose outcome differs. Exit status 0 when none differs, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

from pipelines.dev.stack import LocalRedis, cache_dir

ROOT = Path(__file__).resolve().parents[2]
#: The whole comparison the README documents (test_canvas runs the suite's prefork session worker).
DEFAULT_SELECTION = ("t/integration/test_tasks.py", "t/integration/test_canvas.py")


def celery_sdist(celery_version: str | None = None) -> Path:
    """The tests of the sdist of ``celery_version`` (the installed one by default), downloaded once.

    Only ``t/`` and the pytest configuration are kept: with the sdist's ``celery`` package beside them,
    the suite would import that copy instead of the installed Celery it is meant to judge.
    """
    celery_version = celery_version or version("celery")
    base = cache_dir() / "celery-sdist"
    suite = base / f"suite-{celery_version}"
    if (suite / "t" / "integration" / "conftest.py").is_file():
        return suite
    unpacked = base / f"celery-{celery_version}"
    base.mkdir(parents=True, exist_ok=True)
    archive = base / f"celery-{celery_version}.tar.gz"
    if not archive.is_file():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", str(base),
             f"celery=={celery_version}"],
            check=True, timeout=600,
        )
    with tarfile.open(archive) as tar:
        tar.extractall(base, filter="data")
    staging = base / f"suite-{celery_version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(unpacked / "t", staging / "t")
    shutil.copy2(unpacked / "pyproject.toml", staging / "pyproject.toml")
    staging.rename(suite)
    return suite


@dataclass(frozen=True)
class SuiteRun:
    """One run of the selection: each test's outcome, and where celery-logs wrote (when installed)."""

    outcomes: dict[str, str]
    log_dir: Path | None
    returncode: int


def run_suite(sdist: Path, selection: Sequence[str], *, broker_url: str, workdir: Path, with_celery_logs: bool,
              timeout: float = 3600) -> SuiteRun:
    """Run ``selection`` of the suite in ``sdist`` against ``broker_url`` (Redis broker and backend)."""
    tag = "celery-logs" if with_celery_logs else "released"
    junit = workdir / f"{tag}.xml"
    log_dir = workdir / f"{tag}-records" if with_celery_logs else None
    env = {
        **os.environ,
        "TEST_BROKER": broker_url,
        "TEST_BACKEND": broker_url,
        # The session worker logs at ERROR by default; test_trace_log_arguments checks its INFO lines.
        "WORKER_LOGLEVEL": "INFO",
        # The suite's own Redis client (t/integration/tasks.py) reads these, not TEST_BROKER.
        "REDIS_HOST": urlsplit(broker_url).hostname or "localhost",
        "REDIS_PORT": str(urlsplit(broker_url).port or 6379),
        "PYTHONPATH": os.pathsep.join([str(sdist), str(ROOT)]),
    }
    env.pop("CELERY_SUITE_LOG_DIR", None)
    # Celery's fixtures (celery_session_worker, ...) come from its pytest plugin, which it no longer registers.
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "celery.contrib.pytest",
            "--rootdir", str(sdist),
            "-c", str(sdist / "pyproject.toml"), f"--junitxml={junit}", "-o", "junit_family=xunit2"]
    if log_dir is not None:
        env["CELERY_SUITE_LOG_DIR"] = str(log_dir)
        args += ["-p", "tests.celery_suite.plugin"]
    out = workdir / f"{tag}.out"
    with out.open("wb") as fh:
        proc = subprocess.run([*args, *selection], cwd=sdist, env=env, stdout=fh, stderr=subprocess.STDOUT,
                              timeout=timeout, check=False)
    return SuiteRun(outcomes=_outcomes(junit), log_dir=log_dir, returncode=proc.returncode)


def _outcomes(junit: Path) -> dict[str, str]:
    """``{"t.integration.test_tasks.test_tasks::test_x": "passed" | "failed" | "error" | "skipped"}``."""
    if not junit.is_file():
        return {}
    outcomes: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = {child.tag for child in case}
        outcome = "passed"
        for kind in ("error", "failure", "skipped"):
            if kind in kinds:
                outcome = {"failure": "failed"}.get(kind, kind)
                break
        # A test that errs in teardown after passing appears twice: the worse outcome stands.
        if outcomes.get(name) in (None, "passed", "skipped"):
            outcomes[name] = outcome
    return outcomes


def differences(released: dict[str, str], with_logs: dict[str, str]) -> list[tuple[str, str, str]]:
    """(test, outcome as released, outcome with celery-logs) for every test whose outcome differs."""
    names = sorted(set(released) | set(with_logs))
    return [(n, released.get(n, "absent"), with_logs.get(n, "absent")) for n in names
            if released.get(n, "absent") != with_logs.get(n, "absent")]


def compare(selection: Sequence[str], *, workdir: Path, redis: LocalRedis) -> tuple[SuiteRun, SuiteRun]:
    """Both runs of ``selection``, each on a fresh Redis database."""
    import redis as redis_client

    sdist = celery_sdist()
    runs = []
    for db, with_logs in ((13, False), (14, True)):
        url = f"redis://127.0.0.1:{redis.port}/{db}"
        client = redis_client.Redis.from_url(url)
        client.flushdb()
        try:
            runs.append(run_suite(sdist, selection, broker_url=url, workdir=workdir, with_celery_logs=with_logs))
        finally:
            client.flushdb()
            client.close()
    return runs[0], runs[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.celery_suite.harness", description=__doc__.split("\n")[0])
    parser.add_argument("--select", nargs="+", default=list(DEFAULT_SELECTION), metavar="NODE",
                        help="pytest node ids relative to the sdist (default: test_tasks.py and test_canvas.py)")
    parser.add_argument("--workdir", type=Path, default=Path("celery-suite-output"),
                        help="where the junit files, pytest output and celery-logs records go")
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    server = LocalRedis().start()
    try:
        released, with_logs = compare(args.select, workdir=args.workdir.resolve(), redis=server)
    finally:
        server.stop()
    diff = differences(released.outcomes, with_logs.outcomes)
    counts = {o: sum(1 for v in with_logs.outcomes.values() if v == o)
              for o in ("passed", "failed", "error", "skipped")}
    sys.stdout.write(f"celery {version('celery')}: {len(released.outcomes)} tests as released, "
                     f"{len(with_logs.outcomes)} with celery-logs ({counts}); {len(diff)} differ\n")
    for name, before, after in diff:
        sys.stdout.write(f"  {name}: {before} as released, {after} with celery-logs\n")
    return 1 if diff or not released.outcomes else 0


if __name__ == "__main__":
    sys.exit(main())
