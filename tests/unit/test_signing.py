"""Standard Webhooks signatures, checked against the specification's example and its library."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.signing import generate_secret, secret_bytes, sign, signature_header, verify

# The example of the Standard Webhooks specification (also in its reference libraries' tests),
# checked against the `standardwebhooks` package before being written down here.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_reproduces_the_specification_example() -> None:
    key = secret_bytes(SPEC_SECRET)
    assert sign(key, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_the_reference_library_agrees_on_the_example() -> None:
    stamp = datetime.fromtimestamp(SPEC_TIMESTAMP, tz=UTC)
    assert Webhook(SPEC_SECRET).sign(SPEC_MSG_ID, stamp, SPEC_BODY.decode()) == SPEC_SIGNATURE


def test_verify_accepts_the_example_and_rejects_any_change() -> None:
    key = secret_bytes(SPEC_SECRET)
    assert verify(key, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY, SPEC_SIGNATURE)
    assert not verify(key, SPEC_MSG_ID, SPEC_TIMESTAMP + 1, SPEC_BODY, SPEC_SIGNATURE)
    assert not verify(key, "msg_other", SPEC_TIMESTAMP, SPEC_BODY, SPEC_SIGNATURE)
    assert not verify(key, SPEC_MSG_ID, SPEC_TIMESTAMP, b'{"test": 2432232315}', SPEC_SIGNATURE)
    assert not verify(key, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY, "v1,AAAA")
    assert not verify(key, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY, "")


def test_a_header_with_two_secrets_verifies_under_either() -> None:
    old, new = secret_bytes(generate_secret()), secret_bytes(generate_secret())
    header = signature_header([new, old], "evt_1", 1700000000, b"{}")
    entries = header.split(" ")
    assert len(entries) == 2
    assert all(e.startswith("v1,") for e in entries)
    assert verify(old, "evt_1", 1700000000, b"{}", header)
    assert verify(new, "evt_1", 1700000000, b"{}", header)
    assert not verify(secret_bytes(generate_secret()), "evt_1", 1700000000, b"{}", header)


def test_the_reference_library_verifies_our_rotated_header() -> None:
    now = int(datetime.now(tz=UTC).timestamp())
    old_secret, new_secret = generate_secret(), generate_secret()
    body = b'{"type":"invoice.paid","timestamp":"2024-01-01T00:00:00Z","data":{}}'
    header = signature_header(
        [secret_bytes(new_secret), secret_bytes(old_secret)], "evt_x", now, body
    )
    headers = {"webhook-id": "evt_x", "webhook-timestamp": str(now), "webhook-signature": header}
    for secret in (old_secret, new_secret):
        assert Webhook(secret).verify(body, headers) == {
            "type": "invoice.paid",
            "timestamp": "2024-01-01T00:00:00Z",
            "data": {},
        }
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_generated_secrets_are_whsec_with_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_")
    assert len(secret_bytes(first)) == 32
    assert first != second


@pytest.mark.parametrize(
    "secret",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
        "whsec_not base64!",
        "whsec_" + "A" * 20,  # 15 bytes: too short
        "whsec_" + "A" * 88,  # 66 bytes: too long
    ],
)
def test_malformed_secrets_are_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="secret"):
        secret_bytes(secret)
