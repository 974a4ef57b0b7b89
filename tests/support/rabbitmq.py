"""A real RabbitMQ node (Debian's ``rabbitmq-server``) on a free loopback port, for the broker tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipelines.dev.stack import DevStackError, free_port

#: Where Debian puts the scripts that run the node as the calling user (``/usr/sbin``'s switch to ``rabbitmq``).
_SCRIPTS = Path("/usr/lib/rabbitmq/bin")


@dataclass
class LocalRabbitMQ:
    """One node with its own data, logs and Erlang cookie in a directory of its own; no plugins."""

    port: int = 0
    workdir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, *, timeout: float = 120.0) -> LocalRabbitMQ:
        server = _SCRIPTS / "rabbitmq-server"
        if not server.exists():
            found = shutil.which("rabbitmq-server")
            if found is None:
                raise DevStackError("rabbitmq-server is not installed: `apt-get install rabbitmq-server`")
            server = Path(found)
        self.port = self.port or free_port()
        work = self.workdir = self.workdir or Path(tempfile.mkdtemp(prefix="celery-logs-rabbitmq-"))
        (work / "enabled_plugins").write_text("[].\n")
        (work / "rabbitmq-env.conf").write_text("")
        (work / "rabbitmq.conf").write_text("loopback_users = none\n")
        env = {
            **os.environ,
            "HOME": str(work),
            "RABBITMQ_NODENAME": f"celerylogs{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(work / "mnesia"),
            "RABBITMQ_LOG_BASE": str(work / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(work / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(work / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(work / "rabbitmq"),
            "RABBITMQ_PID_FILE": str(work / "pid"),
        }
        with (work / "console.log").open("wb") as out:
            self.proc = subprocess.Popen([str(server)], env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DevStackError(f"rabbitmq-server exited at startup ({self.proc.returncode}): {self._tail()}")
            if self.ping():
                return self
            time.sleep(0.2)
        self.stop()
        raise DevStackError(f"rabbitmq-server did not answer on port {self.port} within {timeout:.0f} s")

    def ping(self) -> bool:
        """True once the node accepts an AMQP connection and opens a channel."""
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=1) as conn:
                conn.connect()
                return conn.default_channel is not None
        except Exception:  # anything but a working channel means "not yet"
            return False

    def _tail(self) -> str:
        assert self.workdir is not None
        with contextlib.suppress(OSError):
            return (self.workdir / "console.log").read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
