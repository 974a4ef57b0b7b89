"""A plain stdlib formatter (python-json-logger) giving the same records, for handlers configured by hand."""

from __future__ import annotations

import logging
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as _PythonJsonFormatter

from ._encode import encode_json
from ._runtime import current
from ._stdlib import build_record

_SKIP = frozenset(RESERVED_ATTRS) | {"message", "asctime"}


class JsonFormatter(_PythonJsonFormatter):
    """For ``logging.config.dictConfig`` setups that attach their own handlers.

    With celery-logs installed, each line is the same record the installed handler writes (schema
    fields, task context, labels, redaction, bounds); without it, python-json-logger's usual output.
    """

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        runtime = current()
        if runtime is None:
            super().add_fields(log_data, record, message_dict)
            return
        event_dict: dict[str, Any] = {
            key: value for key, value in record.__dict__.items() if key not in _SKIP and not key.startswith("_")
        }
        event_dict.update({k: v for k, v in message_dict.items() if k not in ("exc_info", "stack_info")})
        event_dict.update(event=record.message, _record=record, level=record.levelname, logger=record.name)
        if record.exc_info:
            event_dict["exc_info"] = record.exc_info
        log_data.update(build_record(runtime, event_dict))
        log_data.update(runtime.constant_fields())

    def serialize_log_record(self, log_data: dict[str, Any]) -> str:
        if current() is None:
            return super().serialize_log_record(log_data)
        return encode_json(log_data)
