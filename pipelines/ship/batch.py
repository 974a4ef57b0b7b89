"""Batching: bulk operations grouped into requests bounded by count, bytes and age."""

from __future__ import annotations

import time
from collections.abc import Callable

from pipelines.ship.reader import Line

#: The kinds of :class:`Op`.
CREATE = "create"
UPDATE = "update"
BOTH = "create+update"


class Op:
    """One input line's bulk operations (action + source lines) and the line they belong to.

    ``kind`` is ``"create"`` (the record), ``"update"`` (its task's entity document), or ``"create+update"``:
    both, sent as one object so that the hot path makes, batches and acknowledges one object per line.
    ``split`` is where the update starts in a ``"create+update"`` payload; ``items`` is how many bulk
    items the payload holds.
    """

    __slots__ = ("items", "kind", "line", "payload", "split")

    def __init__(self, line: Line, payload: bytes, kind: str = CREATE, split: int = 0) -> None:
        self.line = line
        self.payload = payload
        self.kind = kind
        self.split = split
        self.items = 2 if kind == BOTH else 1

    def halves(self) -> tuple[Op, Op]:
        """A ``"create+update"`` op as two ops whose fates differ; the line then waits for both."""
        self.line.remaining += 1
        return (Op(self.line, self.payload[: self.split], CREATE),
                Op(self.line, self.payload[self.split :], UPDATE))


class Batch:
    """Operations sent in one ``_bulk`` request."""

    __slots__ = ("items", "nbytes", "opened_at", "ops")

    def __init__(self, opened_at: float) -> None:
        self.ops: list[Op] = []
        self.items = 0
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
        cur.items += op.items
        cur.nbytes += size
        if cur.items >= self.max_docs or cur.nbytes >= self.max_bytes:
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
            cur.items >= self.max_docs
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
