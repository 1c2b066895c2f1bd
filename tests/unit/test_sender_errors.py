"""What an attempt's error says: enough to act on, never a receiver's path or query."""

from __future__ import annotations

import aiohttp

from services.sender.classify import ErrorKind
from services.sender.client import _error


def test_an_unexpected_error_quoting_the_url_keeps_only_its_origin() -> None:
    url = "https://hooks.example.com/in?token=s3cr3t"
    exc = aiohttp.ClientPayloadError(f"Response payload is not completed: {url}")
    kind, message = _error(exc, 15.0, url)
    assert kind is ErrorKind.NETWORK
    assert "s3cr3t" not in message and "/in" not in message
    assert "https://hooks.example.com" in message


def test_a_timeout_says_how_long_it_waited() -> None:
    kind, message = _error(TimeoutError(), 2.5, "https://hooks.example.com/")
    assert kind is ErrorKind.TIMEOUT
    assert "2.5s" in message
