"""The faults, one at a time: what each breaks, for how long, and how it is put back.

Each `inject` runs while the streams keep sending, returns the Unix time at which the fault
ended (the moment from which recovery is counted) and notes on what it did, and always puts
the backend back as it was, also when it fails half-way.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bench.procs import Stack
from bench.receiver import Receiver
from chaos.backends import PrivatePostgres, PrivateRabbit, RabbitNode

SHORT_RETRY_DELAYS = "1s,2s,5s,10s,10s,10s,10s,10s,10s,10s,10s,10s,10s,10s,10s"
"""The receiver-down run's schedule: 13 tries within the first 60 s after an attempt fails,
then every 10 s, so that a delivery is tried again soon after the receiver answers (and
its attempts outlast the 60 s outage with room to spare)."""
RECEIVER_DOWN_S = 60.0
MEMORY_ALARM_S = 10.0
BROKER_APP_PAUSE_S = 3.0
"""`stop_app; sleep 3; start_app`, as an operator does it."""
OUTAGE_S = 3.0
"""How long a killed service, a stopped node or a stopped Postgres stays down."""
CLUSTER_NODE_DOWN_S = 10.0
TINY_WATERMARK = "0.000001"
"""A memory high watermark every node is above: the alarm goes off at once."""
NORMAL_WATERMARK = "0.4"


@dataclass
class Scene:
    """What a fault acts on: the running deployment, the receiver, the private backends."""

    stack: Stack
    receiver: Receiver
    rabbit: PrivateRabbit | None
    postgres: PrivatePostgres | None

    def node(self) -> RabbitNode:
        if self.rabbit is None:
            raise RuntimeError("this fault needs a private RabbitMQ node")
        return self.rabbit.seed


@dataclass
class FaultEnd:
    at: float
    """Unix time at which the fault ended."""
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """What makes this run of the fault fail whatever the deliveries say."""
    started_at: float | None = None
    """Unix time at which it began (set by the runner)."""


@dataclass(frozen=True)
class Fault:
    name: str
    summary: str
    inject: Callable[[Scene], Awaitable[FaultEnd]]
    cluster: bool = False
    """Runs on a three-node cluster (with quorum queues) instead of the single node."""
    env: dict[str, str] = field(default_factory=dict)
    """Settings of the deployment for this fault only."""


def _kill_service(name: str) -> Callable[[Scene], Awaitable[FaultEnd]]:
    async def inject(scene: Scene) -> FaultEnd:
        scene.stack.kill(name)
        await asyncio.sleep(OUTAGE_S)
        end = time.time()
        await scene.stack.restart(name)
        return FaultEnd(end, [f"{name} ready {time.time() - end:.1f}s after its restart"])

    return inject


async def _broker_app_restart(scene: Scene) -> FaultEnd:
    node = scene.node()
    try:
        await asyncio.to_thread(node.ctl, "stop_app")
        await asyncio.sleep(BROKER_APP_PAUSE_S)
    finally:
        await asyncio.to_thread(node.ctl, "start_app")
    return FaultEnd(time.time())


async def _broker_node_restart(scene: Scene) -> FaultEnd:
    node = scene.node()
    try:
        await asyncio.to_thread(node.stop)
        await asyncio.sleep(OUTAGE_S)
    finally:
        await asyncio.to_thread(node.start)
    return FaultEnd(time.time())


async def _memory_alarm(scene: Scene) -> FaultEnd:
    node = scene.node()
    try:
        await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", TINY_WATERMARK)
        await asyncio.sleep(1.0)
        alarms = await asyncio.to_thread(node.diagnostics, "alarms")
        await asyncio.sleep(MEMORY_ALARM_S - 1.0)
    finally:
        await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", NORMAL_WATERMARK)
    seen = "memory alarm raised" if "memory" in alarms.lower() else "NO memory alarm seen"
    return FaultEnd(time.time(), [seen])


async def _postgres_restart(scene: Scene) -> FaultEnd:
    postgres = scene.postgres
    if postgres is None:
        raise RuntimeError("this fault needs a private Postgres")
    try:
        await asyncio.to_thread(postgres.stop)
        await asyncio.sleep(OUTAGE_S)
    finally:
        await asyncio.to_thread(postgres.launch)
    return FaultEnd(time.time())


async def _receiver_down(scene: Scene) -> FaultEnd:
    try:
        await scene.receiver.down()
        await asyncio.sleep(RECEIVER_DOWN_S)
    finally:
        await scene.receiver.up()
    return FaultEnd(time.time())


def _cluster_node_kill(clients_node: bool) -> Callable[[Scene], Awaitable[FaultEnd]]:
    """kill -9 of the node every client is connected to, or of the other node leading most
    of the namespace's queues; started again CLUSTER_NODE_DOWN_S later."""

    async def inject(scene: Scene) -> FaultEnd:
        if scene.rabbit is None or len(scene.rabbit.nodes) < 3:
            raise RuntimeError("this fault needs the three-node cluster")
        queues = await asyncio.to_thread(scene.rabbit.seed.queues, scene.stack.namespace)
        victim, notes = _pick_victim(scene.rabbit, queues, clients_node)
        try:
            victim.kill()
            await asyncio.sleep(CLUSTER_NODE_DOWN_S)
        finally:
            await asyncio.to_thread(victim.start)
        notes.append(f"killed {victim.name} (kill -9) for {CLUSTER_NODE_DOWN_S:.0f}s")
        end = FaultEnd(time.time(), notes)
        classic = sorted(q["name"] for q in queues if q["type"] != "quorum")
        if classic or not queues:
            # A classic queue lives on one node: on a cluster it is lost with that node.
            end.failures.append(
                f"{len(classic)} of {len(queues)} queues are not quorum queues although"
                f" HOOKLINE_QUEUE_TYPE=quorum ({', '.join(classic[:3])}...)"
            )
        return end

    return inject


def _pick_victim(
    rabbit: PrivateRabbit, queues: list[dict[str, str]], clients_node: bool
) -> tuple[RabbitNode, list[str]]:
    """The node every client is connected to (the first), or the other one leading most
    queues."""
    types = sorted({q["type"] for q in queues})
    notes = [f"queue types: {', '.join(types) or 'none found'}"]
    leads = {node.name: 0 for node in rabbit.nodes}
    for queue in queues:
        if queue["leader"] in leads:
            leads[queue["leader"]] += 1
    others = rabbit.nodes[1:]
    victim = rabbit.seed if clients_node else max(others, key=lambda node: leads[node.name])
    notes.append(f"{leads[victim.name]} of {len(queues)} queues led (or held) by the victim")
    return victim, notes


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        *(
            Fault(f"kill-{name}", f"kill -9 of {name}, restarted {OUTAGE_S:.0f}s later", inject)
            for name, inject in (
                ("ingest", _kill_service("ingest")),
                ("fanout", _kill_service("fanout")),
                ("sender", _kill_service("sender")),
            )
        ),
        Fault(
            "broker-app-restart", "rabbitmqctl stop_app; sleep 3; start_app", _broker_app_restart
        ),
        Fault("broker-node-restart", "the RabbitMQ node stopped and started", _broker_node_restart),
        Fault("memory-alarm", "a RabbitMQ memory alarm for 10s", _memory_alarm),
        Fault("postgres-restart", "Postgres fast shutdown, started 3s later", _postgres_restart),
        Fault(
            "receiver-down",
            "the receiver refuses connections for 60s",
            _receiver_down,
            env={"HOOKLINE_RETRY_DELAYS": SHORT_RETRY_DELAYS},
        ),
        Fault(
            "cluster-node-kill",
            "three-node cluster, quorum queues: kill -9 of a node leading queues, back 10s later",
            _cluster_node_kill(clients_node=False),
            cluster=True,
            env={"HOOKLINE_QUEUE_TYPE": "quorum"},
        ),
        Fault(
            "cluster-client-node-kill",
            "three-node cluster, quorum queues: kill -9 of the clients' node, back 10s later",
            _cluster_node_kill(clients_node=True),
            cluster=True,
            env={"HOOKLINE_QUEUE_TYPE": "quorum"},
        ),
    )
}
