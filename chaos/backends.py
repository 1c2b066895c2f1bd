"""Private RabbitMQ nodes and a private Postgres for faults, never the machine's own servers.

Every node and server started here runs as its system user (`rabbitmq`, `postgres`) in a
session of its own, on free ports, with data and logs in a temporary directory; `close()`
stops it, kills whatever is left of its process group and removes the directory, also after
a failure (each backend registers an `atexit` hook as a last resort). Every `rabbitmqctl`
call names a private node with `-n`: a node name not made here is refused.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.procs import die_with_parent, free_port

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
NODE_PREFIX = "hl-chaos-"
"""Every private node's name starts with this; `rabbitmqctl` is refused any other node."""
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0


class BackendError(RuntimeError):
    """A private backend could not be started, changed or stopped."""


@dataclass(frozen=True)
class _Identity:
    """How to run a child as a system user: a command prefix, or a uid and gid to switch to."""

    prefix: tuple[str, ...] = ()
    uid: int | None = None
    gid: int | None = None

    @property
    def extra_groups(self) -> list[int] | None:
        return [] if self.uid is not None else None


def _as_user(user: str) -> _Identity:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        return _Identity(uid=entry.pw_uid, gid=entry.pw_gid)
    if pwd.getpwuid(os.geteuid()).pw_name == user:
        return _Identity()
    return _Identity(prefix=("sudo", "-n", "-E", "-u", user, "--"))


def run_as(user: str, command: Sequence[str], env: dict[str, str], timeout_s: float) -> str:
    """Run `command` as `user` to completion; its output, or BackendError when it failed."""
    who = _as_user(user)
    try:
        done = subprocess.run(
            [*who.prefix, *command],
            env=env,
            cwd="/",
            capture_output=True,
            timeout=timeout_s,
            check=False,
            user=who.uid,
            group=who.gid,
            extra_groups=who.extra_groups,
        )
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"{command[0]} {command[1:3]} timed out after {timeout_s}s") from exc
    output = (done.stdout + done.stderr).decode(errors="replace")
    if done.returncode != 0:
        raise BackendError(f"{' '.join(command)} exited {done.returncode}: {output[-1500:]}")
    return output


def spawn_as(
    user: str, command: Sequence[str], env: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    """Start a long-running `command` as `user` in a session of its own, output to `log`."""
    who = _as_user(user)
    with log.open("ab") as out:
        return subprocess.Popen(
            [*who.prefix, *command],
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
            user=who.uid,
            group=who.gid,
            extra_groups=who.extra_groups,
        )


def kill_group(popen: subprocess.Popen[bytes] | None, sig: int = signal.SIGKILL) -> None:
    """Send `sig` to the whole process group of `popen` (its session), if any is left."""
    if popen is None:
        return
    try:
        os.killpg(popen.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    if sig == signal.SIGKILL:
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            pass


def owned_tempdir(prefix: str, user: str) -> Path:
    """A new temporary directory that `user` owns (its parents stay traversable)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def require(binary: Path, package: str) -> None:
    """BackendError naming the package to install when `binary` is missing."""
    if not binary.exists():
        raise BackendError(
            f"{binary} is missing: install {package} (scripts/ensure-services.sh does, as root)"
        )


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class RabbitNode:
    """One private RabbitMQ node (`hl-chaos-…@localhost`) with its own ports and directories."""

    name: str
    base: Path
    amqp_port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    popen: subprocess.Popen[bytes] | None = None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def log_path(self) -> Path:
        return self.base / "console.log"

    def env(self) -> dict[str, str]:
        """The environment of this node's server and of every `rabbitmqctl` aimed at it."""
        keep = ("PATH", "LANG", "LC_ALL")
        env = {k: v for k, v in os.environ.items() if k in keep}
        env.update(
            {
                "HOME": pwd.getpwnam("rabbitmq").pw_dir,  # the shared Erlang cookie lives there
                "RABBITMQ_NODENAME": self.name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.amqp_port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
                "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
                "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.base / "log"),
                "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
                "RABBITMQ_LOGS": "-",
            }
        )
        return env

    def write_config(self) -> None:
        files = {
            # The machine's /etc/rabbitmq/rabbitmq.conf pins its listener to 5672: not read here.
            "rabbitmq.conf": (
                f"listeners.tcp.default = 127.0.0.1:{self.amqp_port}\n"
                "loopback_users.guest = true\n"
                "vm_memory_high_watermark.relative = 0.4\n"
                "disk_free_limit.absolute = 50MB\n"
                # Spread quorum queue leaders over the cluster, so killing one node moves some.
                "queue_leader_locator = balanced\n"
            ),
            # The machine's env file names its own node; ours only keeps the loopback binding.
            "rabbitmq-env.conf": (
                "ERL_EPMD_ADDRESS=127.0.0.1\n"
                'SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"\n'
            ),
            "enabled_plugins": "[].\n",
        }
        for name, text in files.items():
            (self.base / name).write_text(text)
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(exist_ok=True)
        if os.geteuid() == 0:
            entry = pwd.getpwnam("rabbitmq")
            for path in self.base.rglob("*"):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self) -> None:
        """Start the server and wait until the node runs its application."""
        if self.popen is not None and self.popen.poll() is None:
            raise BackendError(f"{self.name} is already running")
        require(RABBITMQ_BIN / "rabbitmq-server", "the Debian package rabbitmq-server")
        self.popen = spawn_as(
            "rabbitmq", [str(RABBITMQ_BIN / "rabbitmq-server")], self.env(), self.log_path
        )
        self.wait_running()

    def wait_running(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise BackendError(f"{self.name} exited {self.popen.returncode}: {self.log_tail()}")
            try:
                self.ctl("await_startup", "--timeout", "10", timeout_s=20)
                return
            except BackendError:
                time.sleep(1)
        raise BackendError(f"{self.name} did not start within {START_TIMEOUT_S}s")

    def ctl(self, *args: str, timeout_s: float = 60.0) -> str:
        """`rabbitmqctl -n <this node> args…`, as the rabbitmq user."""
        if not self.name.startswith(NODE_PREFIX):
            raise BackendError(f"refusing to run rabbitmqctl against {self.name}")
        command = [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.name, *args]
        return run_as("rabbitmq", command, self.env(), timeout_s)

    def diagnostics(self, *args: str, timeout_s: float = 60.0) -> str:
        """`rabbitmq-diagnostics -n <this node> args…`, as the rabbitmq user."""
        if not self.name.startswith(NODE_PREFIX):
            raise BackendError(f"refusing to run rabbitmq-diagnostics against {self.name}")
        command = [str(RABBITMQ_BIN / "rabbitmq-diagnostics"), "-n", self.name, *args]
        return run_as("rabbitmq", command, self.env(), timeout_s)

    def queues(self, prefix: str) -> list[dict[str, str]]:
        """Name, type, leader (a quorum queue's, else its node), messages and consumers of
        every queue whose name starts with `prefix`."""
        columns = ("name", "type", "leader", "pid", "messages", "consumers")
        text = self.ctl("list_queues", "--quiet", "--no-table-headers", *columns)
        found = []
        for line in text.splitlines():
            values = line.split("\t")
            if len(values) == len(columns) and values[0].startswith(prefix):
                row = dict(zip(columns, values, strict=True))
                # A classic queue has no leader: its process id (`<node.1.2.3>`) names its node.
                row["leader"] = row["leader"] or row.pop("pid").strip("<>").rsplit(".", 3)[0]
                found.append(row)
        return found

    def kill(self) -> None:
        """kill -9 the node (its whole process group): a crash, no goodbye to the cluster."""
        kill_group(self.popen)

    def stop(self) -> None:
        """Stop the node in order (`rabbitmqctl stop`), then make sure nothing of it is left."""
        if self.popen is not None and self.popen.poll() is None:
            try:
                self.ctl("stop", timeout_s=STOP_TIMEOUT_S)
                self.popen.wait(STOP_TIMEOUT_S)
            except (BackendError, subprocess.TimeoutExpired):
                pass
        kill_group(self.popen)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class PrivateRabbit:
    """One private RabbitMQ node, or a cluster of `size` nodes joined with each other."""

    def __init__(self, size: int = 1) -> None:
        tag = uuid.uuid4().hex[:6]
        self.root = owned_tempdir(f"hookline-chaos-rabbit-{tag}-", "rabbitmq")
        self.nodes: list[RabbitNode] = []
        for number in range(1, size + 1):
            base = self.root / f"n{number}"
            base.mkdir()
            self.nodes.append(RabbitNode(f"{NODE_PREFIX}{tag}-{number}@localhost", base))
        atexit.register(self.close)

    @property
    def seed(self) -> RabbitNode:
        return self.nodes[0]

    @property
    def amqp_url(self) -> str:
        return self.seed.amqp_url

    def start(self) -> PrivateRabbit:
        """Start every node and cluster the others with the first one."""
        try:
            for node in self.nodes:
                node.write_config()
                node.start()
            for node in self.nodes[1:]:
                node.ctl("stop_app")
                node.ctl("join_cluster", self.seed.name)
                node.ctl("start_app")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop every node and remove every file; safe to call twice."""
        for node in reversed(self.nodes):
            node.stop()
        _remove_tree(self.root)


@dataclass
class PrivatePostgres:
    """A private Postgres 15 server (initdb + postgres as the postgres user), trust auth."""

    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: owned_tempdir("hookline-chaos-pg-", "postgres"))
    popen: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}

    def start(self) -> PrivatePostgres:
        """initdb on first use, then start the server and wait until it accepts connections."""
        atexit.register(self.close)
        try:
            require(POSTGRES_BIN / "initdb", "the Debian package postgresql-15")
            if not self.data_dir.exists():
                initdb = [str(POSTGRES_BIN / "initdb"), "-D", str(self.data_dir)]
                run_as("postgres", [*initdb, "-A", "trust", "-U", "postgres"], self._env(), 120)
            self.launch()
        except BaseException:
            self.close()
            raise
        return self

    def launch(self) -> None:
        command = [
            *(str(POSTGRES_BIN / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)),
            *("-k", str(self.root), "-c", "listen_addresses=127.0.0.1"),
            # A restart here is always a clean shutdown: durability against power loss is not
            # what the suite measures, and the machine is shared.
            *("-c", "fsync=off", "-c", "max_connections=200"),
        ]
        self.popen = spawn_as("postgres", command, self._env(), self.root / "server.log")
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        ready = [str(POSTGRES_BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        while time.monotonic() < deadline:
            if self.popen is not None and self.popen.poll() is not None:
                raise BackendError(f"postgres exited {self.popen.returncode}")
            if subprocess.run(ready, capture_output=True, check=False).returncode == 0:
                return
            time.sleep(0.3)
        raise BackendError(f"postgres did not accept connections within {START_TIMEOUT_S}s")

    def stop(self) -> None:
        """A fast shutdown (SIGINT, as `pg_ctl -m fast`): clients are disconnected."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                kill_group(self.popen)

    def close(self) -> None:
        """Stop the server and remove its data; safe to call twice."""
        self.stop()
        kill_group(self.popen)
        _remove_tree(self.root)
