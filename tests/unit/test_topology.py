"""The broker topology: names under the namespace, retry queues shaped for TTL dead-lettering."""

from __future__ import annotations

from shared.topology import SEND_ROUTING_KEY, Topology


def test_every_name_is_prefixed_by_the_namespace() -> None:
    exchanges, queues = Topology("acme", (5.0, 300.0)).everything()
    names = [e.name for e in exchanges] + [q.name for q in queues]
    assert names and all(name.startswith("acme.") for name in names)
    # Exchanges and queues are separate name spaces in AMQP; within each, no name twice.
    assert len(exchanges) == len({e.name for e in exchanges})
    assert len(queues) == len({q.name for q in queues})


def test_contract_names() -> None:
    topology = Topology("hookline", (5.0,))
    assert topology.ingest_exchange.name == "hookline.ingest"
    assert topology.ingest_exchange.type == "topic"
    assert topology.rejected_queue.name == "hookline.ingest.rejected"
    assert topology.dead_queue.name == "hookline.dead"


def test_retry_queue_dead_letters_back_to_the_work_queue_after_its_delay() -> None:
    topology = Topology("ns", (0.2, 300.0))
    queue = topology.retry_queue(0.2)
    assert queue.name == "ns.retry.200ms"
    assert queue.arguments == {
        "x-message-ttl": 200,
        "x-dead-letter-exchange": topology.deliveries_exchange.name,
        "x-dead-letter-routing-key": SEND_ROUTING_KEY,
    }
    assert (
        topology.deliveries_exchange.name,
        SEND_ROUTING_KEY,
    ) in topology.deliveries_queue.bindings
    assert topology.retry_queue(300.0).name == "ns.retry.5m"


def test_one_retry_queue_per_distinct_delay() -> None:
    topology = Topology("ns", (5.0, 5.0, 300.0, 5.0))
    assert [q.name for q in topology.retry_queues] == ["ns.retry.5s", "ns.retry.5m"]


def test_a_new_schedule_names_new_queues_instead_of_redeclaring_old_ones() -> None:
    old = {q.name: q.arguments for q in Topology("ns", (5.0, 300.0)).retry_queues}
    new = {q.name: q.arguments for q in Topology("ns", (10.0, 300.0)).retry_queues}
    # A shared name must mean the same arguments, or RabbitMQ would refuse the declaration.
    for name in old.keys() & new.keys():
        assert old[name] == new[name]
    assert "ns.retry.10s" in new and "ns.retry.10s" not in old


def test_every_queue_has_a_kind_and_only_consumed_queues_are_work() -> None:
    """The stalled-consumer alert selects kind="work": exactly the queues a service consumes."""
    from shared.backlog import queue_kinds

    topology = Topology("ns", (5.0, 300.0))
    kinds = dict(queue_kinds(topology))
    _, every = topology.everything()
    assert set(kinds) == {q.name for q in every}
    assert {name for name, kind in kinds.items() if kind == "work"} == {
        "ns.ingest",
        "ns.fanout",
        "ns.deliveries",
    }
    assert kinds["ns.retry.5s"] == "retry" and kinds["ns.dead"] == "dead"
    assert kinds["ns.ingest.rejected"] == kinds["ns.fanout.rejected"] == "rejected"
