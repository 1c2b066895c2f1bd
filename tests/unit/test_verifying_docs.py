"""The Python in docs/verifying-webhooks.md runs and verifies real Hookline signatures."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from standardwebhooks.webhooks import WebhookVerificationError

from shared.signing import generate_secret, secret_bytes, signature_header

DOC = Path(__file__).parents[2] / "docs" / "verifying-webhooks.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
BODY = (
    b'{"type":"invoice.paid","timestamp":"2024-05-31T16:08:37.123Z","data":{"invoice_id":"in_1"}}'
)


def blocks(language: str) -> list[str]:
    return [code for lang, code in BLOCK.findall(DOC.read_text()) if lang == language]


@pytest.fixture
def doc() -> Iterator[dict[str, Any]]:
    """The names the document's Python blocks define, run in order as one program."""
    namespace: dict[str, Any] = {"__name__": "verifying_webhooks_doc"}
    for number, code in enumerate(blocks("python"), start=1):
        exec(compile(code, f"{DOC.name} python block {number}", "exec"), namespace)
    yield namespace
    if "db" in namespace:
        namespace["db"].close()


def signed_headers(
    secrets: list[str], body: bytes = BODY, msg_id: str = "evt_1", at: int | None = None
) -> dict[str, str]:
    timestamp = int(time.time()) if at is None else at
    keys = [secret_bytes(s) for s in secrets]
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(keys, msg_id, timestamp, body),
    }


def test_the_document_has_the_promised_examples() -> None:
    assert len(blocks("python")) >= 4
    text = DOC.read_text()
    for words in ("compare_digest", "5 minutes", "webhook-id", "rotate"):
        assert words in text


def test_library_example_accepts_a_hookline_signature(doc: dict[str, Any]) -> None:
    secret = generate_secret()
    event = doc["verify_with_library"](secret, signed_headers([secret]), BODY)
    assert event["data"] == {"invoice_id": "in_1"}


def test_library_example_rejects_a_changed_body(doc: dict[str, Any]) -> None:
    secret = generate_secret()
    headers = signed_headers([secret])
    with pytest.raises(WebhookVerificationError):
        doc["verify_with_library"](secret, headers, BODY.replace(b"in_1", b"in_2"))


def test_library_example_accepts_either_secret_during_rotation(doc: dict[str, Any]) -> None:
    old, new = generate_secret(), generate_secret()
    headers = signed_headers([new, old])
    for secret in (old, new):
        assert doc["verify_with_library"](secret, headers, BODY)["type"] == "invoice.paid"


def test_plain_example_accepts_a_hookline_signature(doc: dict[str, Any]) -> None:
    secret = generate_secret()
    event = doc["verify_webhook"]([secret], signed_headers([secret]), BODY)
    assert event["data"] == {"invoice_id": "in_1"}


def test_plain_example_verifies_the_request_shown_in_the_document(doc: dict[str, Any]) -> None:
    (request,) = blocks("http")
    head, body = request.split("\n\n", 1)
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    secret = re.search(r"whsec_[A-Za-z0-9+/=]+", DOC.read_text())
    assert secret is not None
    now = int(headers["webhook-timestamp"])
    event = doc["verify_webhook"]([secret.group()], headers, body.strip().encode(), now=now)
    assert event["type"] == "invoice.paid"


@pytest.mark.parametrize(
    "change",
    ["body", "id", "timestamp_in_header", "wrong_secret", "missing_header", "garbage_timestamp"],
)
def test_plain_example_rejects_a_forged_or_altered_request(
    doc: dict[str, Any], change: str
) -> None:
    secret = generate_secret()
    headers, body, secrets = signed_headers([secret]), BODY, [secret]
    if change == "body":
        body = BODY.replace(b"in_1", b"in_2")
    elif change == "id":
        headers["webhook-id"] = "evt_2"
    elif change == "timestamp_in_header":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
    elif change == "wrong_secret":
        secrets = [generate_secret()]
    elif change == "missing_header":
        del headers["webhook-signature"]
    else:
        headers["webhook-timestamp"] = "yesterday"
    with pytest.raises(doc["InvalidWebhook"]):
        doc["verify_webhook"](secrets, headers, body)


@pytest.mark.parametrize(
    ("offset_s", "accepted"), [(-360, False), (360, False), (-240, True), (240, True)]
)
def test_plain_example_holds_the_five_minute_tolerance_both_ways(
    doc: dict[str, Any], offset_s: int, accepted: bool
) -> None:
    secret = generate_secret()
    now = 1_700_000_000
    headers = signed_headers([secret], at=now + offset_s)
    if accepted:
        assert doc["verify_webhook"]([secret], headers, BODY, now=now)
    else:
        with pytest.raises(doc["InvalidWebhook"], match="tolerance"):
            doc["verify_webhook"]([secret], headers, BODY, now=now)


def test_plain_example_accepts_any_secret_against_any_entry(doc: dict[str, Any]) -> None:
    old, new, unrelated = generate_secret(), generate_secret(), generate_secret()
    headers = signed_headers([new, old])
    assert doc["verify_webhook"]([old], headers, BODY)
    assert doc["verify_webhook"]([new], headers, BODY)
    assert doc["verify_webhook"]([unrelated, old], headers, BODY)
    with pytest.raises(doc["InvalidWebhook"]):
        doc["verify_webhook"]([unrelated], headers, BODY)


def test_plain_example_ignores_entries_of_unknown_versions(doc: dict[str, Any]) -> None:
    secret = generate_secret()
    headers = signed_headers([secret])
    headers["webhook-signature"] = "v2,c29tZXRoaW5nIGVsc2U= " + headers["webhook-signature"]
    assert doc["verify_webhook"]([secret], headers, BODY)


def test_deduplication_example_does_the_work_once(doc: dict[str, Any]) -> None:
    db = doc["db"]
    event = {"type": "invoice.paid", "data": {"invoice_id": "in_1"}}
    assert doc["process_once"](db, "evt_1", event) is True
    assert doc["process_once"](db, "evt_1", event) is False
    assert doc["process_once"](db, "evt_2", event) is True
    assert db.execute("SELECT count(*) FROM paid_invoices").fetchone() == (2,)


async def test_receiver_example_accepts_once_and_refuses_forgeries(doc: dict[str, Any]) -> None:
    (secret,) = doc["WEBHOOK_SECRETS"]
    async with TestClient(TestServer(doc["app"])) as client:
        headers = signed_headers([secret], msg_id="evt_9")
        for _ in range(2):  # a retry of the same webhook
            response = await client.post("/hooks", data=BODY, headers=headers)
            assert response.status == 204
        forged = signed_headers([generate_secret()], msg_id="evt_10")
        response = await client.post("/hooks", data=BODY, headers=forged)
        assert response.status == 400
    assert doc["db"].execute("SELECT count(*) FROM paid_invoices").fetchone() == (1,)


def test_the_readme_shows_only_examples_this_file_runs() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Verifying webhooks", 1)[1].split("\n## ", 1)[0]
    shown = [code for lang, code in BLOCK.findall(section) if lang == "python"]
    assert len(shown) >= 2
    tested = blocks("python")
    for code in shown:
        assert code in tested, "a README example differs from docs/verifying-webhooks.md"
