"""Subscription secrets at rest: sealed with HOOKLINE_SECRET_KEY, opened again, rotated."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from shared.errors import ConfigurationError
from shared.secretbox import ENCRYPTED_PREFIX, SecretBox, new_key
from shared.signing import generate_secret


def box(*keys: str) -> SecretBox:
    return SecretBox(SecretStr(",".join(keys)))


def test_a_sealed_secret_is_not_readable_and_opens_to_itself() -> None:
    secret = generate_secret()
    sealed = box(new_key()).seal(secret)
    assert sealed.startswith(ENCRYPTED_PREFIX)
    assert secret not in sealed
    assert secret.removeprefix("whsec_") not in sealed


def test_round_trip() -> None:
    secret_box = box(new_key())
    secret = generate_secret()
    assert secret_box.open(secret_box.seal(secret)) == secret


def test_sealing_twice_gives_different_values() -> None:
    secret_box = box(new_key())
    secret = generate_secret()
    assert secret_box.seal(secret) != secret_box.seal(secret)


def test_without_a_key_secrets_are_stored_plain() -> None:
    secret_box = SecretBox(None)
    secret = generate_secret()
    assert not secret_box.encrypts
    assert secret_box.seal(secret) == secret
    assert secret_box.open(secret) == secret


def test_plain_values_written_before_a_key_was_set_still_read() -> None:
    secret = generate_secret()
    assert box(new_key()).open(secret) == secret


def test_rotation_new_key_first_old_key_still_opens() -> None:
    old, new = new_key(), new_key()
    secret = generate_secret()
    stored_under_old = box(old).seal(secret)

    rotating = box(new, old)
    assert rotating.open(stored_under_old) == secret
    resealed = rotating.reseal(stored_under_old)

    assert box(new).open(resealed) == secret
    with pytest.raises(ConfigurationError, match="does not decrypt"):
        box(old).open(resealed)


def test_reseal_encrypts_plain_values() -> None:
    key = new_key()
    secret = generate_secret()
    resealed = box(key).reseal(secret)
    assert resealed.startswith(ENCRYPTED_PREFIX)
    assert box(key).open(resealed) == secret


def test_wrong_key_is_a_clear_configuration_error_without_the_secret() -> None:
    secret = generate_secret()
    sealed = box(new_key()).seal(secret)
    with pytest.raises(ConfigurationError, match="does not decrypt with any key") as caught:
        box(new_key()).open(sealed)
    assert secret not in str(caught.value)
    assert sealed not in str(caught.value)


def test_encrypted_value_without_a_key_is_a_clear_configuration_error() -> None:
    sealed = box(new_key()).seal(generate_secret())
    with pytest.raises(ConfigurationError, match="HOOKLINE_SECRET_KEY is not set"):
        SecretBox(None).open(sealed)


@pytest.mark.parametrize("setting", ["not-a-key", "short", ",", " , "])
def test_malformed_key_setting_is_a_configuration_error(setting: str) -> None:
    with pytest.raises(ConfigurationError, match="new-key") as caught:
        SecretBox(SecretStr(setting))
    assert "not-a-key" not in str(caught.value)


def test_a_sealed_value_is_not_sealed_again() -> None:
    secret_box = box(new_key())
    with pytest.raises(ValueError, match="already sealed"):
        secret_box.seal(secret_box.seal(generate_secret()))


def test_repr_shows_no_key() -> None:
    key = new_key()
    assert key not in repr(box(key))
    assert repr(box(key)) == "SecretBox(encrypts=True)"


def test_new_keys_are_distinct_working_keys() -> None:
    first, second = new_key(), new_key()
    assert first != second
    assert box(first, second).encrypts
