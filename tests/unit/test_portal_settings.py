"""HOOKLINE_PUBLIC_URL: where portal links point."""

from __future__ import annotations

from shared.settings import Settings


def test_the_public_url_defaults_to_the_apis_own_address() -> None:
    settings = Settings(api_host="10.1.2.3", api_port=8123, public_url="")
    assert settings.public_base_url == "http://10.1.2.3:8123"


def test_a_given_public_url_is_used_without_its_trailing_slash() -> None:
    settings = Settings(public_url="https://hooks.example.com/")
    assert settings.public_base_url == "https://hooks.example.com"
