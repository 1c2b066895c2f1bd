"""The sender's bounded subscription LRU: size bound, eviction order, invalidation."""

from __future__ import annotations

import pytest

from shared.subscription_cache import SubscriptionLRU
from shared.subscriptions import SubscriptionTarget


def sub(sub_id: str) -> SubscriptionTarget:
    return SubscriptionTarget(
        id=sub_id,
        url="https://example.com/hook",
        event_types=("*",),
        enabled=True,
        tenant_id=None,
        keys=(b"k" * 24,),
        previous_key_expires_at=None,
    )


def test_never_holds_more_than_its_size_and_drops_the_least_recently_read() -> None:
    lru = SubscriptionLRU(3)
    for name in "abc":
        lru.put(sub(name))
    assert lru.get("a") is not None  # a is now the most recently read
    lru.put(sub("d"))
    assert len(lru) == 3
    assert "b" not in lru
    assert {n for n in "acd" if n in lru} == {"a", "c", "d"}


def test_a_put_replaces_and_refreshes() -> None:
    lru = SubscriptionLRU(2)
    lru.put(sub("a"))
    lru.put(sub("b"))
    lru.put(sub("a"))
    lru.put(sub("c"))
    assert "a" in lru and "b" not in lru and len(lru) == 2


def test_discard_and_clear() -> None:
    lru = SubscriptionLRU(10)
    lru.put(sub("a"))
    lru.put(sub("b"))
    lru.discard("a")
    lru.discard("unknown")
    assert lru.get("a") is None and lru.get("b") is not None
    lru.clear()
    assert len(lru) == 0 and lru.get("b") is None


def test_a_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        SubscriptionLRU(0)
