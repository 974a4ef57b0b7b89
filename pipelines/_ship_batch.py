"""Batching: bulk operations grouped into requests bounded by count, bytes and age."""

from __future__ import annotations

import time
from collections.abc import Callable

from pipelines._ship_reader import Line


class Op:
    """One bulk operation (action line + source line) and the input line it belongs to."""

    __slots__ = ("kind", "line", "payload")

    def __init__(self, line: Line, payload: bytes, kind: str) -> None:
        self.line = line
        self.payload = payload
        #: ``"create"`` (the record) or ``"update"`` (its task's entity document).
        self.kind = kind


class Batch:
    """Operations sent in one ``_bulk`` request."""

    __slots__ = ("nbytes", "opened_at", "ops")

    def __init__(self, opened_at: float) -> None:
        self.ops: list[Op] = []
        self.nbytes = 0
        self.opened_at = opened_at

    def body(self) -> bytes:
        return b"".join([op.payload for op in self.ops])


class Batcher:
    """Collects operations; hands out a batch when it is full (count or bytes) or old enough."""

    def __init__(
        self,
        *,
        max_docs: int,
        max_bytes: int,
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_docs < 1 or max_bytes < 1 or max_wait < 0:
            raise ValueError("batch bounds must be positive")
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self.max_wait = max_wait
        self._clock = clock
        self._current: Batch | None = None

    def add(self, op: Op) -> Batch | None:
        """Add ``op``; returns the batch it filled, if any (an op over ``max_bytes`` goes out alone)."""
        full: Batch | None = None
        cur = self._current
        size = len(op.payload)
        if cur is not None and cur.ops and cur.nbytes + size > self.max_bytes:
            full, cur = cur, None
        if cur is None:
            cur = self._current = Batch(self._clock())
        cur.ops.append(op)
        cur.nbytes += size
        if len(cur.ops) >= self.max_docs or cur.nbytes >= self.max_bytes:
            if full is not None:
                # Both are full; hand out the older now and the newer on the next call to due().
                return full
            self._current = None
            return cur
        return full

    def due(self) -> Batch | None:
        """The open batch if it has waited ``max_wait`` or is already full; else ``None``."""
        cur = self._current
        if cur is None or not cur.ops:
            return None
        if (
            len(cur.ops) >= self.max_docs
            or cur.nbytes >= self.max_bytes
            or self._clock() - cur.opened_at >= self.max_wait
        ):
            self._current = None
            return cur
        return None

    def flush(self) -> Batch | None:
        """The open batch, whatever its size."""
        cur, self._current = self._current, None
        return cur if cur is not None and cur.ops else None

    @property
    def pending(self) -> int:
        return len(self._current.ops) if self._current is not None else 0
