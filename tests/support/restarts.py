"""Shared by the broker-restart and Postgres-restart tests: one fault of `make chaos`, short.

The services run as separate processes against a PRIVATE RabbitMQ node or Postgres server
(never the machine's own, which other test runs use), a stream of events goes in over AMQP
and HTTP, the fault happens, and the test checks what a user would: every confirmed event
reached every subscription, signed. No timing is asserted (that is `make chaos`'s job).
"""

from __future__ import annotations

from pathlib import Path

from bench.receiver import Receiver
from chaos.faults import FAULTS
from chaos.outcome import FaultOutcome
from chaos.run import Backends, Timing, run_fault

TIMING = Timing(
    before_s=3.0,
    after_s=8.0,
    stall_s=30.0,
    quiet_s=3.0,
    amqp_rate=10.0,
    http_rate=3.0,
    subscriptions=2,
)
"""A short stream, and a generous wait: the drain ends 30 s after the last new delivery."""


async def run_short(fault: str, backends: Backends, log_dir: Path) -> FaultOutcome:
    """Run `fault` of the suite under a short stream, with a receiver of its own."""
    receiver = Receiver()
    receiver.start()
    try:
        return await run_fault(FAULTS[fault], backends, receiver, TIMING, log_dir)
    finally:
        receiver.stop()


def explain(outcome: FaultOutcome, log_dir: Path) -> str:
    """The figures and notes of a failed check, with the end of each service's log."""
    logs = "\n".join(
        f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
        for path in sorted(log_dir.glob("*.log"))
    )
    return f"{outcome}\n{logs}"


def assert_all_delivered(outcome: FaultOutcome, log_dir: Path) -> None:
    """Every event confirmed (before, during and after the fault) arrived signed, at least once."""
    assert outcome.confirmed_after > 0, explain(outcome, log_dir)
    assert outcome.bad_signatures == 0, explain(outcome, log_dir)
    assert outcome.lost == 0, explain(outcome, log_dir)
    assert outcome.delivered == outcome.expected, explain(outcome, log_dir)
