"""Exception fields of a record: type, message, whole traceback and a stable grouping key."""

from __future__ import annotations

import hashlib
import re
import traceback
from types import TracebackType
from typing import Any, Final

from ._encode import truncate, truncate_middle
from ._schema import MAX_ERROR_MESSAGE_CHARS, MAX_STACK_TRACE_CHARS

#: Frames of these packages are the machinery around the user's code; leaving them out of the
#: grouping key keeps it stable across Celery upgrades and across prefork/solo/threads pools.
_MACHINERY_PREFIXES: Final = ("celery.", "billiard.", "kombu.", "vine.", "celery_logs.")
#: Hex addresses, long digit runs (ids, ports) and uuids in a generated function name
_VOLATILE = re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F]{8}-[0-9a-fA-F-]{27}|\d{2,}")
_MAX_CHAIN: Final = 16


def qualified_name(exc_type: type[BaseException]) -> str:
    """``requests.exceptions.Timeout``; builtins keep their bare name (``KeyError``)."""
    module = exc_type.__module__
    if module in ("builtins", "__builtin__", None):
        return exc_type.__qualname__
    return f"{module}.{exc_type.__qualname__}"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes/contexts, outermost first, as Python prints them in reverse."""
    seen: list[BaseException] = []
    node: BaseException | None = exc
    while node is not None and len(seen) < _MAX_CHAIN and all(node is not s for s in seen):
        seen.append(node)
        if node.__cause__ is not None:
            node = node.__cause__
        elif node.__context__ is not None and not node.__suppress_context__:
            node = node.__context__
        else:
            node = None
    return seen


def grouping_key(exc: BaseException, tb: TracebackType | None = None) -> str:
    """Fingerprint of a bug: exception types and normalised frames (module and function, no lines).

    Two failures from the same code path get the same key on any host and in any run, whatever
    their messages, arguments, ids or line numbers after an unrelated edit.
    """
    digest = hashlib.sha256()
    for i, node in enumerate(_chain(exc)):
        digest.update(qualified_name(type(node)).encode())
        node_tb = tb if (i == 0 and tb is not None) else node.__traceback__
        for frame, _lineno in traceback.walk_tb(node_tb):
            module = str(frame.f_globals.get("__name__", "?"))
            if module.startswith(_MACHINERY_PREFIXES):
                continue
            function = _VOLATILE.sub("#", frame.f_code.co_qualname)
            digest.update(f"|{module}:{function}".encode())
        digest.update(b"\n")
    return digest.hexdigest()[:32]


def error_fields(exc: BaseException, tb: TracebackType | str | None = None) -> dict[str, Any]:
    """The ``error.*`` object of a record for ``exc``.

    ``tb`` may be the formatted text of a traceback: Celery's main process reports failures it learnt
    from a child (``Reject``, ``WorkerLostError``, errors it unpickled) with ``ExceptionInfo.traceback``,
    a string, and the exception itself then has no frames. That text is the stack trace as given.
    """
    if isinstance(tb, TracebackType) and exc.__traceback__ is None:
        exc = exc.with_traceback(tb)
    try:
        message = str(exc)
    except Exception:  # a user exception whose __str__ raises
        message = f"<unprintable {type(exc).__qualname__}>"
    if isinstance(tb, str) and tb and exc.__traceback__ is None:
        stack = tb if tb.endswith("\n") else tb + "\n"
    else:
        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return {
        "type": qualified_name(type(exc)),
        "message": truncate(message, MAX_ERROR_MESSAGE_CHARS),
        "stack_trace": truncate_middle(stack, MAX_STACK_TRACE_CHARS),
        "grouping_key": grouping_key(exc),
    }
