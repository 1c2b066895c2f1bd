"""One settings object, read from `HOOKLINE_*` variables and `.env` (CONTRACT section 1)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from shared.durations import parse_duration_s, parse_size_bytes

DurationS = Annotated[float, BeforeValidator(parse_duration_s)]
SizeBytes = Annotated[int, BeforeValidator(parse_size_bytes)]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_METRICS_PORTS = {"ingest": 9100, "fanout": 9101, "sender": 9102, "all": 9100}


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Everything configurable; the names after `HOOKLINE_` are fixed by the contract."""

    model_config = SettingsConfigDict(
        env_prefix="HOOKLINE_", env_file=".env", extra="ignore", frozen=True
    )

    amqp_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672/")
    database_url: SecretStr = SecretStr("postgresql://postgres@127.0.0.1:5432/hookline")
    namespace: str = Field("hookline", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    api_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    retry_delays: Annotated[tuple[DurationS, ...], NoDecode] = (
        5.0,
        300.0,
        1800.0,
        7200.0,
        18000.0,
        36000.0,
        50400.0,
        72000.0,
        86400.0,
    )
    delivery_timeout: DurationS = 15.0
    disable_after: DurationS = 5 * 86400.0
    allow_private_targets: bool = False
    allowed_target_networks: Annotated[tuple[IPNetwork, ...], NoDecode] = ()
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    require_event_types: bool = False
    max_payload: SizeBytes = 256 * 1024
    secret_key: SecretStr | None = None

    # Beyond the contract: tuning knobs with defaults sized for one 2-core machine.
    sender_concurrency: int = Field(256, ge=1)
    """HTTP attempts in flight at once in one sender process."""
    sender_per_target_concurrency: int = Field(32, ge=1)
    """Attempts in flight to one subscription, so a slow receiver cannot hold all of them."""
    sender_prefetch: int = Field(1024, ge=1)
    sender_max_in_hand: int = Field(16384, ge=1)
    """Deliveries a sender holds expanded at once (a batch message carries an event's
    matches); messages beyond wait, unexpanded, in the prefetch window."""
    fanout_prefetch: int = Field(256, ge=1)
    ingest_prefetch: int = Field(1024, ge=1)
    """Ingest stores and publishes its messages in batches, so a window of one RabbitMQ
    confirm latency (up to 1-2 s on a loaded broker) must hold a batch's worth of them."""
    response_body_cap: SizeBytes = 4096
    shutdown_grace: DurationS = 10.0
    db_pool_size: int = Field(10, ge=1)
    api_reuse_port: bool = False
    """Listen on HOOKLINE_API_PORT with SO_REUSEPORT, so several ingest processes on one
    host share the port (the kernel spreads connections over them)."""
    batch_messages: bool = False
    """Publish many events (ingest -> fanout) and many deliveries (fanout -> sender) per
    message, wire format 2 (`shared.wire`). Every version since reads both formats; turn it
    on only once every fanout and sender runs such a version (docs/upgrading.md)."""

    @field_validator("api_tokens", "allowed_target_networks", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("retry_delays", mode="before")
    @classmethod
    def _delays(cls, value: object) -> object:
        value = _split_commas(value)
        if isinstance(value, list | tuple) and not value:
            raise ValueError("at least one retry delay is needed")
        return value

    @field_validator("allowed_target_networks", mode="after")
    @classmethod
    def _networks(cls, value: tuple[IPNetwork, ...]) -> tuple[IPNetwork, ...]:
        return tuple(ipaddress.ip_network(str(net), strict=False) for net in value)

    @field_validator("secret_key", mode="before")
    @classmethod
    def _empty_secret_key(cls, value: object) -> object:
        return None if value in ("", None) else value

    def metrics_port_for(self, service: str) -> int:
        """The ops port of a service: the setting when given, else the contract's default."""
        return (
            self.metrics_port if self.metrics_port is not None else DEFAULT_METRICS_PORTS[service]
        )

    @cached_property
    def token_values(self) -> tuple[bytes, ...]:
        """API tokens as bytes, for constant-time comparison."""
        return tuple(t.get_secret_value().encode() for t in self.api_tokens)

    @property
    def max_attempts(self) -> int:
        """Attempts in all: one first try plus one per retry delay."""
        return len(self.retry_delays) + 1


def load_settings() -> Settings:
    """Settings from the environment (and `.env`)."""
    return Settings()
