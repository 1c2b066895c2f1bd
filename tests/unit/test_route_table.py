"""Fanout's bounded route table: size bound, LRU eviction, and what a change forgets."""

from __future__ import annotations

import pytest

from shared.route_table import RouteTable
from shared.subscriptions import Route


def routes(*ids: str) -> tuple[Route, ...]:
    return tuple(Route(i) for i in ids)


def test_an_answer_is_kept_and_read_back() -> None:
    table = RouteTable(100)
    table.put(("acme", "invoice.paid"), routes("a", "b"))
    assert table.get(("acme", "invoice.paid")) == routes("a", "b")
    assert table.get(("acme", "invoice.void")) is None
    assert table.get((None, "invoice.paid")) is None  # the tenant is part of the key
    assert table.size == 3


def test_an_empty_answer_is_an_answer() -> None:
    table = RouteTable(100)
    table.put(("acme", "a.b"), ())
    assert table.get(("acme", "a.b")) == ()


def test_size_never_exceeds_the_bound_and_the_least_recently_used_goes_first() -> None:
    table = RouteTable(7)  # an answer of one route costs 2: three fit
    for n in range(4):
        table.put((f"t{n}", "a.b"), routes(f"s{n}"))
        assert table.size <= 7
    assert table.get(("t0", "a.b")) is None
    assert table.get(("t1", "a.b")) is not None  # now the most recently used
    table.put(("t4", "a.b"), routes("s4"))
    assert table.get(("t2", "a.b")) is None
    assert table.get(("t1", "a.b")) is not None
    assert len(table) == 3 and table.size == 6


def test_an_answer_larger_than_the_bound_is_not_kept() -> None:
    table = RouteTable(3)
    table.put(("t", "a.b"), routes("x", "y", "z"))
    assert table.get(("t", "a.b")) is None
    assert table.size == 0


def test_replacing_an_answer_frees_the_old_one() -> None:
    table = RouteTable(100)
    table.put(("t", "a.b"), routes("x", "y"))
    table.put(("t", "a.b"), routes("z"))
    assert table.size == 2
    table.forget_subscription("x")
    assert table.get(("t", "a.b")) == routes("z")  # x no longer listed there


def test_forgetting_a_subscription_drops_every_answer_listing_it() -> None:
    table = RouteTable(100)
    table.put(("t", "a.b"), routes("x", "y"))
    table.put(("t", "a.c"), routes("x"))
    table.put(("t", "a.d"), routes("y"))
    table.forget_subscription("x")
    assert table.get(("t", "a.b")) is None
    assert table.get(("t", "a.c")) is None
    assert table.get(("t", "a.d")) == routes("y")
    table.forget_subscription("unknown")
    assert table.size == 2


def test_forgetting_a_tenant_drops_its_answers_only() -> None:
    table = RouteTable(100)
    table.put(("acme", "a.b"), routes("x"))
    table.put(("acme", "a.c"), ())
    table.put(("globex", "a.b"), routes("y"))
    table.put((None, "a.b"), routes("z"))
    table.forget_tenant("acme")
    assert table.get(("acme", "a.b")) is None and table.get(("acme", "a.c")) is None
    assert table.get(("globex", "a.b")) == routes("y")
    table.forget_tenant(None)
    assert table.get((None, "a.b")) is None
    assert table.get(("globex", "a.b")) == routes("y")


def test_evicted_answers_leave_no_reverse_entries_behind() -> None:
    table = RouteTable(4)
    for n in range(100):
        table.put((f"t{n}", "a.b"), routes(f"s{n}"))
    assert len(table._keys_of_sub) <= 2 and len(table._keys_of_tenant) <= 2


def test_clear_forgets_everything() -> None:
    table = RouteTable(100)
    table.put(("t", "a.b"), routes("x"))
    table.clear()
    assert table.get(("t", "a.b")) is None and table.size == 0 and len(table) == 0


def test_a_bound_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        RouteTable(0)
