"""Private servers for tests that stop, restart or crash them.

The machine's RabbitMQ (5672) and PostgreSQL (5432) are shared with other runs
and people: no test may touch their lifecycle. A test that needs an outage asks
for ``private_rabbit`` (a RabbitMQ node of its own: own node name, AMQP and
distribution ports, cookie, mnesia, logs and config under a temp directory) or
``private_postgres`` (a PostgreSQL cluster of its own made with
``pg_createcluster``). Each is started once per session (startup takes seconds)
on names and ports picked for this run, so two runs on one machine never meet,
and removed at the end of the session, nothing left running, even when tests
fail. A run killed outright leaves them behind; the next run removes servers
whose creating process is gone (``reap_orphans``).

Both need root (or the rabbitmq/postgres users' rights) and Debian's packages
(``/usr/lib/rabbitmq/bin``, ``postgresql-common``).
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from hutch.config import normalize_backend_url
from hutch.results.migrate import upgrade
from support.waiting import eventually

RABBIT_BIN = Path(os.environ.get("HUTCH_TEST_RABBITMQ_BIN", "/usr/lib/rabbitmq/bin"))
PG_LIB = Path("/usr/lib/postgresql")
NAME_PREFIX = "hutchtest"
RABBIT_ROOTS = Path(tempfile.gettempdir())


def free_port() -> int:
    """A TCP port nobody listens on right now, from below the kernel's ephemeral range.

    A port the kernel picked (bind to 0) comes from the range it also hands out as the
    local end of outgoing connections: while a private server is down, a client retrying
    it, or any other connection on the machine, can take its port, and the server fails
    to come back with ``eaddrinuse``. Ports under the range are never handed out that way.
    """
    low = _ephemeral_low()
    for _ in range(200):
        port = random.randrange(20000, low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port in 20000-{low - 1}")


def _ephemeral_low() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, 20001)


def pid_alive(pid: int) -> bool:
    """True for a running process (a zombie waiting for init to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}): "
                           f"{(out.stderr or out.stdout).strip()[-2000:]}")
    return out


class PrivateRabbit:
    """A RabbitMQ node of this test run's own. ``url`` is its AMQP URL (guest/guest);
    with ``management``, ``management_url`` its management HTTP API (statistics
    collected every 0.5 s instead of 5, so tests wait less for fresh counts)."""

    def __init__(self, root: Path, management: bool = False, cookie: str | None = None) -> None:
        """``cookie``: the Erlang cookie (nodes of one cluster share it); random if None."""
        self.root = root
        self.cookie = cookie or uuid.uuid4().hex.upper()
        tag = root.name.rsplit("-", 1)[-1]
        self.node = f"{NAME_PREFIX}{tag}@localhost"
        self.port, self.dist_port = free_port(), free_port()
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"
        self.management_port = free_port() if management else None
        self.management_url = (f"http://guest:guest@127.0.0.1:{self.management_port}/"
                               if management else None)
        self.pid_file = root / "beam.pid"
        self.beam_pid: int | None = None
        self._background: tuple[threading.Thread, list[BaseException]] | None = None

    # --- lifecycle ---------------------------------------------------------------

    def start(self, timeout: float = 90) -> PrivateRabbit:
        """Boot the node (first time: write its files) and wait until it accepts AMQP."""
        if not (self.root / "rabbitmq.conf").exists():
            self._write_files()
        self.pid_file.unlink(missing_ok=True)
        _run([str(RABBIT_BIN / "rabbitmq-server"), "-detached"], self._env())
        deadline = time.monotonic() + timeout
        while self.ctl("await_startup", "--timeout", "60", check=False).returncode != 0:
            if time.monotonic() > deadline:  # "not running at all" until it registers
                raise RuntimeError(f"private RabbitMQ {self.node} did not start:\n"
                                   + self.log_tail())
            time.sleep(0.3)
        self.beam_pid = int(self.ctl("eval", "os:getpid().").stdout.strip().strip('"'))
        self.wait_accepting(timeout)
        return self

    def stop_app(self) -> None:
        """Stop the RabbitMQ application (connections closed, port shut); the VM stays."""
        self._settle()
        self.ctl("stop_app")

    def start_app(self) -> None:
        """Start the application again (the command returns once it has started) and wait
        until AMQP connections are accepted."""
        self.ctl("start_app")
        self.wait_accepting()

    def restart(self) -> None:
        self.stop_app()
        self.start_app()

    def stop(self) -> None:
        """Stop the whole node (``rabbitmqctl stop`` waits for the OS process to exit)."""
        self._settle()
        if self.running():
            self.ctl("stop", str(self.pid_file), check=False)
            self._wait_gone()

    def kill(self) -> None:
        """Crash the node: SIGKILL its beam process, no goodbye to any client."""
        self._settle()
        assert self.beam_pid is not None, "node not started"
        os.kill(self.beam_pid, signal.SIGKILL)
        self._wait_gone()

    def outage(self, how: str, seconds: float) -> float:
        """Take the node down (``stop_app``, ``stop`` or ``kill``), keep it down ``seconds``,
        bring it back. Returns the wall-clock time (``time.time()``) at which it first
        accepted an AMQP connection again, as soon as it does: the start command finishes
        in the background (the next lifecycle call waits for it)."""
        down = {"stop_app": self.stop_app, "stop": self.stop, "kill": self.kill}[how]
        down()
        time.sleep(seconds)
        self._in_background(self.start_app if how == "stop_app" else self.start)
        return self.wait_accepting(90)

    def _in_background(self, command: Callable[[], object]) -> None:
        errors: list[BaseException] = []

        def run() -> None:
            try:
                command()
            except BaseException as exc:  # re-raised by _settle
                errors.append(exc)

        self._background = (threading.Thread(target=run, daemon=True), errors)
        self._background[0].start()

    def _settle(self) -> None:
        """Wait for a start left running by outage(); raise what it raised."""
        background, self._background = self._background, None
        if background is not None:
            background[0].join(120)
            if background[1]:
                raise background[1][0]

    def remove(self) -> None:
        """Kill the node and delete its directory: nothing left running or on disk (its
        data goes with it, so there is nothing to stop gracefully for)."""
        try:
            self._settle()
        finally:
            if self.running():
                self.kill()
            shutil.rmtree(self.root, ignore_errors=True)

    # --- state -------------------------------------------------------------------

    def running(self) -> bool:
        return self.beam_pid is not None and pid_alive(self.beam_pid)

    def accepting(self) -> bool:
        """True when an AMQP connection (not only TCP) can be opened right now."""
        params = pika.ConnectionParameters("127.0.0.1", self.port, "/",
                                           pika.PlainCredentials("guest", "guest"),
                                           connection_attempts=1, socket_timeout=2,
                                           blocked_connection_timeout=2)
        try:
            pika.BlockingConnection(params).close()
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False
        return True

    def wait_accepting(self, timeout: float = 60) -> float:
        """Poll until AMQP connections are accepted; returns ``time.time()`` then."""
        if not eventually(self.accepting, timeout):
            raise RuntimeError(f"private RabbitMQ on {self.port} never accepted AMQP:\n"
                               + self.log_tail())
        return time.time()

    def ctl(self, *args: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run([str(RABBIT_BIN / "rabbitmqctl"), "-q", "-n", self.node, *args],
                    self._env(), timeout, check)

    def log_tail(self, lines: int = 40) -> str:
        logs = sorted((self.root / "log").glob("*.log"))
        return "".join("\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                       for p in logs)

    # --- internals ---------------------------------------------------------------

    def _write_files(self) -> None:
        (self.root / "mnesia").mkdir(parents=True, exist_ok=True)
        (self.root / "log").mkdir(exist_ok=True)
        conf = f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
        plugins = "[]"
        if self.management_port is not None:
            conf += (f"management.tcp.ip = 127.0.0.1\nmanagement.tcp.port = "
                     f"{self.management_port}\ncollect_statistics_interval = 500\n")
            plugins = "[rabbitmq_management]"
        (self.root / "enabled_plugins").write_text(f"{plugins}.\n")
        (self.root / "rabbitmq.conf").write_text(conf)
        (self.root / "advanced.config").write_text("[].\n")
        (self.root / "rabbitmq-env.conf").write_text("")  # the system one is not read
        cookie = self.root / ".erlang.cookie"
        cookie.write_text(self.cookie)
        cookie.chmod(0o400)
        (self.root / "owner").write_text(str(os.getpid()))

    def _env(self) -> dict[str, str]:
        r = self.root
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(r),  # the Erlang cookie lives there, for the node and for rabbitmqctl
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(r / "mnesia"),
            RABBITMQ_LOG_BASE=str(r / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(r / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(r / "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(r / "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=str(r / "rabbitmq-env.conf"),
            RABBITMQ_PID_FILE=str(self.pid_file),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _wait_gone(self, timeout: float = 60) -> None:
        if not eventually(lambda: not self.running(), timeout):
            raise RuntimeError(f"private RabbitMQ {self.node} (pid {self.beam_pid}) "
                               "did not exit")


class PrivateCluster:
    """Three private RabbitMQ nodes joined in one cluster (one cookie), each with its own
    AMQP port: ``urls`` in node order. Kill or stop any one of them; ``revive`` brings a
    node back into the cluster. The first node also serves the management API
    (``nodes[0].management_url``), which answers for the whole cluster."""

    def __init__(self, size: int = 3) -> None:
        tag = run_tag()
        cookie = uuid.uuid4().hex.upper()
        self.nodes: list[PrivateRabbit] = []
        for i in range(size):
            root = RABBIT_ROOTS / f"{NAME_PREFIX}-rabbit-{tag}c{i}"
            root.mkdir(mode=0o700)
            self.nodes.append(PrivateRabbit(root, management=i == 0, cookie=cookie))

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self) -> PrivateCluster:
        """Boot every node, then join the others to the first."""
        for node in self.nodes:
            node.start()
        first = self.nodes[0].node
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first)
            node.start_app()
        running = self.nodes[0].ctl("eval", "length(rabbit_nodes:all_running()).").stdout
        assert running.strip() == str(len(self.nodes)), running
        return self

    def revive(self, index: int) -> None:
        """Start a node that was killed or stopped; it rejoins the cluster by itself."""
        node = self.nodes[index]
        node._settle()
        if not node.running():
            node.start()
        elif not node.accepting():
            node.start_app()

    def remove(self) -> None:
        for node in self.nodes:
            node.remove()


def _pg_version() -> str:
    versions = sorted((p.name for p in PG_LIB.iterdir() if p.name.isdigit()), key=int)
    if not versions:
        raise RuntimeError(f"no PostgreSQL server under {PG_LIB}")
    return versions[-1]


class PrivatePostgres:
    """A PostgreSQL cluster of this run's own (trust auth on 127.0.0.1:``port``)."""

    def __init__(self, name: str) -> None:
        self.name, self.version, self.port = name, _pg_version(), free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._engine: sa.Engine | None = None

    def create(self) -> PrivatePostgres:
        _run(["pg_createcluster", self.version, self.name, "-p", str(self.port),
              "--", "--auth-local=trust", "--auth-host=trust"])
        self.start()
        return self

    def start(self) -> None:
        self._ctl("start")
        self.wait_accepting()

    def crash(self) -> None:
        """``stop -m immediate``: no checkpoint, connections cut; the next start recovers."""
        self.dispose()
        self._ctl("stop", "-m", "immediate")

    def stop(self) -> None:
        self.dispose()
        self._ctl("stop", "-m", "fast")

    def remove(self) -> None:
        self.dispose()
        _run(["pg_dropcluster", "--stop", self.version, self.name], check=False)
        if self.exists():
            raise RuntimeError(f"cluster {self.version}/{self.name} is still listed")

    def exists(self) -> bool:
        return any(line.split()[:2] == [self.version, self.name] for line in _lsclusters())

    def running(self) -> bool:
        return any(line.split()[:2] == [self.version, self.name] and "online" in line
                   for line in _lsclusters())

    def accepting(self) -> bool:
        try:
            with self.engine().connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except sa.exc.OperationalError:
            self.dispose()
            return False
        return True

    def wait_accepting(self, timeout: float = 60) -> None:
        if not eventually(self.accepting, timeout):
            raise RuntimeError(f"private PostgreSQL {self.name} never accepted connections")

    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = sa.create_engine(normalize_backend_url(self.admin_url),
                                            isolation_level="AUTOCOMMIT", pool_pre_ping=True)
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def create_database(self, template: str | None = None) -> str:
        """A new database (cloned from ``template`` if given); returns its URL."""
        name = f"hutch_{uuid.uuid4().hex[:12]}"
        clause = f' TEMPLATE "{template}"' if template else ""
        with self.engine().connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"{clause}')
        return self.url_of(name)

    def drop_database(self, url: str) -> None:
        with self.engine().connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')

    def url_of(self, database: str) -> str:
        return make_url(self.admin_url).set(database=database).render_as_string(
            hide_password=False)

    def _ctl(self, *args: str) -> None:
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, *args])


def _lsclusters() -> list[str]:
    return _run(["pg_lsclusters", "--no-header"], check=False).stdout.splitlines()


def run_tag() -> str:
    """``<pid>x<random>``: unique per run, and tells a later run whose servers these were."""
    return f"{os.getpid()}x{uuid.uuid4().hex[:6]}"


def reap_orphans() -> None:
    """Remove private servers left by test runs that were killed before their teardown
    (the pid in the name is the creating pytest process, and it is gone)."""
    for root in RABBIT_ROOTS.glob(f"{NAME_PREFIX}-rabbit-*"):
        owner = root / "owner"
        with contextlib.suppress(OSError, ValueError):
            if owner.exists() and not pid_alive(int(owner.read_text())):
                pid_file = root / "beam.pid"
                if pid_file.exists():
                    with contextlib.suppress(OSError, ValueError):
                        os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)
                shutil.rmtree(root, ignore_errors=True)
    for line in _lsclusters():
        version, name = (line.split() + ["", ""])[:2]
        pid = name.removeprefix(f"{NAME_PREFIX}_").split("x", 1)[0]
        if name.startswith(f"{NAME_PREFIX}_") and pid.isdigit() and not pid_alive(int(pid)):
            _run(["pg_dropcluster", "--stop", version, name], check=False)


# --- fixtures -------------------------------------------------------------------------

@pytest.fixture(scope="session")
def _orphans_reaped() -> None:
    reap_orphans()


@contextlib.contextmanager
def _started_node(management: bool = False) -> Iterator[PrivateRabbit]:
    root = RABBIT_ROOTS / f"{NAME_PREFIX}-rabbit-{run_tag()}"
    root.mkdir(mode=0o700)
    node = PrivateRabbit(root, management)
    try:
        node.start()
        yield node
    finally:
        node.remove()


@pytest.fixture(scope="session")
def _rabbit_node(_orphans_reaped: None) -> Iterator[PrivateRabbit]:
    with _started_node() as node:
        yield node


@pytest.fixture(scope="session")
def private_rabbit_management(_orphans_reaped: None) -> Iterator[PrivateRabbit]:
    """A second private node, with the management plugin on (``management_url``), for
    tests of the management API; the shared RabbitMQ must not have it switched on. Do
    not stop it: it is not restarted for the next test."""
    with _started_node(management=True) as node:
        yield node


@pytest.fixture(scope="session")
def _cluster(_orphans_reaped: None) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster()
    try:
        yield cluster.start()
    finally:
        cluster.remove()


@pytest.fixture
def private_cluster(_cluster: PrivateCluster) -> PrivateCluster:
    """This session's private 3-node RabbitMQ cluster, every node running (a test
    before may have killed one). Kill or stop any of them as you like."""
    for index in range(len(_cluster.nodes)):
        _cluster.revive(index)
    return _cluster


@pytest.fixture
def private_rabbit(_rabbit_node: PrivateRabbit) -> PrivateRabbit:
    """This session's private RabbitMQ node, running and accepting connections (a test
    before may have stopped or killed it). Restart, stop or kill it as you like."""
    _rabbit_node._settle()
    if not _rabbit_node.running():
        _rabbit_node.start()
    elif not _rabbit_node.accepting():
        _rabbit_node.start_app()
    return _rabbit_node


@pytest.fixture
def private_topology_prefix(private_rabbit: PrivateRabbit) -> str:
    """A topology prefix for this test on the private node (the node is this session's
    alone, so what a test declares there is left for the node's removal)."""
    return f"hutchtest.{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def _postgres_cluster(_orphans_reaped: None) -> Iterator[tuple[PrivatePostgres, str]]:
    cluster = PrivatePostgres(f"{NAME_PREFIX}_{run_tag()}")
    try:
        cluster.create()
        template = make_url(cluster.create_database()).database
        upgrade(cluster.url_of(template))
        yield cluster, template
    finally:
        cluster.remove()


@pytest.fixture
def private_postgres(_postgres_cluster: tuple[PrivatePostgres, str]) -> PrivatePostgres:
    """This session's private PostgreSQL cluster, running. Crash, stop, start it as you like."""
    cluster, _ = _postgres_cluster
    if not cluster.running():
        cluster.start()
    cluster.wait_accepting()
    return cluster


@pytest.fixture
def private_postgres_url(private_postgres: PrivatePostgres,
                         _postgres_cluster: tuple[PrivatePostgres, str]) -> Iterator[str]:
    """A migrated database for this test alone on the private cluster."""
    url = private_postgres.create_database(template=_postgres_cluster[1])
    yield url
    if not private_postgres.running():
        private_postgres.start()
    private_postgres.drop_database(url)
