"""Readiness of a process running several components."""

from __future__ import annotations

from shared.ops import Readiness


def test_not_ready_until_every_component_has_registered_its_checks() -> None:
    readiness = Readiness()
    ingest, sender = readiness.scope("ingest"), readiness.scope("sender")
    sender.add("sender_broker", lambda: True)
    assert readiness.status() == {"sender_broker": True, "ingest_started": False}
    ingest.add("ingest_rabbitmq", lambda: True)
    assert readiness.status() == {"sender_broker": True, "ingest_rabbitmq": True}


def test_a_failing_check_of_any_component_makes_the_process_not_ready() -> None:
    readiness = Readiness()
    readiness.scope("a").add("a_db", lambda: True)
    readiness.scope("b").add("b_db", lambda: False)
    assert not all(readiness.status().values())
