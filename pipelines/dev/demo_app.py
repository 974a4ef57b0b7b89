"""The sample Celery app of the demo and the Docker stack: a small shop whose tasks do what real ones do.

Run a worker on it with ``celery -A pipelines.dev.demo_app worker``; enqueue a mix of work with
``python -m pipelines.dev.demo_app produce``. Settings come from the environment (``CELERY_BROKER_URL`` and
the ``CELERY_LOGS_*`` variables documented in docs/worker.md).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time

from celery import Celery, Task

import celery_logs

app = Celery("shop", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_default_queue="shop",
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
celery_logs.install(app, service="shop")

log = logging.getLogger("shop")


class PaymentDeclined(Exception):
    """The payment gateway said no."""


@app.task(name="shop.charge")
def charge(order_id: int, amount: float, card_token: str) -> str:
    """Charge an order; orders divisible by 7 hit a missing customer and fail with a chained exception."""
    log.info("charging order", extra={"order_id": order_id})
    customers = {n: f"cus_{n}" for n in range(0, 1000) if n % 7}
    try:
        customer = customers[order_id]
    except KeyError as exc:
        raise PaymentDeclined(f"no customer for order {order_id}") from exc
    time.sleep(0.02 + random.random() * 0.05)  # noqa: S311 - demo timing, not security
    return f"{customer}:{amount:.2f}"


@app.task(name="shop.send_receipt", bind=True, max_retries=3, default_retry_delay=0.2)
def send_receipt(self: Task, order_id: int) -> str:
    """Send a receipt; the mail server is flaky twice before it accepts."""
    if self.request.retries < 2:
        raise self.retry(exc=ConnectionError("smtp: 421 try again later"), countdown=0.2)
    return f"receipt for {order_id} sent"


@app.task(name="shop.build_report")
def build_report(pages: int) -> int:
    """A slow task: about a tenth of a second per page."""
    for page in range(pages):
        log.info("rendered page", extra={"page": page})
        time.sleep(0.1)
    return pages


@app.task(name="shop.import_catalog", time_limit=2, soft_time_limit=None)
def import_catalog(rows: int) -> int:
    """Hangs on a big file until the hard time limit kills its pool process."""
    time.sleep(rows / 100)
    return rows


@app.task(name="shop.nightly_export")
def nightly_export(minutes: float) -> str:
    """A long job: the one a worker crash loses."""
    time.sleep(minutes * 60)
    return "exported"


def produce(*, rounds: int = 1, seed: int = 42, revoke: bool = False) -> list[str]:
    """Enqueue one mix of successes, failures, retries, slow runs and a time-limit kill per round.

    With ``revoke``, also a report due in two seconds that is revoked before it runs. Returns the task ids.
    """
    rng = random.Random(seed)  # noqa: S311 - demo data
    ids: list[str] = []
    for r in range(rounds):
        for i in range(12):
            order = r * 100 + i
            # A fake card token: the records show it redacted.
            token = "tok_live_4242"  # noqa: S105
            ids.append(charge.delay(order, round(rng.uniform(5, 500), 2), card_token=token).id)
        ids.append(send_receipt.delay(r).id)
        ids.append(build_report.delay(rng.randint(5, 15)).id)
        ids.append(import_catalog.delay(1000).id)
    if revoke:
        doomed = build_report.apply_async((3,), countdown=2)
        doomed.revoke()
        ids.append(doomed.id)
    return ids


def build_parser() -> argparse.ArgumentParser:
    """The producer's command line (``python -m pipelines.dev.demo_app``)."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.dev.demo_app")
    parser.add_argument("action", choices=["produce", "export"], help="enqueue a mix of tasks, or one long export")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--revoke", action="store_true", help="also revoke one task before it runs")
    parser.add_argument("--json", action="store_true", help="print the task ids as a JSON list")
    parser.add_argument("--forever", action="store_true", help="one round every --every seconds")
    parser.add_argument("--every", type=float, default=30.0)
    return parser


def _main() -> None:
    args = build_parser().parse_args()
    if args.action == "export":
        sys.stdout.write(nightly_export.delay(5).id + "\n")
        return
    while True:
        ids = produce(rounds=args.rounds, seed=int(time.time()), revoke=args.revoke)
        if args.json:
            sys.stdout.write(json.dumps(ids) + "\n")
        if not args.forever:
            break
        time.sleep(args.every)


if __name__ == "__main__":
    _main()
