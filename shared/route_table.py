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
_Keys = RouteKey | set[RouteKey]

DEFAULT_MAX_SIZE = 100_000
"""Measured (tracemalloc) at ~270 bytes a unit (~540 an answer of one route): ~27 MB at most."""


class RouteTable:
    """Answers by (tenant, event type), the least recently used dropped first."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.size = 0
        self._answers: OrderedDict[RouteKey, tuple[Route, ...]] = OrderedDict()
        # One key alone, a set only when there are several: most subscriptions and most
        # tenants are listed under one key, and a set per entry would double the memory.
        self._keys_of_sub: dict[str, _Keys] = {}
        self._keys_of_tenant: dict[str | None, _Keys] = {}

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
        _link(self._keys_of_tenant, key[0], key)
        for route in routes:
            _link(self._keys_of_sub, route.id, key)
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
        for key in _keys(self._keys_of_sub.get(subscription_id)):
            self.discard(key)

    def forget_tenant(self, tenant_id: str | None) -> None:
        """Drop every answer of this tenant (None: of the untenanted events)."""
        for key in _keys(self._keys_of_tenant.get(tenant_id)):
            self.discard(key)

    def clear(self) -> None:
        self._answers.clear()
        self._keys_of_sub.clear()
        self._keys_of_tenant.clear()
        self.size = 0

    def __len__(self) -> int:
        return len(self._answers)


def _link(index: dict[N, _Keys], name: N, key: RouteKey) -> None:
    found = index.get(name)
    if found is None:
        index[name] = key
    elif isinstance(found, set):
        found.add(key)
    elif found != key:
        index[name] = {found, key}


def _unlink(index: dict[N, _Keys], name: N, key: RouteKey) -> None:
    found = index.get(name)
    if isinstance(found, set):
        found.discard(key)
        if len(found) == 1:
            index[name] = next(iter(found))
    elif found == key:
        del index[name]


def _keys(found: _Keys | None) -> list[RouteKey]:
    if found is None:
        return []
    return list(found) if isinstance(found, set) else [found]
