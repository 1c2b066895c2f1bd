"""No secret leaks: not into logs, list answers or /metrics, through a whole busy run.

The three services run as real processes with secrets encrypted at rest and debug logging.
The scenario creates subscriptions, rotates a secret, delivers events that succeed, fail
until dead-lettered and meet a 410, calls the API with a wrong token, and reads every list
answer and every /metrics. No subscription secret (in any encoding), API token, secret key
or event payload may appear in any of it.
"""

from __future__ import annotations

import asyncio
import base64
import urllib.request
from typing import Any

import aiohttp
import orjson
import pytest

from shared.secretbox import new_key
from shared.signing import secret_bytes
from tests.e2e.conftest import StackFactory
from tests.support import API_TOKEN, unique_name
from tests.support.e2e import create_subscription, new_tenant, verified_payload
from tests.support.receiver import Receiver
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

WRONG_TOKEN = "wrong-token-" + "9" * 24


def encodings(secret: str) -> set[str]:
    """Every way a `whsec_` secret could be written into a log line."""
    key = secret_bytes(secret)
    standard = base64.b64encode(key).decode()
    return {
        secret,
        standard,
        standard.rstrip("="),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
        key.hex(),
    }


async def rotate_secret(api: aiohttp.ClientSession, subscription_id: str) -> str:
    async with api.post(f"/v1/subscriptions/{subscription_id}/secret/rotate") as answer:
        assert answer.status == 200, await answer.text()
        secret = (await answer.json())["secret"]
    assert isinstance(secret, str)
    assert secret.startswith("whsec_")
    return secret


async def get_text(api: aiohttp.ClientSession, path: str) -> str:
    async with api.get(path) as answer:
        assert answer.status == 200, f"GET {path}: {answer.status} {await answer.text()}"
        return await answer.text()


async def list_answers(api: aiohttp.ClientSession, subscription_ids: list[str]) -> str:
    """Every list and read the API offers, except GET of one subscription (which shows it)."""
    texts = [
        await get_text(api, "/v1/subscriptions"),
        await get_text(api, "/v1/subscriptions?limit=500&status=enabled"),
        await get_text(api, "/v1/subscriptions?status=disabled"),
        await get_text(api, "/v1/event-types"),
    ]
    for sub_id in subscription_ids:
        deliveries = await get_text(api, f"/v1/subscriptions/{sub_id}/deliveries")
        texts.append(deliveries)
        for delivery in _json(deliveries)["data"]:
            texts.append(await get_text(api, f"/v1/deliveries/{delivery['id']}"))
            texts.append(await get_text(api, f"/v1/events/{delivery['event_id']}"))
    return "\n".join(texts)


def _json(text: str) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(text)
    return value


def metrics_text(stack: Stack) -> str:
    texts = []
    for proc in stack.procs.values():
        url = f"http://127.0.0.1:{proc.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as answer:
            texts.append(answer.read().decode())
    return "\n".join(texts)


async def test_no_secret_token_key_or_payload_leaks(
    stack_factory: StackFactory, receiver: Receiver
) -> None:
    secret_key = new_key()
    stack = stack_factory(env={"HOOKLINE_SECRET_KEY": secret_key, "HOOKLINE_LOG_LEVEL": "debug"})
    receiver.script("/ok", 200)
    receiver.script("/fail", 500)
    receiver.script("/gone", 410)
    tenant = new_tenant()
    canary = unique_name("payload-canary-")

    async with stack.api() as api:
        subs = {
            path: await create_subscription(api, receiver.url(path), ["*"], tenant_id=tenant)
            for path in ("/ok", "/fail", "/gone")
        }
        old_ok_secret = subs["/ok"]["secret"]
        new_ok_secret = await rotate_secret(api, subs["/ok"]["id"])
        async with api.post(
            "/v1/events",
            json={"type": "card.charged", "data": {"card": canary}, "tenant_id": tenant},
        ) as answer:
            assert answer.status == 202, await answer.text()
        # A schema whose failure message would quote the failing value, were it jsonschema's.
        schema = {"type": "object", "properties": {"card": {"type": "string", "pattern": "^tok_"}}}
        async with api.post(
            "/v1/event-types", json={"name": "card.checked", "schema": schema}
        ) as answer:
            assert answer.status == 201, await answer.text()
    async with stack.publisher() as publisher:
        await publisher.publish(
            {"type": "card.refunded", "data": {"card": canary}, "tenant_id": tenant}
        )
        await publisher.publish({"type": "card.checked", "data": {"card": canary}})
    async with stack.api(token=WRONG_TOKEN) as intruder, intruder.get("/v1/subscriptions") as no:
        assert no.status == 401

    attempts = stack.settings.max_attempts
    await receiver.wait_for(
        lambda _: (
            len(receiver.at("/ok")) >= 2
            and len(receiver.at("/fail")) >= 2 * attempts
            and len(receiver.at("/gone")) >= 1
        ),
        timeout_s=60,
    )
    # The rotated subscription was signed with both secrets, so both were in use.
    for request in receiver.at("/ok"):
        assert verified_payload(old_ok_secret, request)["data"] == {"card": canary}
        assert verified_payload(new_ok_secret, request)["data"] == {"card": canary}

    async with stack.api() as api:
        answers = await list_answers(api, [s["id"] for s in subs.values()])
        # The control: where the contract shows a secret, this scan sees it.
        shown = await get_text(api, f"/v1/subscriptions/{subs['/ok']['id']}")
    assert new_ok_secret in shown
    # Let the last failure reach the dead queue and be logged before reading the logs.
    await asyncio.sleep(1.0)
    metrics = metrics_text(stack)
    for name in list(stack.procs):
        assert await asyncio.to_thread(stack.stop, name) == 0
    logs = stack.log_text()

    assert len(stack.log_lines()) > 10, "the services logged (almost) nothing"
    assert "schema_mismatch" in logs, "the schema rejection was not logged at all"
    assert subs["/fail"]["id"] in logs, "the failing deliveries were not logged at all"
    assert "hookline_" in metrics
    forbidden = {API_TOKEN: "API token", WRONG_TOKEN: "rejected token", secret_key: "secret key"}
    for sub in subs.values():
        forbidden.update(dict.fromkeys(encodings(sub["secret"]), f"secret of {sub['id']}"))
    forbidden.update(dict.fromkeys(encodings(new_ok_secret), "rotated secret"))
    for where, text in (("logs", logs), ("API list answers", answers), ("/metrics", metrics)):
        leaked = sorted({what for value, what in forbidden.items() if value in text})
        assert not leaked, f"{', '.join(leaked)} found in {where}"
    assert canary not in logs, "an event payload was logged"
