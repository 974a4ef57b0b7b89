"""Where each input file has been shipped up to, saved so a restart resumes there.

A file is known by its identity, not its name: device + inode, plus a fingerprint (SHA-1 of its first
bytes, up to :data:`FINGERPRINT_BYTES`) so that an inode reused by a new file is not mistaken for the
old one. The offset stored is the end of the last line whose documents Elasticsearch acknowledged (or
that was dead-lettered): everything before it is done, everything after it is shipped again on restart,
which is harmless because documents are created with their own ``_id``.

The file is replaced atomically (write a temporary file, fsync, rename, fsync the directory), so a crash
leaves either the old or the new checkpoint. A checkpoint that cannot be read (truncated by a full disk,
edited by hand) is reported and ignored: the shipper then starts every file from the beginning, which
costs time but loses nothing and duplicates nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("celery_logs.shipper")

#: How many leading bytes of a file make its fingerprint.
FINGERPRINT_BYTES = 256
_VERSION = 1


def fingerprint(fd: int, length: int) -> str:
    """SHA-1 (hex) of the first ``length`` bytes of the open file ``fd``."""
    data = os.pread(fd, length, 0) if length else b""
    return hashlib.sha1(data).hexdigest()  # noqa: S324 - an identity check, not security


def file_key(dev: int, ino: int) -> str:
    """The checkpoint key of a file identity."""
    return f"{dev}:{ino}"


@dataclass(slots=True)
class FilePosition:
    """One file's entry: where it was seen, its fingerprint, and the acknowledged offset."""

    path: str
    offset: int
    fp_len: int
    fp: str

    def matches(self, fd: int) -> bool:
        """True when the open file starts with the bytes this entry's fingerprint was taken of."""
        try:
            size = os.fstat(fd).st_size
        except OSError:
            return False
        return size >= self.fp_len and size >= self.offset and fingerprint(fd, self.fp_len) == self.fp


class CheckpointStore:
    """A JSON file mapping file identities to :class:`FilePosition`, saved atomically."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.positions: dict[str, FilePosition] = {}

    def load(self) -> CheckpointStore:
        """Read the file; a missing file is an empty checkpoint, an unreadable one is reported and ignored."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return self
        try:
            data = json.loads(raw)
            files = data["files"]
            self.positions = {
                key: FilePosition(
                    path=str(v["path"]), offset=int(v["offset"]), fp_len=int(v["fp_len"]), fp=str(v["fp"])
                )
                for key, v in files.items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning(
                "checkpoint unreadable, starting every file from the beginning (replays are harmless)",
                extra={"checkpoint": str(self.path), "error": f"{type(exc).__name__}: {exc}"},
            )
            self.positions = {}
        return self

    def save(self) -> None:
        """Replace the file atomically and durably."""
        body: dict[str, Any] = {"version": _VERSION, "files": {k: asdict(v) for k, v in self.positions.items()}}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with tmp.open("wb") as fh:
            fh.write(json.dumps(body, sort_keys=True).encode())
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.path)
        _fsync_dir(self.path.parent)


def _fsync_dir(path: Path) -> None:
    # The rename is durable only once the directory entry is; some filesystems refuse O_RDONLY dirs.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
