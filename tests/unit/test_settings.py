"""Settings read from `HOOKLINE_*` variables and `.env`, with the contract's defaults."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from shared.settings import Settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HOOKLINE_* variable and no .env from the developer's shell may leak in."""
    for name in list(os.environ):
        if name.startswith("HOOKLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_are_the_contracts() -> None:
    s = Settings()
    assert s.amqp_url.get_secret_value() == "amqp://guest:guest@127.0.0.1:5672/"
    assert s.database_url.get_secret_value() == "postgresql://postgres@127.0.0.1:5432/hookline"
    assert s.namespace == "hookline"
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8000)
    assert [s.metrics_port_for(n) for n in ("ingest", "fanout", "sender")] == [9100, 9101, 9102]
    assert s.api_tokens == ()
    assert s.retry_delays == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert s.max_attempts == 10
    assert s.delivery_timeout == 15.0
    assert s.disable_after == 5 * 86400
    assert s.allow_private_targets is False
    assert s.allowed_target_networks == ()
    assert s.log_format == "json"
    assert s.require_event_types is False
    assert s.max_payload == 256 * 1024
    assert s.secret_key is None


def test_reads_every_variable_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "HOOKLINE_AMQP_URL": "amqp://u:p@mq:5672/v",
        "HOOKLINE_DATABASE_URL": "postgresql://u:p@db/hl",
        "HOOKLINE_NAMESPACE": "staging-1",
        "HOOKLINE_API_HOST": "0.0.0.0",
        "HOOKLINE_API_PORT": "8080",
        "HOOKLINE_METRICS_PORT": "9200",
        "HOOKLINE_API_TOKENS": "one, two ,,three",
        "HOOKLINE_RETRY_DELAYS": "200ms,400ms,1m",
        "HOOKLINE_DELIVERY_TIMEOUT": "500ms",
        "HOOKLINE_DISABLE_AFTER": "2h",
        "HOOKLINE_ALLOW_PRIVATE_TARGETS": "true",
        "HOOKLINE_ALLOWED_TARGET_NETWORKS": "10.0.0.0/8,127.0.0.2/32,fd00::/8",
        "HOOKLINE_LOG_FORMAT": "console",
        "HOOKLINE_REQUIRE_EVENT_TYPES": "true",
        "HOOKLINE_MAX_PAYLOAD": "1MiB",
        "HOOKLINE_SECRET_KEY": "k" * 44,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert s.amqp_url.get_secret_value() == "amqp://u:p@mq:5672/v"
    assert s.database_url.get_secret_value() == "postgresql://u:p@db/hl"
    assert s.namespace == "staging-1"
    assert (s.api_host, s.api_port) == ("0.0.0.0", 8080)
    assert s.metrics_port_for("sender") == 9200
    assert [t.get_secret_value() for t in s.api_tokens] == ["one", "two", "three"]
    assert s.token_values == (b"one", b"two", b"three")
    assert s.retry_delays == (0.2, 0.4, 60.0)
    assert s.max_attempts == 4
    assert s.delivery_timeout == 0.5
    assert s.disable_after == 7200.0
    assert s.allow_private_targets is True
    assert s.allowed_target_networks == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("127.0.0.2/32"),
        ipaddress.ip_network("fd00::/8"),
    )
    assert s.log_format == "console"
    assert s.require_event_types is True
    assert s.max_payload == 1024 * 1024
    assert s.secret_key is not None and s.secret_key.get_secret_value() == "k" * 44


def test_reads_a_dot_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HOOKLINE_NAMESPACE=from-dotenv\nHOOKLINE_API_PORT=8123\n")
    s = Settings()
    assert (s.namespace, s.api_port) == ("from-dotenv", 8123)


def test_the_environment_wins_over_dot_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("HOOKLINE_NAMESPACE=from-dotenv\n")
    monkeypatch.setenv("HOOKLINE_NAMESPACE", "from-env")
    assert Settings().namespace == "from-env"


def test_secrets_stay_out_of_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKLINE_API_TOKENS", "tok-visible-nowhere")
    monkeypatch.setenv("HOOKLINE_AMQP_URL", "amqp://guest:pw-visible-nowhere@mq/")
    monkeypatch.setenv("HOOKLINE_SECRET_KEY", "key-visible-nowhere")
    text = repr(Settings()) + str(Settings())
    assert "visible-nowhere" not in text


def test_an_empty_secret_key_means_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOKLINE_SECRET_KEY", "")
    assert Settings().secret_key is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HOOKLINE_RETRY_DELAYS", ""),
        ("HOOKLINE_RETRY_DELAYS", "5s,soon"),
        ("HOOKLINE_DELIVERY_TIMEOUT", "fast"),
        ("HOOKLINE_MAX_PAYLOAD", "big"),
        ("HOOKLINE_LOG_FORMAT", "xml"),
        ("HOOKLINE_NAMESPACE", "has space"),
        ("HOOKLINE_ALLOWED_TARGET_NETWORKS", "10.0.0.0/33"),
        ("HOOKLINE_API_PORT", "eighty"),
    ],
)
def test_refuses_invalid_values_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert name.removeprefix("HOOKLINE_").lower() in str(caught.value)


def test_the_metrics_port_setting_applies_to_every_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOOKLINE_METRICS_PORT", "9999")
    s = Settings()
    assert {s.metrics_port_for(n) for n in ("ingest", "fanout", "sender", "all")} == {9999}
