"""The reading stage alone: complete lines with their offsets, across rotation, truncation and torn writes."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.ship.checkpoint import CheckpointStore
from pipelines.ship.reader import Line, Tailer


def _read_all(tailer: Tailer) -> list[Line]:
    out: list[Line] = []
    while True:
        out.extend(tailer.read(max_lines=10_000, max_bytes=1 << 30))
        if not tailer.last_read_bytes:
            return out


def _ack_all(lines: list[Line]) -> None:
    for line in lines:
        line.source.pending.append(line)
        line.remaining = 1
    for line in lines:
        line.source.ack(line)


def test_lines_carry_their_byte_ranges_and_a_torn_line_waits_for_its_newline(tmp_path: Path) -> None:
    """A line without its newline is held back; once completed it ships whole, with exact offsets."""
    f = tmp_path / "a.jsonl"
    f.write_bytes(b'{"a":1}\n{"b":')
    tailer = Tailer([str(f)], store=None, follow=True)
    tailer.start()
    first = _read_all(tailer)
    assert [(x.data, x.start, x.end) for x in first] == [(b'{"a":1}', 0, 8)]
    with f.open("ab") as fh:
        fh.write(b'2}\n')
    second = _read_all(tailer)
    assert [(x.data, x.start, x.end) for x in second] == [(b'{"b":2}', 8, 16)]
    tailer.close()


def test_checkpoint_moves_only_past_a_contiguous_prefix_of_done_lines(tmp_path: Path) -> None:
    """Acknowledging line 2 before line 1 does not move the committed offset past line 1."""
    f = tmp_path / "a.jsonl"
    f.write_bytes(b"1\n22\n333\n")
    tailer = Tailer([str(f)], store=None, follow=False)
    tailer.start()
    lines = _read_all(tailer)
    src = lines[0].source
    for line in lines:
        src.pending.append(line)
        line.remaining = 1
    src.ack(lines[1])
    assert src.committed == 0
    src.ack(lines[0])
    assert src.committed == 5
    src.ack(lines[2])
    assert src.committed == 9
    tailer.close()


def test_restart_resumes_at_the_saved_offset_and_a_reused_inode_starts_over(tmp_path: Path) -> None:
    """A saved position is used when the fingerprint matches, ignored when the content changed."""
    f = tmp_path / "a.jsonl"
    f.write_bytes(b"one\ntwo\n")
    store = CheckpointStore(tmp_path / "cp.json")
    t1 = Tailer([str(f)], store=store, follow=False)
    t1.start()
    _ack_all(_read_all(t1))
    assert t1.update_store()
    store.save()
    t1.close()
    with f.open("ab") as fh:
        fh.write(b"three\n")
    t2 = Tailer([str(f)], store=CheckpointStore(tmp_path / "cp.json").load(), follow=False)
    t2.start()
    assert [x.data for x in _read_all(t2)] == [b"three"]
    t2.close()
    # Same inode, new content (as after an in-place rewrite): read from the start.
    with f.open("r+b") as fh:
        fh.write(b"ONE\nTWO\nTHREE\nFOUR\n")
    t3 = Tailer([str(f)], store=CheckpointStore(tmp_path / "cp.json").load(), follow=False)
    t3.start()
    assert [x.data for x in _read_all(t3)] == [b"ONE", b"TWO", b"THREE", b"FOUR"]
    t3.close()


def test_rename_rotation_drains_the_old_file_and_opens_the_new_one(tmp_path: Path) -> None:
    """After app.jsonl -> app.jsonl.1, lines appended to the old file and written to the new one all arrive."""
    f = tmp_path / "app.jsonl"
    f.write_bytes(b"a1\n")
    tailer = Tailer([str(tmp_path / "*.jsonl")], store=None, follow=True, rotated_close_after=0.0)
    tailer.start()
    assert [x.data for x in _read_all(tailer)] == [b"a1"]
    with f.open("ab") as old:
        f.rename(tmp_path / "app.jsonl.1")
        old.write(b"a2\n")  # a writer still holding the old file
    (tmp_path / "app.jsonl").write_bytes(b"b1\n")
    tailer.scan()
    assert sorted(x.data for x in _read_all(tailer)) == [b"a2", b"b1"]
    assert len(tailer.sources) == 1  # the drained, rotated file was closed and forgotten
    tailer.close()


def test_rotation_while_stopped_is_found_by_identity(tmp_path: Path) -> None:
    """A file rotated away while the shipper was down is finished from its checkpoint before moving on."""
    f = tmp_path / "app.jsonl"
    f.write_bytes(b"a1\na2\n")
    store = CheckpointStore(tmp_path / "cp.json")
    t1 = Tailer([str(tmp_path / "*.jsonl")], store=store, follow=False)
    t1.start()
    _ack_all(_read_all(t1)[:1])  # only a1 acknowledged before the stop
    t1.update_store()
    store.save()
    t1.close()
    f.rename(tmp_path / "app.jsonl.1")
    (tmp_path / "app.jsonl").write_bytes(b"b1\n")
    t2 = Tailer([str(tmp_path / "*.jsonl")], store=CheckpointStore(tmp_path / "cp.json").load(), follow=False)
    t2.start()
    assert sorted(x.data for x in _read_all(t2)) == [b"a2", b"b1"]
    t2.close()


def test_copytruncate_is_noticed_and_the_file_read_again_from_the_start(tmp_path: Path) -> None:
    """A file truncated in place (copytruncate) is read from offset 0 as a new generation."""
    f = tmp_path / "app.jsonl"
    f.write_bytes(b"old-1\nold-2\n")
    tailer = Tailer([str(f)], store=None, follow=True)
    tailer.start()
    old = _read_all(tailer)
    assert [x.data for x in old] == [b"old-1", b"old-2"]
    with f.open("r+b") as fh:
        fh.truncate(0)
    with f.open("ab") as fh:
        fh.write(b"new\n")
    new = _read_all(tailer)
    assert [(x.data, x.start, x.generation) for x in new] == [(b"new", 0, 1)]
    tailer.close()


def test_delete_and_recreate_reads_the_new_file(tmp_path: Path) -> None:
    """A file deleted and created again under the same name is read from its start."""
    f = tmp_path / "app.jsonl"
    f.write_bytes(b"first\n")
    tailer = Tailer([str(f)], store=None, follow=True, rotated_close_after=0.0)
    tailer.start()
    assert [x.data for x in _read_all(tailer)] == [b"first"]
    os.unlink(f)
    f.write_bytes(b"second\n")
    tailer.scan()
    assert [x.data for x in _read_all(tailer)] == [b"second"]
    tailer.close()


def test_an_oversized_line_is_reported_by_its_head_and_length_without_being_held(tmp_path: Path) -> None:
    """A line longer than the bound arrives as its first bytes plus its real length; the next line is intact."""
    f = tmp_path / "big.jsonl"
    big = b"x" * 50_000
    f.write_bytes(b"ok1\n" + big + b"\nok2\n")
    tailer = Tailer([str(f)], store=None, follow=False, max_line_bytes=1000, chunk_bytes=4096)
    tailer.start()
    lines = _read_all(tailer)
    assert [(x.data[:3], x.oversize, x.start, x.end) for x in lines] == [
        (b"ok1", 0, 0, 4),
        (b"xxx", 50_000, 4, 50_005),
        (b"ok2", 0, 50_005, 50_009),
    ]
    head = lines[1].data
    assert head == big[: len(head)] and 1000 < len(head) <= 4096
    tailer.close()


def test_files_rotated_away_unseen_while_stopped_are_read_too(tmp_path: Path) -> None:
    """Two rotations while stopped: the checkpointed file's rest and the never-seen file in between arrive."""
    f = tmp_path / "app.jsonl"
    f.write_bytes(b"a1\n")
    store = CheckpointStore(tmp_path / "cp.json")
    t1 = Tailer([str(f)], store=store, follow=False)
    t1.start()
    _ack_all(_read_all(t1))
    t1.update_store()
    store.save()
    t1.close()
    with f.open("ab") as fh:
        fh.write(b"a2\n")
    f.rename(tmp_path / "app.jsonl.1")
    (tmp_path / "app.jsonl").write_bytes(b"b1\n")
    (tmp_path / "app.jsonl").rename(tmp_path / "app.jsonl.2")
    (tmp_path / "app.jsonl").write_bytes(b"c1\n")
    t2 = Tailer([str(f)], store=CheckpointStore(tmp_path / "cp.json").load(), follow=False)
    t2.start()
    assert sorted(x.data for x in _read_all(t2)) == [b"a2", b"b1", b"c1"]
    t2.close()


def test_a_truncation_rewritten_past_the_read_position_is_noticed_by_fingerprint(tmp_path: Path) -> None:
    """copytruncate followed by more writes than were read before is still seen as a new start."""
    f = tmp_path / "app.jsonl"
    f.write_bytes(b"old-1\n")
    tailer = Tailer([str(f)], store=None, follow=True)
    tailer.start()
    lines = _read_all(tailer)
    _ack_all(lines)
    assert lines[0].source.position() is not None
    with f.open("r+b") as fh:
        fh.truncate(0)
        fh.write(b"new-1\nnew-2\n")
    tailer.scan()
    assert [(x.data, x.start) for x in _read_all(tailer)] == [(b"new-1", 0), (b"new-2", 6)]
    tailer.close()


def test_a_finished_rotated_file_keeps_its_entry_while_it_exists_and_loses_it_once_deleted(tmp_path: Path) -> None:
    """The checkpoint of a long-running shipper does not grow with every rotated file deleted since it began."""
    f = tmp_path / "app.jsonl"
    f.write_bytes(b"a1\n")
    store = CheckpointStore(tmp_path / "cp.json")
    tailer = Tailer([str(f)], store=store, follow=True, rotated_close_after=0.0)
    tailer.start()
    _ack_all(_read_all(tailer))
    old_key = tailer.sources[0].key
    f.rename(tmp_path / "app.jsonl.1")
    f.write_bytes(b"b1\n")
    tailer.scan()
    _ack_all(_read_all(tailer))
    assert _read_all(tailer) == []  # the drained rotated file is closed and retired, its final entry kept
    assert tailer.update_store()
    assert sorted(store.positions) == sorted([old_key, tailer.sources[0].key])
    tailer.forget_gone()
    assert old_key in store.positions  # still on disk: a later scan must know it is done
    tailer.scan()
    assert _read_all(tailer) == []
    (tmp_path / "app.jsonl.1").unlink()
    tailer.forget_gone()
    assert list(store.positions) == [tailer.sources[0].key]
    assert tailer.update_store()  # so the shipper saves the smaller checkpoint
    assert not tailer.update_store()
    tailer.close()
