"""Deliveries over HTTP: one with its attempts, a subscription's list, retry and recover."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from shared.ids import delivery_id
from shared.settings import Settings
from shared.wire.messages import DeliveryMessage
from tests.support.ingest import Ingest, running_ingest


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


async def _world(api: Ingest, statuses: list[str]) -> tuple[str, list[str], list[str]]:
    """A subscription and one delivery per status (oldest first); (sub id, event ids, ids)."""
    _, sub, _ = await api.call(
        "POST", "/v1/subscriptions", {"url": "http://127.0.0.1:9/", "event_types": ["*"]}
    )
    events, deliveries = [], []
    conn = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        for n, status in enumerate(statuses):
            _, event, _ = await api.call(
                "POST", "/v1/events", {"type": "invoice.paid", "data": {"n": n}}
            )
            dlv = delivery_id(event["id"], sub["id"])
            await conn.execute(
                "INSERT INTO deliveries (id, event_id, subscription_id, status, attempts,"
                " created_at) VALUES ($1, $2, $3, $4, 3, now() - make_interval(mins => $5))",
                dlv,
                event["id"],
                sub["id"],
                status,
                len(statuses) - n,
            )
            events.append(event["id"])
            deliveries.append(dlv)
    finally:
        await conn.close()
    await api.take(api.events, len(statuses))
    return sub["id"], events, deliveries


async def _deliveries_queue(api: Ingest, count: int) -> list[Any]:
    queue = await api.channel.get_queue(api.topology.deliveries_queue.name)
    return await api.take(queue, count)


async def test_a_delivery_shows_every_attempt(api: Ingest) -> None:
    _, _, [dlv] = await _world(api, ["failed"])
    conn = await asyncpg.connect(api.settings.database_url.get_secret_value())
    try:
        await conn.executemany(
            "INSERT INTO delivery_attempts (delivery_id, attempt, attempted_at, status_code,"
            " duration_ms, outcome, error_kind, error, response_body)"
            " VALUES ($1, $2, now(), $3, 12, $4, $5, $6, $7)",
            [
                (dlv, 1, 500, "retry", "status", "HTTP 500", "oops"),
                (dlv, 2, None, "failed", "timeout", "no answer in 2s", None),
            ],
        )
    finally:
        await conn.close()
    status, detail, _ = await api.call("GET", f"/v1/deliveries/{dlv}")
    assert status == 200
    assert detail["status"] == "failed" and detail["event_type"] == "invoice.paid"
    log = detail["attempt_log"]
    assert [(a["attempt"], a["status_code"], a["error_kind"]) for a in log] == [
        (1, 500, "status"),
        (2, None, "timeout"),
    ]
    assert log[0]["response_body"] == "oops" and log[0]["duration_ms"] == 12
    status, _, _ = await api.call("GET", "/v1/deliveries/dlv_missing")
    assert status == 404


async def test_a_subscriptions_deliveries_newest_first_with_filter_and_pages(
    api: Ingest,
) -> None:
    sub_id, _, ids = await _world(api, ["failed", "succeeded", "failed", "pending", "failed"])
    seen: list[str] = []
    cursor = ""
    while True:
        status, page, _ = await api.call(
            "GET", f"/v1/subscriptions/{sub_id}/deliveries?limit=2{cursor}"
        )
        assert status == 200, page
        seen.extend(d["id"] for d in page["data"])
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == ids[::-1]

    status, page, _ = await api.call("GET", f"/v1/subscriptions/{sub_id}/deliveries?status=failed")
    assert [d["id"] for d in page["data"]] == [ids[4], ids[2], ids[0]]
    status, _, _ = await api.call("GET", "/v1/subscriptions/sub_missing/deliveries")
    assert status == 404


async def test_retry_sends_a_delivery_again_from_attempt_one(api: Ingest) -> None:
    sub_id, [event_id], [dlv] = await _world(api, ["failed"])
    status, answer, _ = await api.call("POST", f"/v1/deliveries/{dlv}/retry")
    assert status == 202
    assert answer["status"] == "pending"
    [message] = await _deliveries_queue(api, 1)
    sent = DeliveryMessage.from_message(message)
    assert (sent.delivery_id, sent.event_id, sent.subscription_id) == (dlv, event_id, sub_id)
    assert sent.attempt == 1
    body = orjson.loads(sent.body)
    assert body["type"] == "invoice.paid" and body["data"] == {"n": 0}
    status, _, _ = await api.call("POST", "/v1/deliveries/dlv_missing/retry")
    assert status == 404


async def test_retry_of_a_deleted_subscriptions_delivery_is_409(api: Ingest) -> None:
    sub_id, _, [dlv] = await _world(api, ["failed"])
    await api.call("DELETE", f"/v1/subscriptions/{sub_id}")
    status, problem, _ = await api.call("POST", f"/v1/deliveries/{dlv}/retry")
    assert status == 409 and problem["status"] == 409


async def test_recover_sends_the_failed_deliveries_since_a_moment(api: Ingest) -> None:
    sub_id, _, ids = await _world(api, ["failed", "failed", "succeeded", "failed"])
    since = (datetime.now(UTC) - timedelta(minutes=3, seconds=30)).isoformat()
    status, answer, _ = await api.call(
        "POST", f"/v1/subscriptions/{sub_id}/recover", {"since": since}
    )
    assert status == 202
    assert answer == {"queued": 2}
    sent = {m.message_id for m in await _deliveries_queue(api, 2)}
    assert sent == {ids[1], ids[3]}
    _, page, _ = await api.call("GET", f"/v1/subscriptions/{sub_id}/deliveries?status=failed")
    assert [d["id"] for d in page["data"]] == [ids[0]]

    for body in ({"since": "yesterday"}, {"since": "2024-01-01T00:00:00"}, {}):
        status, problem, _ = await api.call("POST", f"/v1/subscriptions/{sub_id}/recover", body)
        assert status == 422 and problem["errors"][0]["field"] == "body.since"
    status, _, _ = await api.call("POST", "/v1/subscriptions/sub_missing/recover", {"since": since})
    assert status == 404
