"""A private RabbitMQ node for the tests that must put the broker in trouble (a resource
alarm, an app restart): never the machine's own node, which every test run shares.

The node runs as the `rabbitmq` user with its own node name, ports, config file (the
machine's `/etc/rabbitmq/rabbitmq.conf` pins 5672), plugins file, data and log directories
in a temporary directory, and is stopped and removed at the end. Tests using it are skipped
where it cannot start (no `rabbitmq-server`, not root).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest

from tests.support import free_port

START_WAIT_S = 60.0


@dataclass
class PrivateNode:
    name: str
    port: int
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    async def ctl(self, *args: str) -> str:
        """`rabbitmqctl -n <node> ...` as the rabbitmq user (its Erlang cookie)."""
        proc = await asyncio.create_subprocess_exec(
            "runuser", "-u", "rabbitmq", "--", "env", *_env_args(self.env),
            "rabbitmqctl", "-n", self.name, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), START_WAIT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {args}: {err.decode()}")
        return out.decode()

    async def alarm(self) -> None:
        """Set off a memory alarm: RabbitMQ blocks every publishing connection."""
        await self.ctl("set_vm_memory_high_watermark", "0.00001")

    async def clear_alarm(self) -> None:
        await self.ctl("set_vm_memory_high_watermark", "0.4")


def _env_args(env: dict[str, str]) -> list[str]:
    return [f"{key}={value}" for key, value in env.items()]


def _usable() -> bool:
    return os.geteuid() == 0 and shutil.which("rabbitmq-server") is not None


def _prepare(port: int) -> Path:
    """A directory owned by rabbitmq with the node's config, plugins, data and logs."""
    base = Path(tempfile.mkdtemp(prefix="hl-test-rabbit-"))
    (base / "rabbitmq.conf").write_text(f"listeners.tcp.local = 127.0.0.1:{port}\n")
    (base / "enabled_plugins").write_text("[].\n")
    for sub in ("mnesia", "log"):
        (base / sub).mkdir()
    shutil.chown(base, "rabbitmq", "rabbitmq")
    for path in base.iterdir():
        shutil.chown(path, "rabbitmq", "rabbitmq")
    return base


@asynccontextmanager
async def private_node() -> AsyncIterator[PrivateNode]:
    """A fresh node for the block; skips the test where one cannot run."""
    if not _usable():
        pytest.skip("a private RabbitMQ node needs root and rabbitmq-server")
    port, dist_port = free_port(), free_port()
    base = _prepare(port)
    node = PrivateNode(
        name=f"hl-test-{uuid.uuid4().hex[:8]}@localhost",
        port=port,
        env={
            "RABBITMQ_NODE_PORT": str(port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
        },
    )
    node.env["RABBITMQ_NODENAME"] = node.name
    server = await asyncio.create_subprocess_exec(
        "runuser", "-u", "rabbitmq", "--", "env", *_env_args(node.env), "rabbitmq-server",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=base,
    )  # fmt: skip
    try:
        await _wait_until_up(node)
        yield node
    finally:
        try:
            await node.ctl("stop")
        except Exception:
            server.kill()
        await asyncio.wait_for(server.wait(), START_WAIT_S)
        shutil.rmtree(base, ignore_errors=True)


async def _wait_until_up(node: PrivateNode) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_WAIT_S
    while True:
        try:
            connection = await aio_pika.connect(node.url, timeout=2)
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)
            continue
        await connection.close()
        return
