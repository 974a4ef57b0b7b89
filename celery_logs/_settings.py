"""Settings of :func:`celery_logs.install`, and where each one comes from.

Precedence, highest first (documented in ``docs/worker.md``):

1. keyword arguments of ``install()``;
2. Celery configuration keys ``celery_logs_<name>`` (in Django: ``CELERY_CELERY_LOGS_<NAME>`` with the
   usual ``namespace="CELERY"``);
3. environment variables ``CELERY_LOGS_<NAME>``;
4. the defaults below.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ._redact import DEFAULT_REDACT_KEYS
from ._schema import MAX_VALUE_CHARS

#: A hook applied to every record (a nested dict) before it is rendered; it returns the record.
RecordProcessor = Callable[[dict[str, Any]], dict[str, Any]]


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the setting and where it came from."""


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one installation."""

    service: str
    log_dir: Path | None = None
    stdout: bool = False
    console: bool = False
    environment: str | None = None
    version: str | None = None
    #: Lost-task detection judges silence against it (2 missed beats + 3 s): a killed worker is noticed
    #: 8 to 13 s after it died.
    heartbeat_interval: float = 5.0
    log_results: bool = False
    redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS
    max_bytes: int = 64 * 1024 * 1024
    backup_count: int = 5
    level: str = "INFO"
    max_value_chars: int = MAX_VALUE_CHARS
    #: Keep Celery's own per-task INFO lines ("Task ... received", "... succeeded in ..."), which the
    #: lifecycle records already say; off by default, they cost as much as the records themselves.
    celery_task_lines: bool = False
    #: ``stdout`` was asked for (not only the default for want of ``log_dir``): then the worker's
    #: console carries our JSON instead of Celery's human lines (a ``--logfile`` is never touched).
    json_console: bool = False
    #: Sample the depth of the worker's queues at each heartbeat (``worker-queue-depth`` records).
    queue_depth: bool = True
    #: Queues whose depth the worker samples too, though it does not consume them (per-node queues).
    watch_queues: tuple[str, ...] = ()
    processors: tuple[RecordProcessor, ...] = field(default=(), compare=False)


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _keys(text: str) -> tuple[str, ...]:
    # Extra keys are added to the defaults: forgetting one default must not un-redact passwords.
    return DEFAULT_REDACT_KEYS + tuple(k.strip() for k in text.split(",") if k.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError(f"must be > 0, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be >= 0, got {text!r}")
    return value


def _level(text: str) -> str:
    name = text.strip().upper()
    if name not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ValueError(f"not a log level: {text!r}")
    return name


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


#: How a setting given as text (environment, string config values) becomes its value.
_PARSERS: dict[str, Callable[[str], Any]] = {
    "service": _text,
    "log_dir": Path,
    "stdout": _bool,
    "console": _bool,
    "environment": _text,
    "version": _text,
    "heartbeat_interval": _positive_float,
    "log_results": _bool,
    "redact_keys": _keys,
    "max_bytes": _non_negative_int,
    "backup_count": _non_negative_int,
    "level": _level,
    "max_value_chars": _non_negative_int,
    "celery_task_lines": _bool,
    "queue_depth": _bool,
    "watch_queues": _names,
}

ENV_PREFIX = "CELERY_LOGS_"
CONFIG_PREFIX = "celery_logs_"


def _coerce(name: str, value: Any) -> Any:
    """A value given as an object (keyword argument, Celery config) checked and normalised."""
    if isinstance(value, str):
        return _PARSERS[name](value)
    if name == "redact_keys":
        return DEFAULT_REDACT_KEYS + tuple(str(k) for k in value)
    if name == "log_dir":
        return Path(value)
    if name == "level" and isinstance(value, int):
        return _level(logging.getLevelName(value))
    if name in ("heartbeat_interval",):
        return _positive_float(str(value))
    if name in ("max_bytes", "backup_count", "max_value_chars"):
        return _non_negative_int(str(value))
    if name == "watch_queues":
        return tuple(str(n) for n in value)
    if name in ("stdout", "console", "log_results", "celery_task_lines", "queue_depth"):
        return bool(value)
    return value


def resolve(
    keywords: Mapping[str, Any],
    *,
    config: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    processors: Sequence[RecordProcessor] = (),
) -> Settings:
    """Settings from keyword arguments, then Celery config, then environment variables, then defaults."""
    environ = os.environ if environ is None else environ
    config = config or {}
    values: dict[str, Any] = {}
    for f in fields(Settings):
        name = f.name
        if name in ("processors", "json_console"):
            continue
        if keywords.get(name) is not None:
            source, raw = f"argument {name}=", keywords[name]
        elif config.get(CONFIG_PREFIX + name) is not None:
            source, raw = f"Celery setting {CONFIG_PREFIX + name}=", config[CONFIG_PREFIX + name]
        elif environ.get(ENV_PREFIX + name.upper()) is not None:
            source, raw = f"environment variable {ENV_PREFIX + name.upper()}=", environ[ENV_PREFIX + name.upper()]
        else:
            continue
        try:
            values[name] = _coerce(name, raw)
        except (TypeError, ValueError) as exc:
            raise SettingsError(f"celery-logs: bad {source}{raw!r}: {exc}") from None
    if "service" not in values:
        raise SettingsError(
            "celery-logs: no service name: pass install(app, service=...), set celery_logs_service "
            "or CELERY_LOGS_SERVICE"
        )
    values["json_console"] = bool(values.get("stdout"))
    if values.get("log_dir") is None and not values.get("stdout"):
        # Nowhere to write was given: containers log to stdout, so that is the default.
        values["stdout"] = True
    return Settings(**values, processors=tuple(processors))
