"""`hookline subscriptions|events|deliveries|event-types` against the live API of real services.

What a person sees (tables, problem details on stderr) and what a script relies on (--json,
exit codes 0 / 1 for 4xx / 2 for usage / 3 for an unreachable API).
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support import API_TOKEN, free_port, unique_name
from tests.support.e2e import new_tenant
from tests.support.receiver import Receiver
from tests.support.stack import Stack, hookline_command

pytestmark = pytest.mark.e2e


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


async def hookline(stack: Stack | None, *args: str, token: str | None = API_TOKEN) -> Run:
    """Run `hookline ARGS` as a user would, pointed at the stack by HOOKLINE_URL/TOKEN."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    if stack is not None:
        env["HOOKLINE_URL"] = stack.api_url
    if token is not None:
        env["HOOKLINE_TOKEN"] = token
    proc = await asyncio.create_subprocess_exec(
        *hookline_command(),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_a_subscription_from_create_to_delete(stack: Stack, receiver: Receiver) -> None:
    tenant = new_tenant()
    url = receiver.url("/cli")
    created = await hookline(
        stack, "subscriptions", "create", "--url", url, "--event-type", "invoice.*",
        "--event-type", "order.paid", "--tenant", tenant, "--description", "billing", "--json",
    )  # fmt: skip
    assert created.code == 0, created.err
    sub = created.json()
    assert sub["secret"].startswith("whsec_") and sub["event_types"] == ["invoice.*", "order.paid"]

    listed = await hookline(stack, "subscriptions", "list", "--tenant", tenant)
    assert listed.code == 0, listed.err
    header, row = listed.out.splitlines()
    assert header.split()[:3] == ["ID", "STATUS", "EVENT"]
    assert sub["id"] in row and "invoice.*,order.paid" in row and "enabled" in row
    assert sub["secret"] not in listed.out

    shown = await hookline(stack, "subscriptions", "show", sub["id"])
    assert shown.code == 0 and sub["secret"] in shown.out and url in shown.out

    updated = await hookline(stack, "subscriptions", "update", sub["id"], "--status", "disabled")
    assert updated.code == 0, updated.err
    fields = dict(line.split(None, 1) for line in updated.out.splitlines())
    assert (fields["status"], fields["disabled_reason"]) == ("disabled", "manual")
    rotated = await hookline(stack, "subscriptions", "rotate-secret", sub["id"], "--json")
    assert rotated.code == 0 and rotated.json()["secret"] != sub["secret"]

    deleted = await hookline(stack, "subscriptions", "delete", sub["id"])
    assert (deleted.code, deleted.out.strip()) == (0, f"subscription {sub['id']} deleted")
    gone = await hookline(stack, "subscriptions", "show", sub["id"])
    assert gone.code == 1
    assert gone.err.startswith("error: 404 Not Found: ")
    assert gone.out == ""


async def test_an_event_sent_shown_and_its_delivery_retried(
    stack: Stack, receiver: Receiver
) -> None:
    tenant = new_tenant()
    created = await hookline(
        stack, "subscriptions", "create", "--url", receiver.url("/cli-events"),
        "--tenant", tenant, "--json",
    )  # fmt: skip
    sub = created.json()
    marker = unique_name("cli-")
    sent = await hookline(
        stack, "events", "send", "invoice.paid", "--data", json.dumps({"marker": marker}),
        "--tenant", tenant, "--id", marker, "--json",
    )  # fmt: skip
    assert sent.code == 0, sent.err
    event = sent.json()
    assert event["id"].startswith("evt_") and event["idempotency_key"] == marker
    await receiver.wait_for(lambda got: any(r.webhook_id == event["id"] for r in got))

    shown = await hookline(stack, "events", "show", event["id"])
    assert shown.code == 0 and "invoice.paid" in shown.out and sub["id"] in shown.out
    listing = await hookline(stack, "deliveries", "list", "--subscription", sub["id"], "--json")
    [delivery] = listing.json()["data"]
    assert delivery["event_id"] == event["id"]
    detail = await hookline(stack, "deliveries", "show", delivery["id"])
    assert detail.code == 0 and "attempts:" in detail.out and "success" in detail.out

    retried = await hookline(stack, "deliveries", "retry", delivery["id"])
    assert retried.code == 0, retried.err
    assert retried.out.startswith(f"delivery {delivery['id']} queued again")
    await receiver.wait_for(lambda got: len([r for r in got if r.webhook_id == event["id"]]) == 2)


async def test_event_types_and_the_validation_errors_listed(stack: Stack) -> None:
    name = f"cli{unique_name('')}.made"
    schema = json.dumps({"type": "object", "required": ["n"]})
    made = await hookline(stack, "event-types", "create", name, "--schema", schema)
    assert made.code == 0, made.err
    assert name in (await hookline(stack, "event-types", "list", "--limit", "500")).out

    refused = await hookline(stack, "events", "send", name, "--data", "{}")
    assert refused.code == 1
    assert refused.err.splitlines()[0].startswith("error: 422 Unprocessable")
    assert any("data" in line and "n" in line for line in refused.err.splitlines()[1:])

    bad = await hookline(stack, "subscriptions", "create", "--url", "ftp://x", "--json")
    assert bad.code == 1 and "422" in bad.err and "url" in bad.err

    assert (await hookline(stack, "event-types", "delete", name)).code == 0
    assert (await hookline(stack, "event-types", "delete", name)).code == 1


async def test_exit_codes_for_scripts(stack: Stack) -> None:
    wrong = await hookline(stack, "subscriptions", "list", token="not-a-token")
    assert wrong.code == 1 and wrong.err.startswith("error: 401")

    nobody = f"http://127.0.0.1:{free_port()}"
    down = await hookline(None, "subscriptions", "list", "--api-url", nobody, "--token", "t")
    assert down.code == 3 and f"cannot reach the API at {nobody}" in down.err

    assert (await hookline(stack, "subscriptions", "list", token=None)).code == 2
    assert (await hookline(stack, "subscriptions", "frobnicate")).code == 2
    not_json = await hookline(stack, "events", "send", "a.b", "--data", "{oops")
    assert not_json.code == 2 and "not JSON" in not_json.err
    assert (await hookline(stack, "subscriptions", "update", "sub_x")).code == 2
