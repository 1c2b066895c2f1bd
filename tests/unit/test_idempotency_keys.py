"""Copies of an idempotency key compared as JSON values; ids at a given time (issue 16)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from services.ingest.idempotency import check_same, lock_key, same_json
from shared.errors import IdempotencyConflict
from shared.ids import id_at, new_id
from shared.models import EventIn
from shared.settings import Settings
from shared.stores.events import StoredEvent


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ('{"a": 1, "b": 2}', '{"b": 2, "a": 1}'),
        ('{"n": 1}', '{"n": 1.0}'),
        ('{"n": 100}', '{"n": 1e2}'),
        ('{"n": [0.5, {"x": 25e-1}]}', '{"n": [5E-1, {"x": 2.50}]}'),
        ('{"s": "1"}', '{"s": "1"}'),
    ],
)
def test_equal_json_values_are_the_same(a: str, b: str) -> None:
    assert same_json(orjson.loads(a), orjson.loads(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ('{"n": 1}', '{"n": true}'),
        ('{"n": 0}', '{"n": false}'),
        ('{"n": 1}', '{"n": "1"}'),
        ('{"n": [1, 2]}', '{"n": [2, 1]}'),
        ('{"n": null}', "{}"),
        ('{"n": {"a": 1}}', '{"n": {"a": 1, "b": 2}}'),
        ('{"n": 1}', '{"n": 1.5}'),
    ],
)
def test_different_json_values_are_not(a: str, b: str) -> None:
    assert not same_json(orjson.loads(a), orjson.loads(b))


def _stored(data: dict[str, Any]) -> StoredEvent:
    now = datetime.now(UTC)
    return StoredEvent("evt_1", "order.created", data, "acme", "k", "http", now, now)


def test_a_copy_with_other_data_or_type_conflicts() -> None:
    first = _stored({"n": 1})
    check_same(first, EventIn(type="order.created", data={"n": 1.0}, id="k", tenant_id="acme"))
    with pytest.raises(IdempotencyConflict, match="evt_1"):
        check_same(first, EventIn(type="order.created", data={"n": 2}, id="k"))
    with pytest.raises(IdempotencyConflict, match="type"):
        check_same(first, EventIn(type="order.deleted", data={"n": 1}, id="k"))


def test_lock_keys_are_per_tenant() -> None:
    plain = EventIn(type="a.b", id="k")
    assert lock_key(plain) != lock_key(EventIn(type="a.b", id="k", tenant_id="acme"))
    assert lock_key(EventIn(type="a.b")) is None


def test_ids_at_a_time_sort_with_new_ids() -> None:
    now = datetime.now(UTC).timestamp()
    bound = id_at("evt", now - 1, random_part=False)
    assert bound < id_at("evt", now - 1) < new_id("evt") < id_at("evt", now + 1, random_part=False)


def test_the_window_may_not_outlast_the_retention() -> None:
    assert Settings(retention="2d", idempotency_window="2d").idempotency_window == 2 * 86400
    with pytest.raises(ValueError, match="IDEMPOTENCY_WINDOW"):
        Settings(retention="1d", idempotency_window="2d")
    assert Settings().retention == 30 * 86400 and Settings().idempotency_window == 86400
