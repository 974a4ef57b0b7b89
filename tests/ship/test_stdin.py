"""Reading stdin: a slow producer is waited for, and its closing ends the run even in follow mode."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from pipelines import NullSink, Shipper, ShipperConfig
from tests.ship import records


def test_stdin_is_read_until_closed_even_when_the_producer_pauses(tmp_path: Path) -> None:
    """Lines written in two bursts with a pause between all ship; closing the pipe ends the follow-mode run."""
    read_fd, write_fd = os.pipe()
    saved = os.dup(0)
    os.dup2(read_fd, 0)
    os.close(read_fd)
    first_burst_read = threading.Event()
    try:
        shipper = Shipper(
            ShipperConfig(paths=("-",), state_dir=tmp_path / "state", follow=True, tasks_index=None,
                          batch_max_docs=10),
            sink=NullSink(),
            on_progress=lambda s: first_burst_read.set() if s.shipped >= 10 else None,
            progress_interval=0.0,
        )
        result: list[int] = []
        runner = threading.Thread(target=lambda: result.append(shipper.run().shipped))
        runner.start()
        os.write(write_fd, b"".join(records.lines(0, 10)))
        assert first_burst_read.wait(30)
        os.write(write_fd, b"".join(records.lines(10, 25)))
        os.close(write_fd)
        runner.join(30)
        assert not runner.is_alive()
        assert result == [25]
    finally:
        os.dup2(saved, 0)
        os.close(saved)
