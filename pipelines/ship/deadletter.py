"""The dead-letter file: every line that cannot be indexed, with why, where it came from, and its bytes.

One JSON object per line: ``@timestamp`` (when it was dead-lettered), ``file``, ``offset`` (of the
line's first byte), ``status`` (the HTTP status of the refusal, or ``null`` when the shipper itself
refused the line), ``reason``, and the line itself as ``line`` (text), ``line_base64`` (when it is not
valid UTF-8), or, for a line over the size bound, its first bytes as ``line_head`` with its length in
``line_bytes`` (the whole line is still in the source file at ``offset``).
"""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from pipelines.ship.reader import Line


class DeadLetterFile:
    """Appends dead-letter records; :meth:`sync` makes them durable before a checkpoint passes them."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fh: IO[bytes] | None = None
        self.count = 0
        self._dirty = False

    def write(self, line: Line, *, status: int | None, reason: str) -> None:
        entry: dict[str, Any] = {
            "@timestamp": datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "file": line.source.path,
            "offset": line.start,
            "status": status,
            "reason": reason,
        }
        if line.oversize:
            entry["line_head"] = line.data.decode("utf-8", "replace")
            entry["line_bytes"] = line.oversize
        else:
            try:
                entry["line"] = line.data.decode("utf-8")
            except UnicodeDecodeError:
                entry["line_base64"] = base64.b64encode(line.data).decode("ascii")
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab")
        self._fh.write(json.dumps(entry).encode() + b"\n")
        self.count += 1
        self._dirty = True

    def sync(self) -> None:
        if self._fh is not None and self._dirty:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._dirty = False

    def close(self) -> None:
        if self._fh is not None:
            self.sync()
            self._fh.close()
            self._fh = None
