"""Fanout's memory of where events go: (tenant, event type) -> routes, bounded, LRU.

Only ids and parks, no URLs or secrets; at most `max_size` entries counted as one per key
plus one per route, however many subscriptions the table holds. Two reverse maps make a
changed subscription cheap to forget: the keys whose answer lists it, and the keys of each
tenant (a new or changed subscription can change any answer of its tenant).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import TypeVar

from shared.subscriptions import Route, RouteKey

N = TypeVar("N")

DEFAULT_MAX_SIZE = 200_000
"""About 100 bytes an entry: some 20 MB at most."""


class RouteTable:
    """Answers by (tenant, event type), the least recently used dropped first."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.size = 0
        self._answers: OrderedDict[RouteKey, tuple[Route, ...]] = OrderedDict()
        self._keys_of_sub: dict[str, set[RouteKey]] = {}
        self._keys_of_tenant: dict[str | None, set[RouteKey]] = {}

    def get(self, key: RouteKey) -> tuple[Route, ...] | None:
        found = self._answers.get(key)
        if found is not None:
            self._answers.move_to_end(key)
        return found

    def put(self, key: RouteKey, routes: tuple[Route, ...]) -> None:
        """Remember `routes` for `key`; an answer too large to keep is not kept."""
        self.discard(key)
        cost = 1 + len(routes)
        if cost > self.max_size:
            return
        tenant, event_type = key
        key = (sys.intern(tenant) if tenant is not None else None, sys.intern(event_type))
        self._answers[key] = routes
        self.size += cost
        self._keys_of_tenant.setdefault(key[0], set()).add(key)
        for route in routes:
            self._keys_of_sub.setdefault(route.id, set()).add(key)
        while self.size > self.max_size:
            oldest = next(iter(self._answers))
            self.discard(oldest)

    def discard(self, key: RouteKey) -> None:
        routes = self._answers.pop(key, None)
        if routes is None:
            return
        self.size -= 1 + len(routes)
        _unlink(self._keys_of_tenant, key[0], key)
        for route in routes:
            _unlink(self._keys_of_sub, route.id, key)

    def forget_subscription(self, subscription_id: str) -> None:
        """Drop every answer that lists this subscription."""
        for key in list(self._keys_of_sub.get(subscription_id, ())):
            self.discard(key)

    def forget_tenant(self, tenant_id: str | None) -> None:
        """Drop every answer of this tenant (None: of the untenanted events)."""
        for key in list(self._keys_of_tenant.get(tenant_id, ())):
            self.discard(key)

    def clear(self) -> None:
        self._answers.clear()
        self._keys_of_sub.clear()
        self._keys_of_tenant.clear()
        self.size = 0

    def __len__(self) -> int:
        return len(self._answers)


def _unlink(index: dict[N, set[RouteKey]], name: N, key: RouteKey) -> None:
    keys = index.get(name)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[name]
