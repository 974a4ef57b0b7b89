"""Reading: many files (and stdin) at once, line by line, following rotation like ``tail -F``.

Every line carries the file it came from and its byte range, so the shipper can move a file's checkpoint
past it once Elasticsearch has acknowledged it. What this stage handles:

- **rename rotation** (``app.jsonl`` -> ``app.jsonl.1``, new ``app.jsonl``): the open descriptor keeps the
  old file, which is read to its end (writers may still append for a moment) and closed after it has been
  idle; the new file at the path is opened from offset 0. A file rotated *while the shipper was stopped*
  is found again at start by its identity among the siblings of the live name it was read under, and
  siblings rotated after it (perhaps never seen) are read too.
- **copytruncate**: a file that becomes shorter than the read position, or no longer starts with the
  bytes read there (truncated and already rewritten), is read again from offset 0 (a new *generation*,
  so acknowledgements of lines from before the truncation are ignored).
- **delete and recreate**: a new inode at the path is a new file; the deleted one is drained and closed.
- **torn writes**: bytes after the last newline are held back until their newline arrives; a line never
  ships in two parts. At the end of ``--once`` they stay unshipped and the checkpoint stays before them.
- **oversized lines**: a line longer than ``max_line_bytes`` is not held in memory: its first bytes are
  kept for the dead-letter record and the rest is skipped up to its newline.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import select
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from pipelines.ship.checkpoint import FINGERPRINT_BYTES, CheckpointStore, FilePosition, file_key, fingerprint

log = logging.getLogger("celery_logs.shipper")

STDIN = "-"
#: How many leading bytes are compared at each read to notice a truncation.
HEAD_BYTES = 256
#: How much of an oversized line is kept for its dead-letter record.
OVERSIZE_HEAD_BYTES = 4096


class Line:
    """One complete line (without its newline) and where it came from.

    ``remaining`` counts the ops of this line not yet done (one, unless its create and update part ways,
    see ``Op.halves``); the line is acknowledged (its
    file's checkpoint may pass it) when it reaches zero. ``oversize`` is the real length of a line
    longer than the bound, whose ``data`` then holds only its first bytes.
    """

    __slots__ = ("data", "end", "generation", "oversize", "remaining", "source", "start")

    def __init__(  # noqa: PLR0917 - built per line on the hot path, where keywords cost time
        self, source: Source, generation: int, start: int, end: int, data: bytes, oversize: int = 0
    ) -> None:
        self.source = source
        self.generation = generation
        self.start = start
        self.end = end
        self.data = data
        self.oversize = oversize
        self.remaining = 1


class Source:
    """One open input: a file known by identity, or stdin; holds its read state and unacknowledged lines."""

    def __init__(self, *, path: str, fd: int, key: str | None, offset: int, live_path: str | None = None) -> None:
        #: Where the file was opened (shown in logs and dead-letter records).
        self.path = path
        #: The name writers write to, which rotation moved it from: the checkpoint records this one, so
        #: a restart finds the file again among that name's rotated siblings.
        self.live_path = live_path or path
        self.fd = fd
        self.key = key
        self.pos = offset
        self.committed = offset
        self.generation = 0
        self.buf = b""
        self.buf_start = offset
        self.skip_head: bytes | None = None
        self.skip_len = 0
        self.pending: deque[Line] = deque()
        self.rotated = False
        self.eof = False
        self.idle_since: float | None = None
        self.fp_len = 0
        self.fp = fingerprint(fd, 0) if key is not None else ""
        #: The file's first bytes as read (up to HEAD_BYTES): if the file stops starting with them,
        #: it was truncated and rewritten.
        self.head = os.pread(fd, min(offset, HEAD_BYTES), 0) if key is not None and offset else b""

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def ack(self, line: Line) -> None:
        """One operation of ``line`` is done; move ``committed`` past every fully done leading line."""
        if line.generation != self.generation:
            return  # from before a truncation: that content is gone, its offsets mean nothing now
        line.remaining -= 1
        self.advance()

    def advance(self) -> None:
        """Move ``committed`` past every fully done leading line (after acknowledging lines in bulk)."""
        pending = self.pending
        while pending and pending[0].remaining <= 0:
            self.committed = pending.popleft().end

    def position(self) -> FilePosition | None:
        """This file's checkpoint entry (``None`` for stdin)."""
        if self.key is None:
            return None
        if self.fp_len < FINGERPRINT_BYTES and self.committed > self.fp_len and not self.closed:
            self.fp_len = min(FINGERPRINT_BYTES, self.committed)
            self.fp = fingerprint(self.fd, self.fp_len)
        return FilePosition(path=self.live_path, offset=self.committed, fp_len=self.fp_len, fp=self.fp)

    def truncated(self) -> None:
        log.warning("file truncated, reading it again from the start", extra={"file": self.path})
        self.generation += 1
        self.pending.clear()
        self.pos = self.committed = self.buf_start = 0
        self.buf = b""
        self.head = b""
        self.skip_head = None
        self.fp_len = 0
        self.fp = fingerprint(self.fd, 0)

    def close(self) -> None:
        if self.fd >= 0:
            if self.key is not None:
                os.close(self.fd)
            self.fd = -1


def _rotated_siblings(live_path: str) -> list[Path]:
    where = Path(live_path)
    try:
        return sorted(p for p in where.parent.iterdir() if p.name.startswith(where.name) and p != where)
    except OSError:
        return []


def _keys_at(live_path: str) -> set[str]:
    """The identities of the file at ``live_path`` and of its rotated siblings."""
    keys = set()
    for path in (Path(live_path), *_rotated_siblings(live_path)):
        with contextlib.suppress(OSError):
            st = path.stat()
            keys.add(file_key(st.st_dev, st.st_ino))
    return keys


#: Seconds between two looks for finished files deleted since.
FORGET_INTERVAL = 60.0


class Tailer:
    """Finds the inputs matching ``patterns`` and reads complete lines from them in turn."""

    def __init__(
        self,
        patterns: Iterable[str],
        *,
        store: CheckpointStore | None,
        follow: bool,
        max_line_bytes: int = 1 << 20,
        chunk_bytes: int = 1 << 20,
        rotated_close_after: float = 5.0,
    ) -> None:
        self.patterns = tuple(patterns)
        self.store = store
        self.follow = follow
        self.max_line_bytes = max_line_bytes
        self.chunk_bytes = chunk_bytes
        self.rotated_close_after = rotated_close_after
        self.sources: list[Source] = []
        self._by_key: dict[str, Source] = {}
        self._stdin: Source | None = None
        #: Live paths seen rotating, with the oldest rotation time: later rotations are looked for there.
        self._rotating: dict[str, int] = {}
        #: Bytes the last :meth:`read` consumed (it may return no line while skipping an oversized one).
        self.last_read_bytes = 0
        #: When :meth:`scan` next looks for finished files deleted since (monotonic seconds).
        self._next_forget = 0.0
        self._store_changed = False

    # --- discovery ----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Open stdin if asked, every matching file, and files rotated away while the shipper was stopped."""
        if STDIN in self.patterns:
            self._stdin = Source(path="<stdin>", fd=0, key=None, offset=0)
            self.sources.append(self._stdin)
        self.scan()
        for pattern in self.patterns:
            if pattern != STDIN and not glob.glob(pattern):
                log.warning(
                    "no file matches this input yet" + ("; it is watched" if self.follow else ""),
                    extra={"input": pattern},
                )
        if self.store is not None:
            self._resume_rotated(self.store)
            self.forget_gone()

    def scan(self) -> None:
        """Open files that newly match; mark open files whose path now names another file as rotated."""
        for pattern in self.patterns:
            if pattern == STDIN:
                continue
            for path in sorted(glob.glob(pattern)):
                self._consider(path, rotated=False)
        for src in list(self.sources):
            if src.key is None or src.rotated:
                continue
            try:
                st = os.stat(src.live_path)
                same = file_key(st.st_dev, st.st_ino) == src.key
            except FileNotFoundError:
                same = False
            if not same:
                log.info("file rotated or removed; reading its remainder", extra={"file": src.path})
                src.rotated = True
                self._watch_rotation(src.live_path, src)
        for live_path, since in self._rotating.items():
            self._adopt_rotated(live_path, since)
        now = time.monotonic()
        if now >= self._next_forget:
            self._next_forget = now + FORGET_INTERVAL
            self.forget_gone()

    def forget_gone(self) -> None:
        """Drop the checkpoint entries of finished files that exist no more, under their live name or a rotated
        one. A finished file still on disk keeps its entry, so that no scan takes it for new; a deleted one
        would only grow the checkpoint, which a long-running shipper rewrites every second."""
        if self.store is None:
            return
        present: dict[str, set[str]] = {}
        gone = []
        for key, saved in self.store.positions.items():
            if key in self._by_key:
                continue
            keys = present.get(saved.path)
            if keys is None:
                keys = present[saved.path] = _keys_at(saved.path)
            if key not in keys:
                gone.append(key)
        for key in gone:
            del self.store.positions[key]
        self._store_changed = self._store_changed or bool(gone)

    def _consider(self, path: str, *, rotated: bool, want_key: str | None = None, live_path: str | None = None) -> None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return
        if not os.path.isfile(path):
            return
        key = file_key(st.st_dev, st.st_ino)
        if want_key is not None and key != want_key:
            return
        known = self._by_key.get(key)
        if known is not None:
            if not known.rotated:
                known.path = known.live_path = path
            return
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            log.error("cannot open input file", extra={"file": path, "error": exc.strerror})
            return
        fst = os.fstat(fd)
        key = file_key(fst.st_dev, fst.st_ino)  # the path may have been replaced between stat and open
        if key in self._by_key or (want_key is not None and key != want_key):
            os.close(fd)
            return
        offset = 0
        saved = self.store.positions.get(key) if self.store is not None else None
        if saved is not None:
            if saved.matches(fd):
                offset = saved.offset
            else:
                log.info("file identity reused by new content; reading from the start", extra={"file": path})
        src = Source(path=path, fd=fd, key=key, offset=offset, live_path=live_path)
        if saved is not None and offset:
            src.fp_len, src.fp = saved.fp_len, saved.fp
        src.rotated = rotated
        self.sources.append(src)
        self._by_key[key] = src

    def _resume_rotated(self, store: CheckpointStore) -> None:
        """Find checkpointed files renamed away while the shipper was stopped (by identity, among siblings)."""
        for key, saved in list(store.positions.items()):
            if key in self._by_key:
                continue
            for sibling in _rotated_siblings(saved.path):
                self._consider(str(sibling), rotated=True, want_key=key, live_path=saved.path)
            resumed = self._by_key.get(key)
            if resumed is not None:
                self._watch_rotation(saved.path, resumed)

    def _watch_rotation(self, live_path: str, rotated: Source) -> None:
        try:
            since = os.fstat(rotated.fd).st_mtime_ns
        except OSError:
            return
        self._rotating[live_path] = min(since, self._rotating.get(live_path, since))
        self._adopt_rotated(live_path, since)

    def _adopt_rotated(self, live_path: str, since: int) -> None:
        """Open files rotated away from ``live_path`` since ``since`` that no scan has seen.

        Rotated names start with the live name (``app.jsonl.1``, ``app.jsonl.2026-11-22``). A sibling
        last written after a file we saw rotate came after it, possibly created and rotated away between
        two scans or while the shipper was down; unknown to the checkpoint, it is read from the start
        (what of it was shipped already is a harmless 409).
        """
        known = self.store.positions if self.store is not None else {}
        for sibling in _rotated_siblings(live_path):
            with contextlib.suppress(OSError):
                st = sibling.stat()
                key = file_key(st.st_dev, st.st_ino)
                if st.st_mtime_ns >= since and key not in known and key not in self._by_key:
                    self._consider(str(sibling), rotated=True, live_path=live_path)

    # --- reading --------------------------------------------------------------------------------------------

    def read(self, *, max_lines: int, max_bytes: int) -> list[Line]:
        """Complete lines from the inputs, at most about ``max_lines`` / ``max_bytes`` (one chunk each)."""
        out: list[Line] = []
        nbytes = 0
        now = time.monotonic()
        for src in list(self.sources):
            if len(out) >= max_lines or nbytes >= max_bytes:
                break
            if src.closed:
                continue
            data = self._read_chunk(src)
            if data:
                src.eof = False
                src.idle_since = None
                nbytes += len(data)
                self._split(src, data, out)
            else:
                # A quiet stdin is not at its end: only its closing is (then it is closed and retired).
                src.eof = src.key is not None
                if src.idle_since is None:
                    src.idle_since = now
                if src.rotated and (not self.follow or now - src.idle_since >= self.rotated_close_after):
                    src.close()
        self._retire()
        self.last_read_bytes = nbytes
        return out

    def _read_chunk(self, src: Source) -> bytes:
        if src.key is None:
            return self._read_stdin(src)
        try:
            data = os.pread(src.fd, self.chunk_bytes, src.pos)
        except OSError as exc:
            log.error("cannot read input file; closing it", extra={"file": src.path, "error": exc.strerror})
            src.rotated = True
            src.close()
            return b""
        head = src.head
        # Truncated (copytruncate) and perhaps already rewritten past our position: the file no longer
        # starts with what we read there. Checked after the read, so a chunk is never a mix of the old
        # and the new content (what the old content held beyond our position is in the copy).
        if (data and head and os.pread(src.fd, len(head), 0) != head) or (
            not data and os.fstat(src.fd).st_size < src.pos
        ):
            src.truncated()
            data = os.pread(src.fd, self.chunk_bytes, 0)
        if src.pos < HEAD_BYTES:
            src.head += data[: HEAD_BYTES - src.pos]
        src.pos += len(data)
        return data

    def _read_stdin(self, src: Source) -> bytes:
        ready, _, _ = select.select([src.fd], [], [], 0)
        if not ready:
            return b""
        data = os.read(src.fd, self.chunk_bytes)
        if not data:
            src.rotated = True  # end of stdin: nothing more will come
            src.close()
        src.pos += len(data)
        return data

    def _split(self, src: Source, data: bytes, out: list[Line]) -> None:
        gen = src.generation
        if src.skip_head is not None:
            nl = data.find(b"\n")
            if nl < 0:
                src.skip_len += len(data)
                return
            length = src.skip_len + nl
            end = src.buf_start + length + 1
            out.append(Line(src, gen, src.buf_start, end, src.skip_head, oversize=length))
            src.skip_head = None
            src.buf_start = end
            data = data[nl + 1 :]
        parts = data.split(b"\n")
        if src.buf:  # the line begun in the previous chunk: joined to its end alone, not to the whole chunk
            parts[0] = src.buf + parts[0]
        tail = parts.pop()
        offset = src.buf_start
        limit = self.max_line_bytes
        append = out.append
        for part in parts:
            end = offset + len(part) + 1
            if len(part) > limit:
                append(Line(src, gen, offset, end, part[:OVERSIZE_HEAD_BYTES], oversize=len(part)))
            else:
                append(Line(src, gen, offset, end, part))
            offset = end
        src.buf_start = offset
        if len(tail) > limit:
            src.skip_head = tail[:OVERSIZE_HEAD_BYTES]
            src.skip_len = len(tail)
            src.buf = b""
        else:
            src.buf = tail

    def _retire(self) -> None:
        """Forget closed inputs whose lines are all done, keeping their final checkpoint entry."""
        keep: list[Source] = []
        for src in self.sources:
            if src.closed and not src.pending:
                if src.key is not None:
                    if self.store is not None:
                        pos = src.position()
                        if pos is not None:
                            self.store.positions[src.key] = pos
                    del self._by_key[src.key]
            else:
                keep.append(src)
        self.sources = keep

    # --- state ------------------------------------------------------------------------------------------------

    @property
    def exhausted(self) -> bool:
        """Every input is at its end (``--once``) and stdin, if read, is closed."""
        return all(src.eof or src.closed for src in self.sources)

    @property
    def finished(self) -> bool:
        """Nothing more can ever come: the only input is stdin and it is closed."""
        return self.patterns == (STDIN,) and self._stdin is not None and self._stdin.closed

    def update_store(self) -> bool:
        """Copy every file's acknowledged position into the checkpoint store; True when something moved."""
        if self.store is None:
            return False
        changed, self._store_changed = self._store_changed, False
        for src in self.sources:
            pos = src.position()
            if pos is None or src.key is None:
                continue
            old = self.store.positions.get(src.key)
            if old != pos:
                self.store.positions[src.key] = pos
                changed = True
        return changed

    def lag_bytes(self) -> int:
        """Bytes written to the open files and not read yet."""
        total = 0
        for src in self.sources:
            if src.key is not None and not src.closed:
                with contextlib.suppress(OSError):
                    total += max(0, os.fstat(src.fd).st_size - src.pos)
        return total

    def close(self) -> None:
        for src in self.sources:
            src.close()
