"""The sender against a real receiver, RabbitMQ and Postgres (retry delays 200ms, 400ms)."""

from __future__ import annotations

import asyncio

import aiohttp
from standardwebhooks import Webhook

from shared.settings import Settings
from shared.signing import generate_secret, secret_bytes, verify
from shared.topology import Topology
from tests.support.sender import (
    Answer,
    Receiver,
    attempts_of,
    database,
    insert_delivery,
    insert_subscription,
    publish,
    queue_depths,
    queue_messages,
    sender_running,
    wait_for_status,
)

TOLERANCE_S = 0.05


async def test_a_webhook_is_retried_until_it_succeeds(settings: Settings) -> None:
    receiver = Receiver(Answer(500), Answer(500), Answer(200))
    async with receiver.running(), database(settings) as conn:
        async with sender_running(settings):
            sub_id, secret = await insert_subscription(conn, receiver.url())
            msg = await insert_delivery(conn, sub_id)
            await publish(settings, msg)

            row = await wait_for_status(conn, msg.delivery_id, "succeeded")
            requests = await receiver.wait_for(3)
            attempts = await attempts_of(conn, msg.delivery_id)
        # The sender stopped with nothing in hand: anything left to send would be queued.
        depths = await queue_depths(settings)

    assert row["attempts"] == 3
    assert [a["status_code"] for a in attempts] == [500, 500, 200]
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "success"]
    assert {r.headers["webhook-id"] for r in requests} == {msg.event_id}
    for request in requests:
        assert request.body == msg.body
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["User-Agent"].startswith("Hookline/")
        Webhook(secret).verify(request.body, request.headers)
    # Lower bounds only: the schedule's delays, less a little for the broker's TTL clock.
    assert requests[1].at - requests[0].at >= 0.2 - TOLERANCE_S
    assert requests[2].at - requests[1].at >= 0.4 - TOLERANCE_S
    assert set(depths.values()) == {0}
    assert len(receiver.requests) == 3


async def test_410_disables_the_subscription_and_stops(settings: Settings) -> None:
    receiver = Receiver(Answer(410))
    async with receiver.running(), database(settings) as conn:
        async with sender_running(settings):
            sub_id, _ = await insert_subscription(conn, receiver.url())
            msg = await insert_delivery(conn, sub_id)
            other = await insert_delivery(conn, sub_id)
            await publish(settings, msg)

            row = await wait_for_status(conn, msg.delivery_id, "failed")
            sub = await conn.fetchrow("SELECT * FROM subscriptions WHERE id = $1", sub_id)
            await wait_for_status(conn, other.delivery_id, "cancelled")
        # Stopped with nothing in hand: a retry would be waiting in a queue.
        depths = await queue_depths(settings)
        attempts = await attempts_of(conn, msg.delivery_id)

    assert (sub["status"], sub["disabled_reason"]) == ("disabled", "gone")
    assert row["attempts"] == 1
    assert set(depths.values()) == {0}
    assert [(a["status_code"], a["outcome"]) for a in attempts] == [(410, "gone")]
    assert len(receiver.requests) == 1


async def test_exhausted_attempts_end_failed_in_the_dead_queue(settings: Settings) -> None:
    receiver = Receiver(Answer(503, body=b"down for maintenance"))
    async with receiver.running(), database(settings) as conn:
        async with sender_running(settings):
            sub_id, _ = await insert_subscription(conn, receiver.url())
            msg = await insert_delivery(conn, sub_id)
            await publish(settings, msg)

            row = await wait_for_status(conn, msg.delivery_id, "failed")
            attempts = await attempts_of(conn, msg.delivery_id)
        # Stopped: the last attempt's dead-queue publish was confirmed before its ack.
        depths = await queue_depths(settings)
    dead = await queue_messages(settings, Topology(settings.namespace, ()).dead_queue.name)

    assert set(depths.values()) == {0}
    assert len(receiver.requests) == 3
    assert row["attempts"] == 3 and row["last_status_code"] == 503
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 503), (2, 503), (3, 503)]
    assert [a["outcome"] for a in attempts] == ["retry", "retry", "failed"]
    assert attempts[0]["response_body"] == "down for maintenance"
    assert len(dead) == 1
    assert dead[0]["x-hookline-delivery-id"] == msg.delivery_id
    assert dead[0]["x-hookline-subscription-id"] == sub_id
    assert "503" in dead[0]["x-hookline-error"]


async def test_retry_after_is_honoured(settings: Settings) -> None:
    receiver = Receiver(Answer(429, headers={"Retry-After": "1"}), Answer(200))
    async with receiver.running(), database(settings) as conn, sender_running(settings):
        sub_id, _ = await insert_subscription(conn, receiver.url())
        msg = await insert_delivery(conn, sub_id)
        await publish(settings, msg)
        await wait_for_status(conn, msg.delivery_id, "succeeded")
        first, second = await receiver.wait_for(2)

    # Asked 1 s; the schedule's longest queue is 400ms, so the cap applies: not sooner
    # than the longest delay, and never the 200ms of the first.
    assert second.at - first.at >= 0.4 - TOLERANCE_S


async def test_a_hanging_receiver_times_out_as_an_attempt(settings: Settings) -> None:
    receiver = Receiver(Answer(200, delay_s=10.0), Answer(200))
    async with receiver.running(), database(settings) as conn, sender_running(settings):
        sub_id, _ = await insert_subscription(conn, receiver.url())
        msg = await insert_delivery(conn, sub_id)
        await publish(settings, msg)
        await wait_for_status(conn, msg.delivery_id, "succeeded")
        attempts = await attempts_of(conn, msg.delivery_id)

    assert [a["error_kind"] for a in attempts] == ["timeout", None]
    assert attempts[0]["status_code"] is None and attempts[0]["duration_ms"] >= 1900


async def test_a_redirect_is_not_followed(settings: Settings) -> None:
    receiver = Receiver(Answer(302, headers={"Location": "/elsewhere"}), Answer(200))
    async with receiver.running(), database(settings) as conn, sender_running(settings):
        sub_id, _ = await insert_subscription(conn, receiver.url("/hook"))
        msg = await insert_delivery(conn, sub_id)
        await publish(settings, msg)
        await wait_for_status(conn, msg.delivery_id, "succeeded")
        attempts = await attempts_of(conn, msg.delivery_id)

    assert [(r.method, r.path) for r in receiver.requests] == [("POST", "/hook")] * 2
    assert [(a["status_code"], a["error_kind"]) for a in attempts] == [
        (302, "redirect"),
        (200, None),
    ]


async def test_a_receivers_cookie_is_never_sent_back_or_to_another_subscription(
    settings: Settings,
) -> None:
    receiver = Receiver(Answer(200, headers={"Set-Cookie": "session=s3cr3t; Path=/"}))
    async with receiver.running(), database(settings) as conn, sender_running(settings):
        # A host name: cookies of a bare IP address would not be kept anyway.
        by_name = receiver.url().replace("127.0.0.1", "localhost").removesuffix("/hook")
        first, _ = await insert_subscription(conn, f"{by_name}/tenant-a")
        second, _ = await insert_subscription(conn, f"{by_name}/tenant-b")
        msg = await insert_delivery(conn, first)
        await publish(settings, msg)
        await wait_for_status(conn, msg.delivery_id, "succeeded")
        later = [await insert_delivery(conn, sub) for sub in (first, second)]
        await publish(settings, *later)
        for delivery in later:
            await wait_for_status(conn, delivery.delivery_id, "succeeded")

    assert len(receiver.requests) == 3
    assert all("Cookie" not in r.headers for r in receiver.requests)


async def test_a_disabled_subscriptions_delivery_is_cancelled(settings: Settings) -> None:
    receiver = Receiver(Answer(200))
    async with receiver.running(), database(settings) as conn, sender_running(settings):
        sub_id, _ = await insert_subscription(conn, receiver.url(), status="disabled")
        msg = await insert_delivery(conn, sub_id)
        await publish(settings, msg)
        row = await wait_for_status(conn, msg.delivery_id, "cancelled")

    assert row["attempts"] == 0
    assert receiver.requests == []


async def test_a_deleted_subscriptions_delivery_is_cancelled(settings: Settings) -> None:
    receiver = Receiver(Answer(200))
    async with receiver.running(), database(settings) as conn, sender_running(settings):
        sub_id, _ = await insert_subscription(conn, receiver.url())
        msg = await insert_delivery(conn, sub_id)
        await conn.execute("UPDATE subscriptions SET deleted_at = now() WHERE id = $1", sub_id)
        await publish(settings, msg)
        await wait_for_status(conn, msg.delivery_id, "cancelled")

    assert receiver.requests == []


async def test_during_rotation_both_secrets_sign(settings: Settings) -> None:
    receiver = Receiver(Answer(200))
    old_secret, new_secret = generate_secret(), generate_secret()
    async with receiver.running(), database(settings) as conn, sender_running(settings):
        # Both secrets in one statement: whenever the sender's cache loads the row, it has
        # both (an UPDATE after the INSERT would race the cache's reload on NOTIFY).
        sub_id, _ = await insert_subscription(
            conn, receiver.url(), secret=new_secret, previous_secret=old_secret
        )
        msg = await insert_delivery(conn, sub_id)
        await publish(settings, msg)
        (request,) = await receiver.wait_for(1)

    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    timestamp = int(request.headers["webhook-timestamp"])
    for secret in (old_secret, new_secret):
        assert verify(
            secret_bytes(secret),
            msg.event_id,
            timestamp,
            request.body,
            request.headers["webhook-signature"],
        )
        Webhook(secret).verify(request.body, request.headers)


async def test_the_sender_reports_ready_while_it_holds_its_connections(
    settings: Settings,
) -> None:
    async with sender_running(settings), aiohttp.ClientSession() as http:
        port = settings.metrics_port_for("sender")
        for _ in range(100):
            async with http.get(f"http://127.0.0.1:{port}/readyz") as resp:
                answer = await resp.json()
                if resp.status == 200:
                    break
            await asyncio.sleep(0.05)

    assert answer["status"] == "ready"
    assert {"sender_subscriptions", "sender_database", "sender_broker"} <= set(answer["checks"])


async def test_only_the_first_4_kib_of_an_answer_is_read_and_kept(settings: Settings) -> None:
    receiver = Receiver(Answer(500, body=b"x" * 5000 + b"y" * 100_000), Answer(200))
    async with receiver.running(), database(settings) as conn, sender_running(settings):
        sub_id, _ = await insert_subscription(conn, receiver.url())
        msg = await insert_delivery(conn, sub_id)
        await publish(settings, msg)
        await wait_for_status(conn, msg.delivery_id, "succeeded")
        attempts = await attempts_of(conn, msg.delivery_id)

    assert attempts[0]["response_body"] == "x" * 4096
