"""HOOKLINE_QUEUE_TYPE: classic queues keep the arguments they always had; quorum queues
get their type, a delivery limit with a named place past it, and at-least-once
dead-lettering."""

from __future__ import annotations

import pytest

from shared.topology import Topology, topology_of
from tests.support import make_settings


def test_classic_queues_are_declared_as_before() -> None:
    topology = Topology("hl", (5.0, 300.0))
    _, queues = topology.everything()
    for queue in queues:
        assert "x-queue-type" not in queue.arguments
        assert "x-delivery-limit" not in queue.arguments
    assert topology.retry_queue(5.0).arguments == {
        "x-message-ttl": 5000,
        "x-dead-letter-exchange": "hl.deliveries",
        "x-dead-letter-routing-key": "send",
    }


def test_every_quorum_queue_is_quorum_and_work_queues_overflow_to_a_named_place() -> None:
    topology = topology_of(make_settings("hl", "db", queue_type="quorum"))
    _, queues = topology.everything()
    assert {q.arguments["x-queue-type"] for q in queues} == {"quorum"}
    overflow = [
        (topology.ingest_queue, topology.rejected_queue.name),
        (topology.fanout_queue, topology.fanout_rejected_queue.name),
        (topology.deliveries_queue, topology.dead_queue.name),
    ]
    for queue, place in overflow:
        assert queue.arguments["x-delivery-limit"] == 50
        assert queue.arguments["x-dead-letter-exchange"] == ""
        assert queue.arguments["x-dead-letter-routing-key"] == place
        assert queue.arguments["x-dead-letter-strategy"] == "at-least-once"
    for queue in (topology.rejected_queue, topology.fanout_rejected_queue, topology.dead_queue):
        # Read by people (`hookline dead list` takes and returns each message): never dropped.
        assert queue.arguments["x-delivery-limit"] >= 1_000_000
    retry = topology.retry_queue(5.0).arguments
    assert retry["x-dead-letter-exchange"] == "hl.deliveries"
    assert retry["x-dead-letter-strategy"] == "at-least-once"
    assert retry["x-overflow"] == "reject-publish"


def test_an_unknown_queue_type_is_refused() -> None:
    with pytest.raises(ValueError, match="queue type"):
        Topology("hl", (5.0,), "mirrored")
