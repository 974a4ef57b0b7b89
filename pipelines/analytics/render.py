"""Render a :class:`pipelines.analytics.report.Report` as a terminal table, CSV, JSON, Markdown or one HTML file.

Each section is a table described once as data (:data:`SECTIONS`: column name, title, value getter,
formatter), and every format reads that description, so a column added once shows everywhere with the
same meaning. CSV and JSON carry raw numbers (nanoseconds, exact counts); the human formats round them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import escape
from typing import Any, Final

from pipelines.analytics.report import ErrorGroup, Report, RunStats
from pipelines.analytics.timeparse import iso
from pipelines.analytics.versions import Comparison, VersionRow, VersionStats

FORMATS: Final = ("table", "csv", "json", "markdown", "html")


class RenderError(ValueError):
    """An unknown format or CSV section; the message lists the known ones."""


# --- value formatting ----------------------------------------------------------------------------


def fmt_duration(ns: float | None) -> str:
    """Nanoseconds as a short human duration: ``850 µs``, ``132 ms``, ``2.46 s``, ``3 m 05 s``."""
    if ns is None:
        return "–"
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.0f} ms" if ns >= 10_000_000 else f"{ns / 1_000_000:.1f} ms"
    seconds = ns / 1e9
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} m {secs:02d} s"


def fmt_pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}%"


def fmt_change(value: float | None, unit: str = "%") -> str:
    if value is None:
        return "–"
    return f"{'+' if value > 0 else ''}{value:.1f}{unit}" if abs(value) >= 0.05 else f"0{unit}"


def fmt_time(t: datetime | None) -> str:
    return "–" if t is None else t.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def fmt_int(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _raw(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass(frozen=True, slots=True)
class Column:
    """One column: machine name (CSV/JSON), human title, value getter, human formatter."""

    name: str
    title: str
    get: Callable[[Any], Any]
    fmt: Callable[[Any], str] = str
    numeric: bool = False


def _change_pt(value: float | None) -> str:
    return fmt_change(value, " pt")


def _stats_columns(key_title: str) -> tuple[Column, ...]:
    return (
        Column("key", key_title, lambda s: s.key),
        Column("runs", "runs", lambda s: s.runs, fmt_int, True),
        Column("successes", "ok", lambda s: s.successes, fmt_int, True),
        Column("failures", "failed", lambda s: s.failures, fmt_int, True),
        Column("retries", "retried", lambda s: s.retries, fmt_int, True),
        Column("revokes", "revoked", lambda s: s.revokes, fmt_int, True),
        Column("failure_pct", "fail %", lambda s: s.failure_pct, fmt_pct, True),
        Column("run_p50_ns", "p50", lambda s: s.run_p50, fmt_duration, True),
        Column("run_p95_ns", "p95", lambda s: s.run_p95, fmt_duration, True),
        Column("run_p99_ns", "p99", lambda s: s.run_p99, fmt_duration, True),
        Column("run_max_ns", "max", lambda s: s.run_max, fmt_duration, True),
        Column("wait_p50_ns", "wait p50", lambda s: s.wait_p50, fmt_duration, True),
        Column("wait_p95_ns", "wait p95", lambda s: s.wait_p95, fmt_duration, True),
        Column("prev_runs", "prev runs", lambda s: s.previous.runs if s.previous else None, fmt_int, True),
        Column("runs_change_pct", "runs Δ", lambda s: s.runs_change_pct, fmt_change, True),
        Column("failure_pct_change_pt", "fail Δ", lambda s: s.failure_pct_change, _change_pt, True),
        Column("run_p95_change_pct", "p95 Δ", lambda s: s.p95_change_pct, fmt_change, True),
    )


def _first_line(text: str, limit: int = 80) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


ERROR_COLUMNS: Final = (
    Column("type", "exception", lambda e: e.type),
    Column("message", "message", lambda e: e.message, _first_line),
    Column("count", "count", lambda e: e.count, fmt_int, True),
    Column("tasks", "tasks", lambda e: e.tasks, ", ".join),
    Column("first_seen", "first seen", lambda e: e.first_seen, fmt_time),
    Column("last_seen", "last seen", lambda e: e.last_seen, fmt_time),
    Column("grouping_key", "group", lambda e: e.grouping_key, lambda v: v[:12]),
    Column("example_task_id", "latest task", lambda e: e.example_task_id),
)
LOST_COLUMNS: Final = (
    Column("task_id", "task id", lambda t: t.task_id),
    Column("name", "task", lambda t: t.name),
    Column("worker", "worker", lambda t: t.worker),
    Column("queue", "queue", lambda t: t.queue),
    Column("since", "in flight since", lambda t: t.since, fmt_time),
    Column("reason", "reason", lambda t: t.reason),
    Column("class", "class", lambda t: t.lost_class),
    Column("worker_gone_at", "worker gone at", lambda t: t.worker_gone_at, fmt_time),
)
SLOW_COLUMNS: Final = (
    Column("task_id", "task id", lambda r: r.task_id),
    Column("name", "task", lambda r: r.name),
    Column("duration_ns", "run time", lambda r: r.duration_ns, fmt_duration, True),
    Column("outcome", "outcome", lambda r: r.outcome),
    Column("worker", "worker", lambda r: r.worker),
    Column("queue", "queue", lambda r: r.queue),
    Column("ended_at", "ended", lambda r: r.ended_at, fmt_time),
)


PERIODIC_COLUMNS: Final = (
    Column("entry", "entry", lambda p: p.entry),
    Column("task", "task", lambda p: p.task),
    Column("schedule", "schedule", lambda p: p.schedule),
    Column("expected", "expected", lambda p: p.expected, fmt_int, True),
    Column("sent", "sent", lambda p: p.sent, fmt_int, True),
    Column("started", "started", lambda p: p.started, fmt_int, True),
    Column("succeeded", "ok", lambda p: p.succeeded, fmt_int, True),
    Column("failed", "failed", lambda p: p.failed, fmt_int, True),
    Column("missed", "missed", lambda p: p.missed, fmt_int, True),
    Column("stuck", "stuck", lambda p: p.stuck, fmt_int, True),
    Column("worst_lateness", "worst late", lambda p: p.worst_lateness, fmt_duration, True),
    Column("last_success", "last success", lambda p: p.last_success, fmt_time),
)


DEPTH_COLUMNS: Final = (
    Column("queue", "queue", lambda q: q.queue),
    Column("consumers", "consumers", lambda q: q.consumers, fmt_int, True),
    Column("latest", "depth now", lambda q: q.latest, fmt_int, True),
    Column("max", "max depth", lambda q: q.max, fmt_int, True),
    Column("no_consumer", "flag", lambda q: q.no_consumer, lambda v: "NO CONSUMER" if v else ""),
    Column("trend", "depth over the window", lambda q: q.trend),
    Column("last_sample", "last sample", lambda q: q.last_sample, fmt_time),
)


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    title: str
    columns: tuple[Column, ...]
    rows: Callable[[Report], Sequence[Any]]
    empty: str

    def empty_text(self, report: Report) -> str:
        """What an empty section says (lost tasks may not have been looked for at all)."""
        if self.name == "lost" and report.lost_note:
            return report.lost_note
        if self.name == "periodic" and report.periodic_note:
            return report.periodic_note
        return self.empty


SECTIONS: Final = (
    Section("tasks", "Tasks", _stats_columns("task"), lambda r: r.tasks, "no task records in this window"),
    Section("errors", "Top exception groups", ERROR_COLUMNS, lambda r: r.errors, "no failures"),
    Section("lost", "Lost tasks", LOST_COLUMNS, lambda r: r.lost, "no lost tasks"),
    Section("periodic", "Periodic tasks", PERIODIC_COLUMNS, lambda r: r.periodic, "no periodic tasks"),
    Section("slowest", "Slowest runs", SLOW_COLUMNS, lambda r: r.slowest, "no runs"),
    Section("queue_depth", "Queue depth", DEPTH_COLUMNS, lambda r: r.queue_depths,
            "no queue depth samples (workers sample at each heartbeat)"),
    Section("workers", "Workers", _stats_columns("worker"), lambda r: r.workers, "no workers"),
    Section("queues", "Queues", _stats_columns("queue"), lambda r: r.queues, "no queues"),
)
SECTIONS_BY_NAME: Final = {s.name: s for s in SECTIONS}
#: Name of the section :func:`sections` adds for ``--by`` / ``--compare``.
COMPARISON: Final = "by_version"
#: Per compared value: (column suffix, title, statistic, formatter).
_VERSION_STATS: Final[tuple[tuple[str, str, Callable[[VersionStats], Any], Callable[[Any], str]], ...]] = (
    ("runs", "runs", lambda st: st.runs, fmt_int),
    ("failure_pct", "fail %", lambda st: st.failure_pct, fmt_pct),
    ("run_p50_ns", "p50", lambda st: st.run_p50, fmt_duration),
    ("run_p95_ns", "p95", lambda st: st.run_p95, fmt_duration),
)


def _stat(value: str, get: Callable[[VersionStats], Any]) -> Callable[[VersionRow], Any]:
    def read(row: VersionRow) -> Any:
        st = row.get(value)
        return None if st is None else get(st)

    return read


def _change(
    first: str, second: str, get: Callable[[VersionStats], Any], *, relative: bool
) -> Callable[[VersionRow], Any]:
    def read(row: VersionRow) -> Any:
        a, b = row.get(first), row.get(second)
        old, new = (get(a) if a else None), (get(b) if b else None)
        if old is None or new is None or (relative and not old):
            return None
        return 100.0 * (new - old) / old if relative else new - old

    return read


def comparison_section(c: Comparison) -> Section:
    """The tasks side by side, one group of columns per compared value (and A → B changes for ``--compare``)."""
    cols = [Column("task", "task", lambda r: r.task)]
    for value in c.values:
        cols += [Column(f"{value}:{name}", f"{value} {title}", _stat(value, get), fmt, True)
                 for name, title, get, fmt in _VERSION_STATS]
    if c.pairwise and len(c.values) == 2:
        a, b = c.values
        cols += [
            Column("failure_pct_change_pt", "fail Δ", _change(a, b, lambda st: st.failure_pct, relative=False),
                   _change_pt, True),
            Column("run_p50_change_pct", "p50 Δ", _change(a, b, lambda st: st.run_p50, relative=True), fmt_change,
                   True),
            Column("run_p95_change_pct", "p95 Δ", _change(a, b, lambda st: st.run_p95, relative=True), fmt_change,
                   True),
        ]
    return Section(COMPARISON, f"Tasks by {c.field}", tuple(cols),
                   lambda r: r.comparison.rows if r.comparison else (), f"no runs for any {c.field} asked for")


def sections(report: Report) -> tuple[Section, ...]:
    """The report's sections: the fixed ones, with the comparison after the tasks when one was asked for."""
    if report.comparison is None:
        return SECTIONS
    return (SECTIONS[0], comparison_section(report.comparison), *SECTIONS[1:])
#: The terminal and Markdown tables leave out columns a person rarely needs there.
_COMPACT_SKIP: Final = frozenset({"prev_runs", "grouping_key", "example_task_id"})


def _header_lines(report: Report) -> list[str]:
    t = report.totals
    filters = "; ".join(f"{k}={','.join(v)}" for k, v in report.filters.items()) or "none"
    return [
        f"celery-logs report  {fmt_time(report.window.start)} → {fmt_time(report.window.end)} UTC"
        f"  (previous: {fmt_time(report.previous_window.start)} → {fmt_time(report.previous_window.end)})",
        f"indices {report.index_prefix}-*   filters: {filters}",
        f"runs {fmt_int(t.runs)} ({fmt_change(t.runs_change_pct)})   ok {fmt_int(t.successes)}   "
        f"failed {fmt_int(t.failures)}   retried {fmt_int(t.retries)}   revoked {fmt_int(t.revokes)}   "
        f"fail {fmt_pct(t.failure_pct)} ({_change_pt(t.failure_pct_change)})   "
        f"p50 {fmt_duration(t.run_p50)}   p95 {fmt_duration(t.run_p95)}   p99 {fmt_duration(t.run_p99)}   "
        f"lost {_lost_count(report)}",
        f"{_pending_count(report)} redelivery pending   {report.requeued} requeued (back in the queue, not listed)   "
        f"{sum(report.recovered.values())} recovered (delivered or run again)",
    ]


def _lost_count(report: Report) -> int:
    return sum(t.lost_class == "lost" for t in report.lost)


def _pending_count(report: Report) -> int:
    return sum(t.lost_class == "redelivery-pending" for t in report.lost)


# --- text formats --------------------------------------------------------------------------------


def _cells(section: Section, report: Report, *, compact: bool) -> tuple[list[Column], list[list[str]]]:
    cols = [c for c in section.columns if not (compact and c.name in _COMPACT_SKIP)]
    rows = [[c.fmt(c.get(item)) for c in cols] for item in section.rows(report)]
    return cols, rows


def render_table(report: Report) -> str:
    out = [*_header_lines(report), ""]
    for section in sections(report):
        cols, rows = _cells(section, report, compact=True)
        extra = ""
        if section.name == "errors" and report.error_groups_total > len(report.errors):
            extra = f" (top {len(report.errors)} of {report.error_groups_total})"
        out.append(f"== {section.title}{extra} ==")
        if not rows:
            out += [f"  {section.empty_text(report)}", ""]
            continue
        widths = [max(len(c.title), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]

        def line(values: list[str], cols: list[Column] = cols, widths: list[int] = widths) -> str:
            return "  ".join(
                v.rjust(w) if c.numeric else v.ljust(w) for v, c, w in zip(values, cols, widths, strict=True)
            ).rstrip()

        out.append(line([c.title for c in cols]))
        out.append("  ".join("-" * w for w in widths))
        out += [line(r) for r in rows]
        out.append("")
    if report.errors:
        e = report.errors[0]
        out += [f"== Latest traceback of the top group ({e.type}, task {e.example_task_id}) ==", e.stack_trace, ""]
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(report: Report) -> str:
    head = _header_lines(report)
    out = [f"# {head[0]}", "", f"{head[1]}", "", f"**{head[2]}**", "", head[3], ""]
    for section in sections(report):
        cols, rows = _cells(section, report, compact=True)
        out += [f"## {section.title}", ""]
        if not rows:
            out += [f"_{section.empty_text(report)}_", ""]
            continue
        out.append("| " + " | ".join(c.title for c in cols) + " |")
        out.append("|" + "|".join("---:" if c.numeric else "---" for c in cols) + "|")
        out += ["| " + " | ".join(_md_escape(v) for v in r) + " |" for r in rows]
        out.append("")
        if section.name == "errors":
            for e in report.errors:
                out += [
                    f"<details><summary>{escape(e.type)} × {e.count}</summary>",
                    "",
                    "```",
                    e.stack_trace,
                    "```",
                    "",
                    "</details>",
                    "",
                ]
    return "\n".join(out)


def render_csv(report: Report, *, section: str = "tasks") -> str:
    """One section as CSV (raw numbers, nanoseconds), for spreadsheets; ``section`` picks which."""
    by_name = {s.name: s for s in sections(report)}
    sec = by_name.get(section)
    if sec is None:
        raise RenderError(f"unknown CSV section {section!r} (choose from {', '.join(by_name)})")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([c.name for c in sec.columns])
    for item in sec.rows(report):
        row = []
        for c in sec.columns:
            value = _raw(c.get(item))
            row.append(";".join(value) if isinstance(value, list) else "" if value is None else value)
        writer.writerow(row)
    return buf.getvalue()


def report_to_dict(report: Report) -> dict[str, Any]:
    """The whole report as plain JSON-able data (raw numbers; times ISO-8601 UTC)."""
    out: dict[str, Any] = {
        "window": {"start": iso(report.window.start), "end": iso(report.window.end)},
        "previous_window": {"start": iso(report.previous_window.start), "end": iso(report.previous_window.end)},
        "generated_at": iso(report.generated_at),
        "index_prefix": report.index_prefix,
        "filters": report.filters,
        "totals": _row(_stats_columns("key"), report.totals),
        "error_groups_total": report.error_groups_total,
        "bucket_seconds": int(report.bucket.total_seconds()),
        "lost_note": report.lost_note,
        "lost_classes": {"lost": _lost_count(report), "redelivery-pending": _pending_count(report),
                         "requeued": report.requeued},
        "recovered": dict(sorted(report.recovered.items())),
        "periodic_note": report.periodic_note,
        "timeline": [
            {"start": iso(b.start), "successes": b.successes, "failures": b.failures, "retries": b.retries}
            for b in report.timeline
        ],
    }
    for section in SECTIONS:
        out[section.name] = [_row(section.columns, item) for item in section.rows(report)]
    for group, entry in zip(report.errors, out["errors"], strict=True):
        entry["stack_trace"] = group.stack_trace
    for depth, item in zip(report.queue_depths, out["queue_depth"], strict=True):
        item["series"] = [{"start": iso(t), "depth": d} for t, d in depth.series]
    if report.comparison is not None:
        out[COMPARISON] = _comparison_dict(report.comparison)
    return out


def _comparison_dict(c: Comparison) -> dict[str, Any]:
    """``by_version`` in JSON: per task, an object per compared value (and the changes for ``--compare``)."""
    section = comparison_section(c)
    changes = [col for col in section.columns if col.name.endswith(("_change_pt", "_change_pct"))]
    tasks = []
    for row in c.rows:
        item: dict[str, Any] = {"task": row.task, "versions": {
            value: {name: _raw(get(st)) for name, _t, get, _f in _VERSION_STATS} | {
                "successes": st.successes, "failures": st.failures, "retries": st.retries}
            for value, st in row.stats
        }}
        item |= {col.name: _raw(col.get(row)) for col in changes}
        tasks.append(item)
    return {"field": c.field, "values": list(c.values), "tasks": tasks}


def _row(columns: Sequence[Column], item: Any) -> dict[str, Any]:
    return {c.name: _raw(c.get(item)) for c in columns}


def render_json(report: Report) -> str:
    return json.dumps(report_to_dict(report), indent=2, ensure_ascii=False) + "\n"


# --- HTML ----------------------------------------------------------------------------------------

_CSS: Final = """
:root{--ok:#2e9d5b;--fail:#d64541;--retry:#e0a526;--ink:#1d2330;--mute:#6b7385;--line:#e3e6ec;--bg:#f6f7f9}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:var(--ink);background:var(--bg)}header{background:#1d2330;color:#fff;padding:20px 32px}
header h1{margin:0 0 4px;font-size:22px}header p{margin:0;color:#b9c0cf}main{padding:20px 32px;max-width:1400px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin-bottom:20px}.card{background:#fff;border:1px solid var(--line);
border-radius:8px;padding:12px 16px;min-width:140px}.card b{display:block;font-size:24px}.card span{color:var(--mute)}
.card.bad b{color:var(--fail)}.card small{display:block;color:var(--mute)}
section{background:#fff;border:1px solid var(--line);border-radius:8px;padding:16px 20px;margin-bottom:20px}
h2{margin:0 0 12px;font-size:17px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{padding:5px 8px;border-bottom:1px solid var(--line);text-align:left;white-space:nowrap}
th{color:var(--mute);font-weight:600}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.bad td.fp{color:var(--fail);font-weight:600}.empty{color:var(--mute);font-style:italic}
pre{background:#1d2330;color:#e8ebf2;padding:12px;border-radius:6px;overflow:auto;font-size:12px}
details summary{cursor:pointer;color:#3461c1}.legend span{display:inline-block;margin-right:14px;color:var(--mute)}
.legend i{display:inline-block;width:10px;height:10px;margin-right:5px;border-radius:2px}
.charts{display:grid;grid-template-columns:1fr 1fr;gap:20px}@media(max-width:1000px){.charts{grid-template-columns:1fr}}
div.scroll{overflow-x:auto}
svg text{font:11px system-ui,sans-serif;fill:#6b7385}
"""


def _svg_timeline(report: Report, *, width: int = 640, height: int = 240) -> str:
    buckets = report.timeline
    if not buckets:
        return '<p class="empty">no data</p>'
    left, bottom, top = 44, 26, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max((b.successes + b.failures + b.retries) for b in buckets) or 1
    bar_w = plot_w / len(buckets)
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="runs over time">']
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ec"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{round(peak * frac)}</text>')
    for i, b in enumerate(buckets):
        x = left + i * bar_w
        y = top + plot_h
        for count, colour in ((b.successes, "var(--ok)"), (b.retries, "var(--retry)"), (b.failures, "var(--fail)")):
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            parts.append(
                f'<rect x="{x + 0.5:.1f}" y="{y:.1f}" width="{max(bar_w - 1, 0.6):.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(fmt_time(b.start))}: {count}</title></rect>'
            )
    step = max(1, len(buckets) // 6)
    for i in range(0, len(buckets), step):
        label = buckets[i].start.strftime("%H:%M" if report.bucket < timedelta(days=1) else "%m-%d")
        parts.append(f'<text x="{left + i * bar_w:.1f}" y="{height - 8}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


_DEPTH_COLOURS: Final = ("#3461c1", "#d64541", "#2e9d5b", "#e0a526", "#7b4fc9", "#1b9aaa", "#c2185b", "#6b7385")


def _svg_depth(report: Report, *, width: int = 1300, height: int = 240) -> str:
    """Depth per queue over the window: one line per queue (the largest depth any worker saw per bucket)."""
    queues = report.queue_depths[: len(_DEPTH_COLOURS)]
    count = max(1, math.ceil(report.window.length / report.bucket))
    left, bottom, top = 44, 26, 10
    plot_w, plot_h = width - left - 160, height - bottom - top
    peak = max((q.max for q in queues), default=0) or 1
    step_w = plot_w / count
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="queue depth over time">']
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ec"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{round(peak * frac)}</text>')
    for n, (q, colour) in enumerate(zip(queues, _DEPTH_COLOURS, strict=False)):
        points = []
        for at, depth in q.series:
            i = int((at - report.window.start) / report.bucket)
            points.append(f"{left + (i + 0.5) * step_w:.1f},{top + plot_h * (1 - depth / peak):.1f}")
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}">'
                     f"<title>{escape(q.queue)}</title></polyline>")
        parts.append(f'<text x="{left + plot_w + 12}" y="{top + 14 + 16 * n}" fill="{colour}">'
                     f"{escape(q.queue)}{' (no consumer)' if q.no_consumer else ''}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _svg_failures(report: Report, *, width: int = 640, height: int = 240) -> str:
    buckets = report.timeline
    if not buckets:
        return '<p class="empty">no data</p>'
    left, bottom, top = 44, 26, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max(b.failures for b in buckets) or 1
    n = len(buckets)
    points = " ".join(
        f"{left + plot_w * (i + 0.5) / n:.1f},{top + plot_h * (1 - b.failures / peak):.1f}"
        for i, b in enumerate(buckets)
    )
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="failures over time">']
    for frac in (0.0, 0.5, 1.0):
        y = top + plot_h * (1 - frac)
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e6ec"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{round(peak * frac)}</text>')
    base = f"{left + plot_w * 0.5 / n:.1f},{top + plot_h} "
    end = f" {left + plot_w * (n - 0.5) / n:.1f},{top + plot_h}"
    parts.append(f'<polygon points="{base}{points}{end}" fill="#d64541" fill-opacity="0.15"/>')
    parts.append(f'<polyline points="{points}" fill="none" stroke="var(--fail)" stroke-width="2"/>')
    step = max(1, n // 6)
    for i in range(0, n, step):
        label = buckets[i].start.strftime("%H:%M" if report.bucket < timedelta(days=1) else "%m-%d")
        parts.append(f'<text x="{left + plot_w * i / n:.1f}" y="{height - 8}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_percentiles(report: Report, *, width: int = 1300) -> str:
    tasks = [t for t in report.tasks if t.run_p50 is not None]
    if not tasks:
        return '<p class="empty">no runs</p>'
    row_h, label_w, top = 26, 200, 8
    height = top + row_h * len(tasks) + 24
    plot_w = width - label_w - 330
    peak = max(t.run_max or t.run_p99 or 0.0 for t in tasks) or 1.0
    parts = [f'<svg viewBox="0 0 {width} {height}" width="100%" role="img" aria-label="run time per task">']
    for i, t in enumerate(tasks):
        y = top + i * row_h
        parts.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(t.key)}</text>')
        segments = (
            (t.run_max, "#dfe3ea", "max"),
            (t.run_p99, "#9fb4e0", "p99"),
            (t.run_p95, "#5b82d6", "p95"),
            (t.run_p50, "#2c4f9e", "p50"),
        )
        for value, colour, label in segments:
            if value is None:
                continue
            w = max(plot_w * value / peak, 1.0)
            parts.append(
                f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 8}" fill="{colour}" rx="2">'
                f"<title>{escape(t.key)} {label}: {fmt_duration(value)}</title></rect>"
            )
        parts.append(
            f'<text x="{label_w + plot_w + 12}" y="{y + 16}">'
            f"p50 {fmt_duration(t.run_p50)} · p95 {fmt_duration(t.run_p95)} · p99 {fmt_duration(t.run_p99)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _html_table(section: Section, report: Report) -> str:
    rows = section.rows(report)
    if not rows:
        return f'<p class="empty">{escape(section.empty_text(report))}</p>'
    cols = [c for c in section.columns if c.name != "prev_runs"]
    head = "".join(
        f'<th class="n">{escape(c.title)}</th>' if c.numeric else f"<th>{escape(c.title)}</th>" for c in cols
    )
    body = []
    for item in rows:
        bad = isinstance(item, RunStats) and (item.failure_pct or 0) >= 5.0
        cells = []
        for c in cols:
            cls = " ".join(x for x in ("n" if c.numeric else "", "fp" if c.name == "failure_pct" else "") if x)
            cells.append(
                f'<td class="{cls}">{escape(c.fmt(c.get(item)))}</td>'
                if cls
                else f"<td>{escape(c.fmt(c.get(item)))}</td>"
            )
        row_class = ' class="bad"' if bad else ""
        body.append(f"<tr{row_class}>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _error_details(errors: Sequence[ErrorGroup]) -> str:
    return "".join(
        f"<details><summary>{escape(e.type)} × {e.count} — latest in task {escape(e.example_task_id)}</summary>"
        f"<pre>{escape(e.stack_trace)}</pre></details>"
        for e in errors
    )


def _card(value: str, label: str, note: str = "", *, bad: bool = False) -> str:
    return (
        f'<div class="card{" bad" if bad else ""}"><b>{escape(value)}</b><span>{escape(label)}</span>'
        f"{f'<small>{escape(note)}</small>' if note else ''}</div>"
    )


def render_html(report: Report) -> str:
    """One self-contained page: inline CSS and SVG, no script, nothing fetched from the network."""
    t = report.totals
    head = _header_lines(report)
    cards = "".join(
        (
            _card(fmt_int(t.runs), "runs", f"{fmt_change(t.runs_change_pct)} vs previous"),
            _card(fmt_int(t.failures), "failures", f"{fmt_pct(t.failure_pct)} of finished", bad=t.failures > 0),
            _card(fmt_int(t.retries), "retries"),
            _card(fmt_int(t.revokes), "revoked"),
            _card(fmt_duration(t.run_p50), "run time p50"),
            _card(fmt_duration(t.run_p95), "run time p95", f"{fmt_change(t.p95_change_pct)} vs previous"),
            _card(str(_lost_count(report)), "lost tasks",
                  f"{_pending_count(report)} redelivery pending, {report.requeued} requeued, "
                  f"{sum(report.recovered.values())} recovered", bad=_lost_count(report) > 0),
            _card(str(report.error_groups_total), "exception groups"),
        )
    )
    legend = (
        '<p class="legend"><span><i style="background:var(--ok)"></i>succeeded</span>'
        '<span><i style="background:var(--retry)"></i>retried</span>'
        '<span><i style="background:var(--fail)"></i>failed</span>'
        f"<span>per {escape(_bucket_label(report.bucket))}</span></p>"
    )
    depth_chart = (
        f"<section><h2>Queue depth (the largest any worker saw, per {escape(_bucket_label(report.bucket))})</h2>"
        f"{_svg_depth(report)}</section>" if report.queue_depths else ""
    )
    parts = []
    for section in sections(report):
        extra = _error_details(report.errors) if section.name == "errors" else ""
        parts.append(f"<section><h2>{escape(section.title)}</h2>{_html_table(section, report)}{extra}</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Celery report {escape(fmt_time(report.window.start))} – {escape(fmt_time(report.window.end))}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>Celery tasks, {escape(fmt_time(report.window.start))} → {escape(fmt_time(report.window.end))}"
        f" UTC</h1><p>{escape(head[1])} · generated {escape(fmt_time(report.generated_at))} UTC</p></header><main>"
        f'<div class="cards">{cards}</div>'
        '<div class="charts">'
        f"<section><h2>Throughput</h2>{legend}{_svg_timeline(report)}</section>"
        f"<section><h2>Failures over time</h2>{_svg_failures(report)}</section></div>"
        f"<section><h2>Run time per task (p50 · p95 · p99 · max)</h2>{_svg_percentiles(report)}</section>"
        f"{depth_chart}{''.join(parts)}</main></body></html>\n"
    )


def _bucket_label(bucket: timedelta) -> str:
    minutes = int(bucket.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 1440:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} d"


RENDERERS: Final[dict[str, Callable[[Report], str]]] = {
    "table": render_table,
    "csv": render_csv,
    "json": render_json,
    "markdown": render_markdown,
    "html": render_html,
}


def render(report: Report, fmt: str, *, csv_section: str = "tasks") -> str:
    """The report in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "csv":
        return render_csv(report, section=csv_section)
    renderer = RENDERERS.get(fmt)
    if renderer is None:
        raise RenderError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    return renderer(report)
