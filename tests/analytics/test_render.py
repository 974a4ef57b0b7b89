"""Every format carries the report's numbers; the HTML page renders in headless Chromium."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from pipelines.analytics.render import RenderError, fmt_duration, fmt_int, fmt_pct, render
from pipelines.analytics.report import Report, ReportSettings, build_report

from .conftest import PREVIOUS, WINDOW, Loaded
from .expected import percentile, stats_by

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(loaded: Loaded) -> Report:
    settings = ReportSettings(window=WINDOW, prefix=loaded.prefix, tasks_index=loaded.tasks_index)
    return build_report(loaded.es, settings, now=WINDOW.end)


def test_json_numbers(report: Report, loaded: Loaded) -> None:
    """JSON holds exact counts and raw nanosecond percentiles for every task, plus errors and lost tasks."""
    data = json.loads(render(report, "json"))
    want = stats_by(loaded.tasks, WINDOW, lambda t: t.name)
    prev = stats_by(loaded.tasks, PREVIOUS, lambda t: t.name)
    rows = {r["key"]: r for r in data["tasks"]}
    assert sorted(rows) == sorted(want)
    for name, row in rows.items():
        w = want[name]
        assert (row["runs"], row["successes"], row["failures"], row["retries"], row["revokes"]) == (
            w.runs,
            w.successes,
            w.failures,
            w.retries,
            w.revokes,
        )
        assert row["prev_runs"] == prev[name].runs
        assert row["run_p95_ns"] == pytest.approx(percentile(w.durations, 95, engine=loaded.engine), rel=1e-9)
        assert row["run_max_ns"] == max(w.durations)
        assert row["wait_p50_ns"] == pytest.approx(percentile(w.waits, 50, engine=loaded.engine), rel=1e-9)
    assert [e["count"] for e in data["errors"]] == [g.count for g in report.errors]
    assert data["errors"][0]["stack_trace"] == report.errors[0].stack_trace
    assert sorted(t["task_id"] for t in data["lost"]) == sorted(t.task_id for t in loaded.current.tasks if t.lost)
    assert {t["class"] for t in data["lost"]} == {"lost"}  # started, early acks
    assert data["lost_classes"] == {"lost": len(data["lost"]), "redelivery-pending": 0, "requeued": 0}
    assert data["recovered"] == {}
    assert data["window"] == {"start": "2026-11-22T06:00:00.000Z", "end": "2026-11-22T12:00:00.000Z"}
    assert sum(b["failures"] for b in data["timeline"]) == data["totals"]["failures"]


def test_csv_sections(report: Report, loaded: Loaded) -> None:
    """CSV gives one section per call with raw numbers; an unknown section is refused by name."""
    want = stats_by(loaded.tasks, WINDOW, lambda t: t.name)
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert {r["key"] for r in rows} == set(want)
    for r in rows:
        w = want[r["key"]]
        assert (int(r["runs"]), int(r["failures"]), int(r["retries"]), int(r["revokes"])) == (
            w.runs,
            w.failures,
            w.retries,
            w.revokes,
        )
        assert float(r["run_p99_ns"]) == pytest.approx(percentile(w.durations, 99, engine=loaded.engine), rel=1e-9)
    errors = list(csv.DictReader(io.StringIO(render(report, "csv", csv_section="errors"))))
    assert [int(e["count"]) for e in errors] == [g.count for g in report.errors]
    assert errors[0]["tasks"] == ";".join(report.errors[0].tasks)
    lost = list(csv.DictReader(io.StringIO(render(report, "csv", csv_section="lost"))))
    assert sorted(r["task_id"] for r in lost) == sorted(t.task_id for t in loaded.current.tasks if t.lost)
    with pytest.raises(RenderError, match="unknown CSV section 'nope'"):
        render(report, "csv", csv_section="nope")


@pytest.mark.parametrize("fmt", ["table", "markdown", "html"])
def test_human_formats_show_every_task_row(report: Report, loaded: Loaded, fmt: str) -> None:
    """Table, Markdown and HTML show each task's counts, failure % and percentiles as formatted numbers."""
    text = render(report, fmt)
    want = stats_by(loaded.tasks, WINDOW, lambda t: t.name)
    for name, w in want.items():
        cells = [
            name,
            fmt_int(w.runs),
            fmt_int(w.successes),
            fmt_int(w.failures),
            fmt_int(w.retries),
            fmt_int(w.revokes),
            fmt_pct(w.failure_pct),
            fmt_duration(percentile(w.durations, 50, engine=loaded.engine)),
            fmt_duration(percentile(w.durations, 95, engine=loaded.engine)),
            fmt_duration(percentile(w.durations, 99, engine=loaded.engine)),
            fmt_duration(max(w.durations)),
        ]
        if fmt == "table":
            pattern = r"\s+".join(re.escape(c) for c in cells)
        elif fmt == "markdown":
            pattern = r" \| ".join(re.escape(c) for c in cells)
        else:
            pattern = r"</td><td[^>]*>".join(re.escape(c) for c in cells)
        assert re.search(pattern, text), f"{fmt}: row of {name} not found"
    for lost in (t for t in loaded.current.tasks if t.lost):
        assert lost.task_id in text
    assert "0 redelivery pending" in text and "0 recovered" in text
    assert report.errors[0].type in text


def test_unknown_format_is_refused(report: Report) -> None:
    """An unknown format names the known ones."""
    with pytest.raises(RenderError, match=r"unknown format 'pdf' \(choose from table, csv, json, markdown, html\)"):
        render(report, "pdf")


def test_html_is_self_contained(report: Report) -> None:
    """The HTML page fetches nothing: no external URL, script or stylesheet link."""
    html = render(report, "html")
    assert "<svg" in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html
    assert "<link" not in html


def _png_pixels(path: Path) -> tuple[int, int, set[bytes]]:
    """Decode an 8-bit RGB/RGBA PNG with zlib only; return width, height and the distinct pixel values."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    prev = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(height):
        ftype = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        if y % 4 == 0:  # a sample of rows is plenty to tell a page from a blank
            colours.update(bytes(line[x : x + 3]) for x in range(0, stride, channels * 2))
        prev = line
    return width, height, colours


def test_html_renders_in_headless_chromium(report: Report, tmp_path: Path) -> None:
    """Chromium renders the page offline and the screenshot has many colours (not blank)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (./run.sh test installs it as root)", pytrace=False)
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    page = tmp_path / "report.html"
    page.write_text(render(report, "html"), encoding="utf-8")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,1600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    width, height, colours = _png_pixels(shot)
    assert (width, height) == (1280, 1600)
    # A blank page has one colour; this one has text, cards, and red/green/amber/blue charts.
    assert len(colours) > 50
    assert bytes((0x2E, 0x9D, 0x5B)) in colours  # the "succeeded" green of the throughput chart
