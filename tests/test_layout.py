"""The shape of pipelines/: wings with small faces, and imports that run one way.

cli -> dev -> (ship, analytics, kibana, alerting) -> the shared top modules -> celery_logs. A wing uses another
wing only through its ``__init__`` (its face); nothing imports cli; celery_logs imports nothing of
pipelines. These tests read the source (``ast``), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = ROOT / "pipelines"

WINGS = ("ship", "analytics", "kibana", "alerting", "dev", "cli")
#: The top modules of pipelines/ that several wings share; nothing else may stand loose at the top.
SHARED = ("_connection", "_engine", "_errors", "_prune", "_setup")

#: What each layer may import (besides itself and the standard library / third parties).
ALLOWED: dict[str, frozenset[str]] = {
    "cli": frozenset({"dev", "ship", "analytics", "kibana", "alerting", "shared", "celery_logs"}),
    "dev": frozenset({"ship", "analytics", "kibana", "alerting", "shared", "celery_logs"}),
    "ship": frozenset({"shared", "celery_logs"}),
    "analytics": frozenset({"shared", "celery_logs"}),
    "kibana": frozenset({"shared", "celery_logs"}),
    "alerting": frozenset({"shared", "celery_logs"}),
    "shared": frozenset({"shared", "celery_logs"}),
    "face": frozenset({"ship", "analytics", "kibana", "shared", "celery_logs"}),
    "celery_logs": frozenset({"celery_logs"}),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] == "celery_logs":
        return "celery_logs"
    if len(parts) == 1:
        return "face"
    if parts[1] in WINGS:
        return parts[1]
    return "shared"


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every project module ``path`` imports (``from a import b`` names ``a.b`` when that is a module)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # A face may export a function named like one of its modules (analytics.render): what is
            # imported from a face is the face's.
            is_face = node.module.split(".")[:1] == ["pipelines"] and node.module.count(".") == 1
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((node.lineno, sub if _is_module(sub) and not is_face else node.module))
    return [(line, name) for line, name in found if name.split(".")[0] in ("pipelines", "celery_logs")]


def _sources() -> list[Path]:
    return sorted([*PIPELINES.rglob("*.py"), *(ROOT / "celery_logs").rglob("*.py")])


def _violations() -> list[str]:
    bad: list[str] = []
    for path in _sources():
        source = _module_name(path)
        src_layer = _layer(source)
        for line, target in _imports(path):
            dst_layer = _layer(target)
            where = f"{path.relative_to(ROOT)}:{line} imports {target}"
            if dst_layer == src_layer:
                continue
            if dst_layer not in ALLOWED[src_layer]:
                bad.append(f"{where} ({src_layer} may not import {dst_layer})")
            elif dst_layer in WINGS and target != f"pipelines.{dst_layer}":
                bad.append(f"{where} (another wing is used through its face, pipelines.{dst_layer})")
    return bad


def test_imports_run_one_way() -> None:
    """No module of pipelines/ or celery_logs/ imports against the direction, or past another wing's face."""
    assert _violations() == []


def test_the_direction_check_sees_a_wrong_import(tmp_path: Path) -> None:
    """The checker flags an import against the direction, and a cross-wing import past the face."""
    assert _layer("pipelines.ship.reader") == "ship"
    assert _layer("pipelines._setup") == "shared"
    assert _layer("pipelines") == "face"
    assert "analytics" not in ALLOWED["ship"]
    assert "cli" not in set().union(*ALLOWED.values())
    probe = tmp_path / "probe.py"
    probe.write_text("from pipelines.analytics.lost import find_lost_tasks\nfrom pipelines import ship\nimport os\n")
    assert _imports(probe) == [(1, "pipelines.analytics.lost"), (2, "pipelines.ship")]


def test_the_top_holds_only_the_wings_and_the_shared_modules() -> None:
    """pipelines/ holds the six wings as packages and only the shared modules beside __init__."""
    loose = sorted(p.stem for p in PIPELINES.glob("*.py") if p.name != "__init__.py")
    assert loose == list(SHARED)
    for wing in WINGS:
        assert (PIPELINES / wing / "__init__.py").is_file(), wing


@pytest.mark.parametrize("wing", WINGS)
def test_each_wing_has_a_small_face(wing: str) -> None:
    """Each wing's __init__ names what others may use in __all__, and every name is there."""
    module = importlib.import_module(f"pipelines.{wing}")
    assert module.__all__
    for name in module.__all__:
        assert hasattr(module, name), f"pipelines.{wing}.{name}"


def test_the_public_face_of_pipelines_is_pinned() -> None:
    """pipelines.__all__ is the names from before the wings, plus entity-index pruning."""
    import pipelines

    assert pipelines.__all__ == [
        "FORMATS", "BulkSink", "ElasticsearchSink", "ErrorGroup", "Filters", "Hit", "ImportReport",
        "KibanaClient", "KibanaSettings", "LostTask", "MarkResult", "NullSink", "PrunePlan", "Report",
        "ReportSettings", "RunStats", "SetupResult", "ShipStats", "Shipper", "ShipperConfig", "ShipperError",
        "TaskPruneResult", "TaskTimeline", "Window", "build_objects", "build_report", "find_lost_tasks", "install",
        "mark_lost_tasks", "parse_keep", "prune_apply", "prune_plan", "prune_tasks", "render", "report_to_dict",
        "search", "task_timeline",
    ]  # fmt: skip
    for name in pipelines.__all__:
        assert hasattr(pipelines, name), name
