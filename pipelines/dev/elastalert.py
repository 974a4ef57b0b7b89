"""ElastAlert 2 in a virtual environment of its own, built once and cached.

ElastAlert 2 pins its own Elasticsearch client (7.10.1, while celery-logs uses 8.x) and imports ``pytz``
without declaring it, so it cannot share the project's environment. :func:`ensure_elastalert` creates
``<cache>/elastalert2-<version>/`` with ``python -m venv``, installs ``elastalert2==<version>`` and
``pytz`` from PyPI with pip, checks that ElastAlert imports, and marks the directory complete; later
calls return at once. A lock file keeps two processes from building it at the same time.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import sys
from pathlib import Path

from pipelines.alerting import ELASTALERT_VERSION
from pipelines.dev.stack import DevStackError, cache_dir

_COMPLETE = ".celery-logs-complete"


def elastalert_home(version: str = ELASTALERT_VERSION) -> Path:
    """Where the environment of ElastAlert ``version`` lives."""
    return cache_dir() / f"elastalert2-{version}"


def ensure_elastalert(version: str = ELASTALERT_VERSION, *, python: str | None = None) -> Path:
    """The ``bin`` directory of a working ElastAlert ``version`` (``elastalert``, ``python``), built if needed."""
    home = elastalert_home(version)
    if (home / _COMPLETE).is_file():
        return home / "bin"
    home.parent.mkdir(parents=True, exist_ok=True)
    with (home.parent / f"elastalert2-{version}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / _COMPLETE).is_file():
            return home / "bin"
        shutil.rmtree(home, ignore_errors=True)  # a build that was interrupted
        steps = [
            [python or sys.executable, "-m", "venv", str(home)],
            [str(home / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
             f"elastalert2=={version}", "pytz"],
            [str(home / "bin" / "python"), "-c", "import elastalert.elastalert, pytz"],
        ]  # fmt: skip
        for step in steps:
            proc = subprocess.run(step, capture_output=True, text=True, check=False, timeout=1200)
            if proc.returncode != 0:
                tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
                raise DevStackError(f"cannot build ElastAlert {version} in {home}: {tail}")
        (home / _COMPLETE).write_text(version + "\n", encoding="utf-8")
    return home / "bin"
