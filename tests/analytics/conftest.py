"""One synthetic history with known answers, loaded once into the real Elasticsearch for the module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from elasticsearch import Elasticsearch

from pipelines.analytics.timeparse import Window
from pipelines.dev import synth as _synth
from tests.conftest import node_url
from tests.support.engines import ENGINES, client_for

#: The report's window; the previous window is the 6 hours before it.
START = datetime(2026, 11, 22, 6, 0, tzinfo=timezone.utc)
SPAN = timedelta(hours=6)
WINDOW = Window(START, START + SPAN)
PREVIOUS = WINDOW.previous()


@dataclass(frozen=True)
class Loaded:
    """What is in the cluster: the ground truth of both windows and where it was loaded."""

    es: Elasticsearch
    prefix: str
    tasks_index: str
    current: _synth.SynthHistory
    previous: _synth.SynthHistory
    engine: str

    @property
    def tasks(self) -> list[_synth.SynthTask]:
        return self.previous.tasks + self.current.tasks


@pytest.fixture(scope="session", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """These integration tests run on both engines (Elasticsearch 8.19 and OpenSearch 2.19)."""
    return str(request.param)


@pytest.fixture(scope="session")
def es_url(engine: str, request: pytest.FixtureRequest) -> str:
    """The node of this engine, defined beside the parametrized ``engine`` so that it follows it."""
    return node_url(engine, request)


@pytest.fixture(scope="package")
def loaded(es_url: str, engine: str) -> Iterator[Loaded]:
    """Two 6-hour histories (previous and current window), sized so every percentile bucket holds
    fewer than 1000 values, where Elasticsearch's t-digest keeps every sample and is exact."""
    es = client_for(es_url, request_timeout=120)
    prefix = f"t{uuid.uuid4().hex[:10]}-celery-logs"
    tasks_index = f"t{uuid.uuid4().hex[:10]}-celery-tasks"
    # The previous window loses nothing; the current one loses two tasks on its killed worker and one
    # whose pool child was killed (the demo's lost task).
    previous = _synth.generate(tasks=350, seed=21, start=PREVIOUS.start, span=SPAN, lost_tasks=0)
    current = _synth.generate(tasks=450, seed=22, start=START, span=SPAN, lost_tasks=2, worker_lost_tasks=1)
    both = _synth.SynthHistory(records=previous.records + current.records)
    _synth.load(es, both, prefix=prefix, tasks_index=tasks_index, chunk_size=5000)
    yield Loaded(es, prefix, tasks_index, current, previous, engine)
    es.options(ignore_status=404).indices.delete(index=f"{prefix}-*,{tasks_index}", expand_wildcards="all")
    es.close()
