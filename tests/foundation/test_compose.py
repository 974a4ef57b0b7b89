"""docker-compose.yml can't run here, so check what it names: files, commands, flags, variables."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.cli import build_parser
from pipelines.dev import stack as _devstack
from pipelines.dev.demo_app import build_parser as producer_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]


def _commands() -> list[tuple[str, list[str]]]:
    out = []
    for name, svc in SERVICES.items():
        cmd = svc.get("command")
        if cmd is None:
            continue
        if cmd[:2] == ["sh", "-c"]:
            out += [(name, shlex.split(part)) for part in cmd[2].split("&&")]
        else:
            out.append((name, list(cmd)))
    return out


def test_services_are_the_full_stack() -> None:
    """Elasticsearch, Kibana, Redis, worker, producer, shipper, the one-shot setup and ElastAlert are all there."""
    assert {"elasticsearch", "kibana", "redis", "worker", "producer", "shipper", "setup", "elastalert"} <= set(SERVICES)


def test_elastalert_runs_the_committed_rules_with_the_tested_version() -> None:
    """ElastAlert's image is the version the alerting tests run, and its mounts are the committed files."""
    from pipelines.alerting import ELASTALERT_VERSION

    svc = SERVICES["elastalert"]
    assert svc["image"] == f"jertel/elastalert2:{ELASTALERT_VERSION}"
    mounts = {m.split(":")[1]: m.split(":")[0] for m in svc["volumes"]}
    assert mounts == {
        "/opt/elastalert/config.yaml": "./alerting/elastalert/config.yaml",
        "/opt/elastalert/rules": "./alerting/elastalert/rules",
    }
    for host in mounts.values():
        assert (ROOT / host).exists(), host


def test_elastic_images_match_the_tested_server() -> None:
    """Elasticsearch and Kibana images are the same version as the node the tests run against."""
    for name in ("elasticsearch", "kibana"):
        assert SERVICES[name]["image"].endswith(f":{_devstack.ES_VERSION}")


def test_build_context_and_dockerfile_copies_exist() -> None:
    """The Dockerfile the app services build from exists, and every path it copies exists."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    copies = re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M)
    assert copies
    for line in copies:
        for src in line.split():
            assert (ROOT / src).exists(), src


@pytest.mark.parametrize(("service", "argv"), _commands(), ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_every_command_and_flag_exists(service: str, argv: list[str]) -> None:
    """Each service command is one this project provides, and its flags parse."""
    if argv[0] == "celery-logs":
        args = build_parser().parse_args(argv[1:])
        assert getattr(args, "func", None) is not None
    elif argv[:2] == ["python", "-m"]:
        assert argv[2] == "pipelines.dev.demo_app"
        producer_parser().parse_args(argv[3:])
    elif argv[0] == "celery":
        app = argv[argv.index("-A") + 1]
        assert importlib.util.find_spec(app) is not None
    else:
        pytest.fail(f"{service}: unexpected command {argv[0]!r}")


def test_every_environment_variable_is_read_by_the_code() -> None:
    """Each CELERY_LOGS_* variable the stack sets is read somewhere in the packages."""
    files = [p for d in ("celery_logs", "pipelines") for p in (ROOT / d).rglob("*.py")]
    source = "\n".join(p.read_text(encoding="utf-8") for p in files)
    env = COMPOSE["x-app"]["environment"]
    names = [k for k in env if k.startswith("CELERY_LOGS_")]
    assert names
    for name in names:
        suffix = name.removeprefix("CELERY_LOGS_")
        assert name in source or f'"{suffix}' in source or suffix.lower() in source, name
