"""The UI in a real browser against the real services: what an operator and a tenant see."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.support import API_TOKEN
from tests.support.browser import PHONE, browser, new_page, screenshot
from tests.support.e2e import create_subscription, new_tenant
from tests.support.receiver import Receiver
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e
expect.set_options(timeout=20_000)


async def _post(api: aiohttp.ClientSession, path: str, body: Any, status: int) -> Any:
    async with api.post(path, json=body) as answer:
        text = await answer.text()
        assert answer.status == status, f"{path}: {answer.status} {text}"
        return await answer.json()


async def _portal_session(stack: Stack, tenant: str, ttl: str = "1h") -> dict[str, Any]:
    async with stack.api() as api:
        session: dict[str, Any] = await _post(
            api, "/v1/portal-sessions", {"tenant_id": tenant, "ttl": ttl}, 201
        )
    return session


async def _until_delivered(page: Page, count: int = 1) -> None:
    """Refresh the deliveries until `count` of them show as succeeded (the sender records a
    success just after the receiver answered)."""
    delivered = page.locator('.delivery[data-status="succeeded"]')
    deadline = time.monotonic() + 30
    while await delivered.count() < count and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        await page.get_by_role("button", name="Refresh").click()
    await expect(delivered).to_have_count(count)


async def test_an_operator_creates_a_subscription_and_sees_an_event_delivered(
    stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    tenant = new_tenant()
    async with browser(tmp_path / "profile") as context:
        page, requested, errors = await new_page(context)
        await page.goto(f"{stack.api_url}/ui/")
        await page.get_by_label("API token").fill(API_TOKEN)
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.locator(".who")).to_contain_text("Operator")

        await page.get_by_role("link", name="New subscription").first.click()
        await page.get_by_label("Endpoint URL").fill(receiver.url("/ui-operator"))
        await page.get_by_label("Description").fill("Billing service")
        await page.get_by_label("Other types or wildcards").fill("invoice.*")
        await page.get_by_label("Tenant", exact=True).fill(tenant)
        await page.get_by_role("button", name="Create subscription").click()
        await expect(page).to_have_url(re.compile(r"#/subscriptions/sub_\w+$"))
        await expect(page.get_by_text("Nothing delivered yet")).to_be_visible()

        async with stack.api() as api:
            event = await _post(
                api,
                "/v1/events",
                {"type": "invoice.paid", "data": {"invoice_id": "in_ui"}, "tenant_id": tenant},
                202,
            )
        await receiver.wait_for(lambda got: len([r for r in got if r.path == "/ui-operator"]) > 0)
        await _until_delivered(page)
        row = page.locator('.delivery[data-status="succeeded"]')
        await expect(row).to_contain_text(event["id"])
        await row.get_by_role("button", name="Attempts").click()
        attempt = row.locator("table.attempts tbody tr")
        await expect(attempt).to_have_count(1)
        await expect(attempt).to_contain_text("200")
        await expect(attempt).to_contain_text("success")

        await page.get_by_role("button", name="Send test event").first.click()
        await receiver.wait_for(lambda got: len([r for r in got if r.path == "/ui-operator"]) > 1)
        await _until_delivered(page, 2)
        await expect(page.locator(".delivery").first).to_contain_text("hookline.test")

        await page.goto(f"{stack.api_url}/ui/#/events?tenant_id={tenant}")
        listed = page.locator(f'.event[data-id="{event["id"]}"]')
        await expect(listed).to_contain_text("1 succeeded")
        assert errors == []
        assert all(API_TOKEN not in url for url in requested)


async def test_a_portal_link_shows_its_tenant_and_nothing_of_another(
    stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    tenant, other = new_tenant(), new_tenant()
    async with stack.api() as api:
        billing = await _post(
            api,
            "/v1/subscriptions",
            {
                "url": receiver.url("/acme/billing"),
                "event_types": ["invoice.paid", "invoice.created"],
                "description": "Billing service",
                "tenant_id": tenant,
            },
            201,
        )
        for path, types, description in (
            ("/acme/crm", ["customer.*"], "CRM sync"),
            ("/acme/audit", ["*"], "Audit log (everything)"),
        ):
            sub = await create_subscription(api, receiver.url(path), types, tenant_id=tenant)
            patch = {"description": description}
            if path == "/acme/audit":
                patch["status"] = "disabled"
            async with api.patch(f"/v1/subscriptions/{sub['id']}", json=patch) as answer:
                assert answer.status == 200
        await create_subscription(api, receiver.url("/globex/hooks"), ["*"], tenant_id=other)
        for n in (1, 2):
            body = {"type": "invoice.paid", "data": {"invoice_id": f"in_{n}"}, "tenant_id": tenant}
            await _post(api, "/v1/events", body, 202)
        hidden = await _post(
            api, "/v1/events", {"type": "invoice.paid", "data": {}, "tenant_id": other}, 202
        )
    session = await _portal_session(stack, tenant)

    async with browser(tmp_path / "profile") as context:
        page, requested, errors = await new_page(context)
        await page.goto(session["url"])
        await expect(page.locator(".who")).to_contain_text(tenant)
        assert "key=" not in page.url, "the token must leave the address bar"
        for path in ("/acme/billing", "/acme/crm", "/acme/audit"):
            await expect(page.get_by_role("link", name=receiver.url(path))).to_be_visible()
        await expect(page.get_by_text(receiver.url("/globex/hooks"))).to_have_count(0)
        await expect(page.get_by_label("Tenant", exact=True)).to_have_count(0)
        await screenshot(page, "ui-subscriptions", tmp_path)

        await page.get_by_role("link", name=billing["url"]).click()
        await _until_delivered(page, 2)
        await page.locator(".delivery").first.get_by_role("button", name="Attempts").click()
        await expect(page.locator("table.attempts tbody tr").first).to_contain_text("200")
        await page.set_viewport_size(PHONE)
        # On a phone too, a tenant's developer sees which tenant this is.
        await expect(page.locator(".who")).to_be_visible()
        await expect(page.locator(".who")).to_contain_text(tenant)
        await screenshot(page, "ui-subscription-phone", tmp_path)

        await page.goto(f"{stack.api_url}/ui/#/events")
        await expect(page.locator(".event")).to_have_count(2)
        await expect(page.locator(f'.event[data-id="{hidden["id"]}"]')).to_have_count(0)
        assert errors == []
        assert all(session["token"] not in url for url in requested)

    log = stack.log_text()
    assert session["token"] not in log
    created = [line for line in stack.log_lines() if line.get("event") == "portal_session_created"]
    mine = [line for line in created if line.get("session_id") == session["id"]]
    assert len(mine) == 1 and mine[0]["tenant_id"] == tenant
    assert mine[0]["operator"].startswith("sha256:")


async def test_an_invalid_url_shows_the_apis_error_next_to_the_field(
    stack: Stack, tmp_path: Path
) -> None:
    tenant = new_tenant()
    bad = {"url": "https://user:secret@example.com/hooks", "event_types": ["*"]}
    async with stack.api() as api, api.post("/v1/subscriptions", json=bad) as answer:
        assert answer.status == 422
        problem = await answer.json()
    [error] = [e["message"] for e in problem["errors"] if e["field"] == "body.url"]
    session = await _portal_session(stack, tenant)

    async with browser(tmp_path / "profile") as context:
        page, _, errors = await new_page(context)
        await page.goto(session["url"])
        await page.get_by_role("link", name="New subscription").first.click()
        await page.get_by_label("Endpoint URL").fill(bad["url"])
        await page.get_by_label("Other types or wildcards").fill("*")
        await page.get_by_role("button", name="Create subscription").click()
        # The API's own words (without pydantic's "Value error, " prefix, as a sentence).
        words = error.removeprefix("Value error, ")
        await expect(page.locator("#sub-url-error")).to_have_text(words[0].upper() + words[1:])
        await expect(page.get_by_label("Endpoint URL")).to_have_attribute("aria-invalid", "true")
        await expect(page).to_have_url(re.compile(r"#/subscriptions/new$"))
        # Left empty: what to do, not which rule of the API's models was broken.
        await page.get_by_label("Endpoint URL").fill("")
        await page.get_by_label("Other types or wildcards").fill("")
        await page.get_by_role("button", name="Create subscription").click()
        await expect(page.locator("#sub-url-error")).to_have_text("Enter the URL of your endpoint.")
        await expect(page.locator("#sub-patterns-error")).to_contain_text(
            "Pick at least one event type"
        )
        assert errors == []


async def test_an_expired_or_revoked_link_is_refused(stack: Stack, tmp_path: Path) -> None:
    tenant = new_tenant()
    expired = await _portal_session(stack, tenant, ttl="1s")
    revoked = await _portal_session(stack, tenant)
    async with stack.api() as api:
        async with api.delete(f"/v1/portal-sessions/{revoked['id']}") as answer:
            assert answer.status == 204
    headers = {"Authorization": f"Bearer {expired['token']}"}
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession(base_url=stack.api_url, headers=headers) as api:
        while time.monotonic() < deadline:
            async with api.get("/v1/whoami") as answer:
                if answer.status == 401:
                    break
            await asyncio.sleep(0.2)

    async with browser(tmp_path / "profile") as context:
        for session in (expired, revoked):
            # A page each: the second link must not find the first one's refusal on screen.
            page, _, errors = await new_page(context)
            await page.goto(session["url"])
            await expect(page.get_by_role("alert")).to_contain_text("expired or was revoked")
            await expect(page.get_by_label("API token")).to_be_visible()
            assert await page.evaluate("sessionStorage.getItem('hookline.token')") is None
            await expect(page.get_by_role("navigation")).to_have_count(0)
            assert errors == []
            await page.close()
    revocations = [
        line
        for line in stack.log_lines()
        if line.get("event") == "portal_session_revoked" and line.get("session_id") == revoked["id"]
    ]
    assert len(revocations) == 1 and revocations[0]["tenant_id"] == tenant
    assert revocations[0]["operator"].startswith("sha256:")


async def test_a_tenant_edits_pauses_rotates_and_deletes_a_subscription(
    stack: Stack, receiver: Receiver, tmp_path: Path
) -> None:
    tenant = new_tenant()
    async with stack.api() as api:
        sub = await create_subscription(api, receiver.url("/edit"), ["invoice.*"], tenant_id=tenant)
    session = await _portal_session(stack, tenant)
    token = {"Authorization": f"Bearer {session['token']}"}

    async def stored() -> dict[str, Any]:
        async with aiohttp.ClientSession(base_url=stack.api_url, headers=token) as api:
            async with api.get(f"/v1/subscriptions/{sub['id']}") as answer:
                assert answer.status == 200
                found: dict[str, Any] = await answer.json()
                return found

    async with browser(tmp_path / "profile") as context:
        page, _, errors = await new_page(context)
        await page.goto(session["url"])
        await page.get_by_role("link", name=sub["url"]).click()

        await page.get_by_role("button", name="Disable").click()
        await expect(page.locator(".meta")).to_contain_text("Disabled · paused")
        assert (await stored())["disabled_reason"] == "manual"
        # From the keyboard: focus the button and press Enter.
        await page.get_by_role("button", name="Enable").focus()
        await page.keyboard.press("Enter")
        await expect(page.locator(".meta")).to_contain_text("Enabled")

        await page.get_by_role("link", name="Edit").click()
        await page.get_by_label("Description").fill("Invoices to the ledger")
        await page.get_by_role("button", name="Save changes").click()
        await expect(page.locator(".meta")).to_contain_text("Invoices to the ledger")
        assert (await stored())["description"] == "Invoices to the ledger"

        secret = page.locator("#secret-value")
        await page.get_by_role("button", name="Reveal").click()
        await expect(secret).to_have_text(sub["secret"])
        await page.get_by_role("button", name="Rotate…").click()
        await page.get_by_role("dialog").get_by_role("button", name="Rotate secret").click()
        await expect(secret).not_to_have_text(sub["secret"])
        assert await secret.text_content() == (await stored())["secret"]

        await page.get_by_role("button", name="Delete…").click()
        await page.get_by_role("dialog").get_by_role("button", name="Delete subscription").click()
        await expect(page.get_by_text("No subscriptions yet")).to_be_visible()
        assert errors == []
