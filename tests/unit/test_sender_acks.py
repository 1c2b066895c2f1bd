"""The batched-ack bookkeeping: which tags one tick acks, and how."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.acks import AckPlan, AckTracker, BatchAcker
from tests.support.amqp_fakes import FakeChannel

HOLD_S = 0.02


def tracker_with(*tags: int) -> AckTracker:
    tracker = AckTracker(hold_s=HOLD_S)
    for tag in tags:
        tracker.received(tag)
    return tracker


def test_contiguous_finished_tags_go_out_as_one_multiple_ack() -> None:
    tracker = tracker_with(1, 2, 3, 4)
    for tag in (3, 1, 2):
        tracker.finish(tag, now=0.0)
    assert tracker.take(now=0.0) == AckPlan(upto=3, singles=())
    tracker.finish(4, now=0.0)
    assert tracker.take(now=0.0) == AckPlan(upto=4, singles=())


def test_nothing_is_acked_before_it_finished() -> None:
    tracker = tracker_with(1, 2)
    assert tracker.take(now=10.0) == AckPlan(upto=None, singles=())


def test_tags_behind_an_unfinished_one_are_acked_alone_after_the_hold() -> None:
    tracker = tracker_with(1, 2, 3, 4)
    tracker.finish(2, now=0.0)
    tracker.finish(3, now=0.0)
    # Held briefly, hoping the oldest finishes and one frame covers all.
    assert tracker.take(now=HOLD_S / 2) == AckPlan(upto=None, singles=())
    # The oldest hangs: the others must not wait for it.
    assert tracker.take(now=HOLD_S) == AckPlan(upto=None, singles=(2, 3))
    # When it finishes, the multiple ack skips over the tags already acked.
    tracker.finish(1, now=1.0)
    tracker.finish(4, now=1.0)
    assert tracker.take(now=1.0) == AckPlan(upto=4, singles=())


def test_a_nacked_tag_is_never_acked_and_does_not_block_the_rest() -> None:
    tracker = tracker_with(1, 2, 3)
    tracker.forget(1)
    tracker.finish(2, now=0.0)
    tracker.finish(3, now=0.0)
    assert tracker.take(now=0.0) == AckPlan(upto=3, singles=())


def test_a_multiple_ack_never_covers_a_tag_not_yet_received() -> None:
    tracker = tracker_with(1, 3)
    tracker.finish(1, now=0.0)
    tracker.finish(3, now=0.0)
    # Tag 2 is delivered but its handler has not started: ack 1 and, after the hold, 3.
    assert tracker.take(now=0.0) == AckPlan(upto=1, singles=())
    assert tracker.take(now=HOLD_S) == AckPlan(upto=None, singles=(3,))


def test_finishing_twice_or_an_unknown_tag_acks_nothing_more() -> None:
    tracker = tracker_with(1)
    tracker.finish(1, now=0.0)
    assert tracker.take(now=0.0) == AckPlan(upto=1, singles=())
    tracker.finish(1, now=0.0)
    tracker.finish(7, now=0.0)
    assert tracker.take(now=1.0) == AckPlan(upto=None, singles=())


@dataclass
class FakeMessage:
    channel: FakeChannel
    delivery_tag: int


async def test_a_reopened_channel_starts_over_and_stale_tags_are_never_acked() -> None:
    acker = BatchAcker(tick_s=0.001, hold_s=HOLD_S)
    old, new = FakeChannel(), FakeChannel()
    stale = [acker.received(FakeMessage(old, tag)) for tag in (1, 2)]  # type: ignore[arg-type]
    acker.finish(stale[0])
    # Robust reconnect: the consumer now gets messages of a new channel, tags from 1 again.
    fresh = [acker.received(FakeMessage(new, tag)) for tag in (1, 2)]  # type: ignore[arg-type]
    acker.finish(stale[1])
    acker.finish(fresh[0])
    acker.finish(fresh[1])
    acker.start()
    await asyncio.sleep(0.05)
    await acker.close()
    assert old.acks == []
    assert new.acks == [(2, True)]


async def test_close_sends_every_ack_that_is_due() -> None:
    acker = BatchAcker(tick_s=10.0, hold_s=10.0)
    channel = FakeChannel()
    tickets = [acker.received(FakeMessage(channel, tag)) for tag in (1, 2, 3)]  # type: ignore[arg-type]
    acker.finish(tickets[0])
    acker.finish(tickets[2])
    acker.start()
    await acker.close()
    assert channel.acks == [(1, True), (3, False)]
