"""The cache's index, without a database: matching, the tenant rule, and changes to one row."""

from __future__ import annotations

from shared.secretbox import SecretBox
from shared.subscription_cache import SubscriptionCache
from shared.subscriptions import Subscription


def sub(
    sub_id: str, *patterns: str, tenant: str | None = None, enabled: bool = True
) -> Subscription:
    return Subscription(
        id=sub_id,
        url="https://example.com/hook",
        event_types=patterns,
        enabled=enabled,
        tenant_id=tenant,
        keys=(b"k" * 24,),
        previous_key_expires_at=None,
    )


def cache_of(*subs: Subscription) -> SubscriptionCache:
    cache = SubscriptionCache("postgresql://unused", SecretBox(None), service="unit")
    cache._replace_all(list(subs))
    return cache


def ids(found: list[Subscription]) -> list[str]:
    return sorted(s.id for s in found)


def test_exact_prefix_and_star() -> None:
    cache = cache_of(
        sub("exact", "invoice.paid"),
        sub("prefix", "invoice.*"),
        sub("deep", "billing.invoice.*"),
        sub("star", "*"),
    )
    assert ids(cache.match("invoice.paid", None)) == ["exact", "prefix", "star"]
    assert ids(cache.match("invoice.line.added", None)) == ["prefix", "star"]
    assert ids(cache.match("billing.invoice.paid", None)) == ["deep", "star"]
    assert ids(cache.match("invoices.paid", None)) == ["star"]


def test_a_subscription_matching_twice_is_returned_once() -> None:
    cache = cache_of(sub("both", "invoice.*", "invoice.paid", "*"))
    assert ids(cache.match("invoice.paid", None)) == ["both"]


def test_tenant_rule_both_ways() -> None:
    cache = cache_of(
        sub("untenanted", "*"),
        sub("acme", "*", tenant="acme"),
        sub("globex", "*", tenant="globex"),
    )
    assert ids(cache.match("invoice.paid", None)) == ["untenanted"]
    assert ids(cache.match("invoice.paid", "acme")) == ["acme"]
    assert ids(cache.match("invoice.paid", "initech")) == []


def test_disabled_is_known_but_never_matched() -> None:
    cache = cache_of(sub("off", "*", enabled=False))
    assert cache.match("invoice.paid", None) == []
    found = cache.get("off")
    assert found is not None and not found.enabled
    assert cache.get("unknown") is None


def test_a_changed_row_replaces_the_old_one_everywhere() -> None:
    cache = cache_of(sub("s", "invoice.*"))
    assert ids(cache.match("invoice.paid", None)) == ["s"]  # memoized now
    cache._apply("s", sub("s", "order.*", tenant="acme"))
    assert cache.match("invoice.paid", None) == []
    assert cache.match("order.paid", None) == []
    assert ids(cache.match("order.paid", "acme")) == ["s"]
    cache._apply("s", None)
    assert cache.match("order.paid", "acme") == []
    assert cache.get("s") is None
    assert len(cache) == 0


def test_callers_cannot_change_the_cache_through_a_result() -> None:
    cache = cache_of(sub("s", "*"))
    cache.match("a.b", None).clear()
    assert ids(cache.match("a.b", None)) == ["s"]
