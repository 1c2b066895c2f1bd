"""One settings object, read from `HOOKLINE_*` variables and `.env` (CONTRACT section 1)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
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
    public_url: str | None = None
    """Where users reach the API and UI (portal links); default `http://{api_host}:{api_port}`."""
    ui_frame_ancestors: str = "'self'"
    """CSP `frame-ancestors` of the UI: the origins allowed to embed the portal in an iframe."""
    retention: DurationS = 30 * 86400.0
    """How long events, deliveries and attempts are kept (pending deliveries always are)."""
    idempotency_window: DurationS = 86400.0
    """How long an idempotency key is remembered, per tenant, from its first acceptance."""
    queue_type: Literal["classic", "quorum"] = "classic"

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
    ingest_batch_delay: DurationS = Field(0.010, ge=0, le=1)
    """How long ingest's next batch of events waits for more before it is stored: longer
    means fewer, larger batches (less CPU per event, and fewer messages for fanout and the
    sender) for that much more latency."""
    response_body_cap: SizeBytes = 4096
    shutdown_grace: DurationS = 10.0
    db_pool_size: int = Field(10, ge=1)
    metrics_sample_interval: DurationS = Field(10.0, ge=0)
    """How often one process of the deployment samples queue depths and pending work
    (`shared.sampler`); 0 turns the sampler off in this process."""
    fanout_route_cache_size: int = Field(100_000, ge=1)
    """Fanout's remembered answers, counted one per (tenant, event type) plus one per route
    (~270 bytes each, ~27 MB in all): bounds its memory whatever the number of
    subscriptions."""
    sender_subscription_cache_size: int = Field(10_000, ge=1)
    """Subscriptions (URL, keys, status; ~0.5 KB each) the sender keeps in memory."""
    liveness_bound: DurationS = 60.0
    """How long a consumer or a connection may stay unrestored before `/healthz` says 503."""
    quorum_delivery_limit: int = Field(50, ge=2)
    """`x-delivery-limit` of the quorum work queues: returns of one message before it is
    dead-lettered to its queue's rejected or dead queue (docs/reliability.md)."""
    overdue_after: DurationS = 3600.0
    """A pending delivery whose next attempt is this overdue is published again by the
    sender's overdue sweep (its message was lost with a queue or a node)."""
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

    @field_validator("public_url", mode="before")
    @classmethod
    def _empty_public_url(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("secret_key", mode="before")
    @classmethod
    def _empty_secret_key(cls, value: object) -> object:
        return None if value in ("", None) else value

    @model_validator(mode="after")
    def _window_within_retention(self) -> Settings:
        # A key must never outlive the event it answers with.
        if self.idempotency_window > self.retention:
            raise ValueError("HOOKLINE_IDEMPOTENCY_WINDOW must not exceed HOOKLINE_RETENTION")
        return self

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
    def public_base_url(self) -> str:
        """`HOOKLINE_PUBLIC_URL` without a trailing slash, or the API's own address."""
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def max_attempts(self) -> int:
        """Attempts in all: one first try plus one per retry delay."""
        return len(self.retry_delays) + 1


def load_settings() -> Settings:
    """Settings from the environment (and `.env`)."""
    return Settings()
