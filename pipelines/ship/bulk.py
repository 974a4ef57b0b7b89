"""Delivery: send a batch with ``_bulk`` and sort every operation into done, retry or dead.

Per item: 2xx is done; 409 on a ``create`` is done too (the document is already there: a replay);
429, 5xx (and a 409 on an ``update``, a race between two upserts) are sent again on their own after a
capped, jittered exponential backoff; any other status is final and goes to the dead-letter file.

Whole request: 413 splits the batch in halves (a single operation too large is dead); 401/403 stop the
shipper (retrying cannot fix credentials); connection errors, timeouts, 429 and 5xx are retried without
limit, while the shipper stops reading, so memory stays bounded during an outage. Any other 4xx for the
whole request is narrowed down by splitting, so one bad operation cannot block the rest.

When the shipper is stopping, nothing is retried: what is not done is *abandoned* and, as its lines are
not acknowledged, shipped again after the restart.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pipelines.ship.batch import BOTH, CREATE, Op

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

log = logging.getLogger("celery_logs.shipper")

ItemResult = tuple[int, str | None]


class RequestFailed(Exception):
    """The whole ``_bulk`` request failed; ``status`` is ``None`` when no HTTP answer came."""

    def __init__(self, status: int | None, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class FatalDeliveryError(Exception):
    """Retrying cannot help (authentication or authorisation refused); the shipper stops."""


class BulkSink(Protocol):
    """Where bulk bodies go: Elasticsearch, or a null sink for measuring the shipper alone."""

    def bulk(self, body: bytes, count: int) -> list[ItemResult] | None:
        """Send a ``_bulk`` body of ``count`` operations; per-item ``(status, error)`` in order.

        ``None`` means every item succeeded (the answer's ``errors`` is false): nothing to sort.
        """
        ...


class ElasticsearchSink:
    """Posts bulk bodies, as they are, with the configured client (its own retries turned off)."""

    #: Only what sorting the items needs: the answer of a 5 000-item batch stays small.
    FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"

    def __init__(self, client: Elasticsearch) -> None:
        self._client = client.options(max_retries=0, retry_on_status=())

    def bulk(self, body: bytes, count: int) -> list[ItemResult] | None:
        from elasticsearch import ApiError, TransportError

        try:
            resp = self._client.perform_request(
                "POST",
                "/_bulk",
                params={"filter_path": self.FILTER_PATH},
                headers={"content-type": "application/x-ndjson", "accept": "application/json"},
                body=body,
            )
        except ApiError as exc:
            raise RequestFailed(exc.meta.status, _api_reason(exc)) from exc
        except TransportError as exc:
            raise RequestFailed(None, f"{type(exc).__name__}: {exc.message}") from exc
        items: list[dict[str, Any]] = resp.body.get("items", [])
        if len(items) == count and resp.body.get("errors") is False:
            return None
        if len(items) != count:
            raise RequestFailed(502, f"_bulk answered {len(items)} items for {count} operations")
        out: list[ItemResult] = []
        for item in items:
            (result,) = item.values()
            status = int(result["status"])
            error = result.get("error")
            out.append((status, None if error is None else f"{error.get('type')}: {error.get('reason')}"))
        return out


def _api_reason(exc: Any) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return f"{err.get('type')}: {err.get('reason')}"
    return str(exc.message)


class NullSink:
    """Accepts everything instantly: the shipper's own cost, without Elasticsearch."""

    def bulk(self, body: bytes, count: int) -> list[ItemResult] | None:
        return None


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Capped exponential backoff with full jitter: a random wait in ``[0, min(cap, base * 2**n)]``."""

    base: float = 0.1
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * (2 ** min(attempt, 30))))  # noqa: S311 - jitter


@dataclass
class BatchResult:
    """What became of one batch's operations."""

    done: list[Op] = field(default_factory=list)
    dead: list[tuple[Op, int | None, str]] = field(default_factory=list)
    abandoned: list[Op] = field(default_factory=list)
    created: int = 0
    conflicts: int = 0
    updated: int = 0
    item_retries: int = 0
    request_retries: int = 0
    fatal: str | None = None


class _Abandon(Exception):
    pass


class _Split(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class BulkSender:
    """Sends one batch to completion (or abandonment); safe to use from several threads at once."""

    def __init__(self, sink: BulkSink, *, backoff: Backoff, stop: threading.Event) -> None:
        self.sink = sink
        self.backoff = backoff
        self.stop = stop
        self._outage_lock = threading.Lock()
        self._outage = False

    def send(self, ops: list[Op]) -> BatchResult:
        result = BatchResult()
        queue: deque[tuple[list[Op], int]] = deque([(ops, 0)])
        try:
            while queue:
                part, attempt = queue[0]
                if attempt and self.stop.wait(self.backoff.delay(attempt - 1)):
                    raise _Abandon
                try:
                    items = self._post(part, result)
                except _Split as split:
                    queue.popleft()
                    if len(part) == 1 and part[0].kind == BOTH:
                        create, update = part[0].halves()
                        queue.appendleft(([update], 0))
                        queue.appendleft(([create], 0))
                    elif len(part) == 1:
                        result.dead.append((part[0], split.status, split.reason))
                    else:
                        mid = len(part) // 2
                        queue.appendleft((part[mid:], 0))
                        queue.appendleft((part[:mid], 0))
                    continue
                queue.popleft()
                retry = self._sort(part, items, result)
                if retry:
                    result.item_retries += len(retry)
                    queue.append((retry, attempt + 1))
        except _Abandon:
            for part, _ in queue:
                result.abandoned.extend(part)
        except FatalDeliveryError as exc:
            result.fatal = str(exc)
            for part, _ in queue:
                result.abandoned.extend(part)
        return result

    def _post(self, part: list[Op], result: BatchResult) -> list[ItemResult] | None:
        body = b"".join([op.payload for op in part])
        count = sum([op.items for op in part])
        attempt = 0
        while True:
            try:
                items = self.sink.bulk(body, count)
            except RequestFailed as exc:
                status = exc.status
                if status in (401, 403):
                    raise FatalDeliveryError(f"Elasticsearch refused the credentials ({status}): {exc.reason}") from exc
                if status == 413 or (status is not None and 400 <= status < 500 and status not in (408, 429)):
                    raise _Split(status, exc.reason) from exc
                self._note_outage(exc)
                result.request_retries += 1
                if self.stop.wait(self.backoff.delay(attempt)):
                    raise _Abandon from exc
                attempt += 1
                continue
            self._note_recovery()
            return items

    def _sort(self, part: list[Op], items: list[ItemResult] | None, result: BatchResult) -> list[Op]:
        retry: list[Op] = []
        if items is None:  # all succeeded
            result.done.extend(part)
            for op in part:
                if op.kind == BOTH:
                    result.created += 1
                    result.updated += 1
                elif op.kind == CREATE:
                    result.created += 1
                else:
                    result.updated += 1
            return retry
        answers = iter(items)
        for op in part:
            if op.kind != BOTH:
                self._sort_one(op, next(answers), result, retry)
                continue
            created, updated = next(answers), next(answers)
            if (200 <= created[0] < 300 or created[0] == 409) and 200 <= updated[0] < 300:
                result.done.append(op)
                result.updated += 1
                if created[0] == 409:
                    result.conflicts += 1
                else:
                    result.created += 1
            else:  # the two fates differ: each half goes its own way
                create, update = op.halves()
                self._sort_one(create, created, result, retry)
                self._sort_one(update, updated, result, retry)
        return retry

    @staticmethod
    def _sort_one(op: Op, answer: ItemResult, result: BatchResult, retry: list[Op]) -> None:
        status, reason = answer
        if 200 <= status < 300:
            result.done.append(op)
            if op.kind == CREATE:
                result.created += 1
            else:
                result.updated += 1
        elif status == 409 and op.kind == CREATE:
            result.done.append(op)
            result.conflicts += 1
        elif status in (409, 429) or status >= 500:
            retry.append(op)
        else:
            result.dead.append((op, status, reason or f"status {status}"))

    def _note_outage(self, exc: RequestFailed) -> None:
        with self._outage_lock:
            if not self._outage:
                self._outage = True
                log.warning(
                    "bulk request failed; retrying without limit and pausing reading",
                    extra={"status": exc.status, "error": exc.reason[:300]},
                )

    def _note_recovery(self) -> None:
        if self._outage:
            with self._outage_lock:
                if self._outage:
                    self._outage = False
                    log.info("bulk requests succeed again")
