"""``task-rejected`` for a message the worker could not decode.

Celery sends no signal for it: its consumer logs one CRITICAL line ("Can't decode message body: ...",
``Consumer.on_decode_error``), acknowledges the message and drops it. That line is the only trace, so
our handler turns it into the record, beside the log line itself.
"""

from __future__ import annotations

import ast
import logging
import time
from typing import Any, Final

from ._exceptions import error_fields
from ._lifecycle import _task_part, _task_record
from ._runtime import Runtime

#: The logger and the start of the message template of ``Consumer.on_decode_error`` (Celery 5.x).
LOGGER: Final = "celery.worker.consumer.consumer"
_TEMPLATE_START: Final = "Can't decode message body:"


def observe(runtime: Runtime, record: logging.LogRecord) -> None:
    """Write ``task-rejected`` when ``record`` is Celery's report of an undecodable message."""
    if not (isinstance(record.msg, str) and record.msg.startswith(_TEMPLATE_START)):
        return
    try:
        args = record.args if isinstance(record.args, tuple) else ()
        exc = args[0] if args and isinstance(args[0], BaseException) else None
        headers = _headers(args[3]) if len(args) > 3 else {}
        part = _task_part(task_id=str(headers.get("id") or ""), name=_text(headers.get("task")))
        reason = type(exc).__name__ if exc is not None else "undecodable body"
        out = _task_record(runtime, int(record.created * 1e9) if record.created else time.time_ns(),
                           "task-rejected", f"message rejected: cannot decode its body ({reason})", part)
        if exc is not None:
            tb = record.exc_info[2] if record.exc_info else None
            out["error"] = error_fields(exc, tb)
        runtime.emit(out)
    except Exception as fault:
        runtime.fault(fault, "recording an undecodable message")


def _headers(text: Any) -> dict[str, Any]:
    """The message headers from Celery's ``safe_repr`` of them (a dict literal when they were plain)."""
    if not isinstance(text, str):
        return {}
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
