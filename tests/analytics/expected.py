"""The right answers, computed from the generated ground truth in plain Python (no Elasticsearch)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from pipelines.analytics.timeparse import Window
from pipelines.dev.synth import SynthTask


def percentile(values: list[int], q: float, *, engine: str = "elasticsearch") -> float | None:
    """What the engine returns while its t-digest keeps every sample: Elasticsearch interpolates between
    closest ranks; OpenSearch's t-digest puts each sample at the middle of its rank (the "Hazen" rule)."""
    if not values:
        return None
    s = sorted(values)
    if engine == "opensearch":
        pos = q / 100 * len(s) - 0.5
        if pos <= 0:
            return float(s[0])
        if pos >= len(s) - 1:
            return float(s[-1])
    else:
        pos = q / 100 * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


@dataclass
class Expected:
    successes: int = 0
    failures: int = 0
    retries: int = 0
    revokes: int = 0
    durations: list[int] = field(default_factory=list)
    waits: list[int] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return self.successes + self.failures + self.retries

    @property
    def failure_pct(self) -> float | None:
        done = self.successes + self.failures
        return 100.0 * self.failures / done if done else None


_COUNTER = {"task-succeeded": "successes", "task-failed": "failures", "task-retried": "retries"}


def stats_by(tasks: Iterable[SynthTask], window: Window, key: Callable[[SynthTask], str | None]) -> dict[str, Expected]:
    """Per-key counts, run times and queue waits of the records whose timestamps fall in ``window``."""
    out: dict[str, Expected] = defaultdict(Expected)
    for t in tasks:
        k = key(t)
        if k is None:
            continue
        if t.end_action == "task-revoked" and t.ended_at and window.start <= t.ended_at < window.end:
            out[k].revokes += 1
        for a in t.attempts:
            if window.start <= a.started_at < window.end:
                out[k].waits.append(a.queue_wait_ns)
            if a.end_action and a.ended_at and window.start <= a.ended_at < window.end:
                setattr(out[k], _COUNTER[a.end_action], getattr(out[k], _COUNTER[a.end_action]) + 1)
                assert a.duration_ns is not None
                out[k].durations.append(a.duration_ns)
    return dict(out)
