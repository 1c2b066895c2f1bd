"""A change notified while a read is out: its answer is used but not remembered.

Postgres may send the notification of a change committed after the read's snapshot before
the read's answer completes; remembering that answer would keep a stale row until the next
change. Fakes stand for the connection here: the ordering is what is tested.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.routing_cache import RoutingCache
from shared.secretbox import SecretBox
from shared.signing import generate_secret
from shared.subscription_cache import SubscriptionCache


class FakeConnection:
    """Answers `fetch` with `rows`, calling `during()` first (a notification meanwhile)."""

    def __init__(self, rows: list[dict[str, Any]], during: Callable[[], None]) -> None:
        self.rows = rows
        self.during = during

    async def fetch(self, sql: str, *args: object) -> list[dict[str, Any]]:
        self.during()
        return self.rows


def subscription_row(sub_id: str) -> dict[str, Any]:
    return {
        "id": sub_id,
        "url": "https://example.com/hook",
        "event_types": ["*"],
        "status": "enabled",
        "tenant_id": None,
        "secret": generate_secret(),
        "previous_secret": None,
        "previous_secret_expires_at": None,
        "deleted_at": None,
        "parked_until": None,
    }


async def test_the_sender_does_not_remember_a_row_notified_during_its_read() -> None:
    cache = SubscriptionCache("postgresql://unused", SecretBox(None), service="unit")
    rows = [subscription_row("changed"), subscription_row("quiet")]
    conn = FakeConnection(rows, lambda: cache._on_notify("changed"))
    found = await cache._read(conn, ["changed", "quiet"])  # type: ignore[arg-type]
    assert set(found) == {"changed", "quiet"}  # both answered
    assert cache.peek("changed") is None  # but the notified one is read again next time
    assert cache.peek("quiet") is not None


async def test_a_notification_after_a_read_drops_what_it_stored() -> None:
    cache = SubscriptionCache("postgresql://unused", SecretBox(None), service="unit")
    conn = FakeConnection([subscription_row("s")], lambda: None)
    await cache._read(conn, ["s"])  # type: ignore[arg-type]
    assert cache.peek("s") is not None
    cache._on_notify("s")
    assert cache.peek("s") is None
    cache._on_notify("never-read")  # nothing to drop, nothing breaks
    await cache._read(conn, ["s"])  # type: ignore[arg-type]
    cache._on_reset()
    assert cache.peek("s") is None and len(cache) == 0


async def test_fanout_does_not_remember_routes_read_while_a_change_was_notified() -> None:
    cache = RoutingCache("postgresql://unused", service="unit")
    rows = [{"i": 0, "id": "s1", "parked_until": None}]
    conn = FakeConnection(rows, lambda: cache._on_notify("s-new"))
    try:
        found = await cache._read(conn, keys=[("acme", "a.b")])  # type: ignore[arg-type]
        assert [r.id for r in found[("acme", "a.b")]] == ["s1"]
        assert cache.peek("a.b", "acme") is None
        # Without a notification meanwhile the answer is remembered...
        conn.during = lambda: None
        await cache._read(conn, keys=[("acme", "a.b")])  # type: ignore[arg-type]
        assert cache.peek("a.b", "acme") is not None
        # ...and a later change to a subscription it lists drops it at once.
        cache._on_notify("s1")
        assert cache.peek("a.b", "acme") is None
    finally:
        if cache._reload_task is not None:
            cache._reload_task.cancel()
