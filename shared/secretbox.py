"""Subscription secrets at rest: encrypted with `HOOKLINE_SECRET_KEY` when it is set.

The key setting holds one or more Fernet keys, comma-separated. The first encrypts; every one
decrypts, so a key is rotated by putting the new key first, keeping the old one after it,
running `hookline secrets reencrypt`, then removing the old key. Stored values are
`enc:v1:<fernet token>`; plain `whsec_…` values (written before a key was set) still read.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

from shared.errors import ConfigurationError

ENCRYPTED_PREFIX = "enc:v1:"

# Messages never quote the key or the stored value: both end up in logs.
_BAD_KEY = (
    "HOOKLINE_SECRET_KEY must be one or more Fernet keys (32 url-safe base64 bytes),"
    " comma-separated; make one with `hookline secrets new-key`"
)


class SecretBox:
    """Seals secrets for storage and opens them again."""

    def __init__(self, key_setting: SecretStr | None) -> None:
        self._fernet: MultiFernet | None = None
        if key_setting is None:
            return
        keys = [k.strip() for k in key_setting.get_secret_value().split(",") if k.strip()]
        if not keys:
            # A setting of only commas or spaces is a mistake, not a request for plain text.
            raise ConfigurationError(_BAD_KEY)
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])
        except ValueError as exc:
            raise ConfigurationError(_BAD_KEY) from exc

    @property
    def encrypts(self) -> bool:
        """True when a key is set, so `seal` encrypts."""
        return self._fernet is not None

    def __repr__(self) -> str:
        return f"SecretBox(encrypts={self.encrypts})"

    def seal(self, secret: str) -> str:
        """The value to store for `secret`: `enc:v1:…` with a key, `secret` itself without.

        ValueError when `secret` is already sealed (sealing twice would store a value that
        opens to ciphertext, not to the secret).
        """
        if secret.startswith(ENCRYPTED_PREFIX):
            raise ValueError("the secret is already sealed")
        if self._fernet is None:
            return secret
        return ENCRYPTED_PREFIX + self._fernet.encrypt(secret.encode()).decode()

    def open(self, stored: str) -> str:
        """The secret behind a stored value; plain values are returned as they are.

        ConfigurationError when the value is encrypted and no key set here decrypts it.
        """
        if not stored.startswith(ENCRYPTED_PREFIX):
            return stored
        if self._fernet is None:
            raise ConfigurationError(
                "a subscription secret is encrypted but HOOKLINE_SECRET_KEY is not set"
            )
        try:
            return self._fernet.decrypt(stored[len(ENCRYPTED_PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise ConfigurationError(
                "a subscription secret does not decrypt with any key in HOOKLINE_SECRET_KEY"
            ) from exc

    def reseal(self, stored: str) -> str:
        """`stored` encrypted under the first key (for key rotation); plain when no key is set.

        ConfigurationError when `stored` is encrypted under none of the keys.
        """
        return self.seal(self.open(stored))


def new_key() -> str:
    """A fresh key for `HOOKLINE_SECRET_KEY`."""
    return Fernet.generate_key().decode()
