"""Prometheus metrics of every service, in one explicit registry (CONTRACT section 5)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS_S = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    1800.0,
    7200.0,
    86400.0,
)

EVENTS_INGESTED = Counter(
    "hookline_events_ingested_total",
    "Events accepted and stored.",
    ["source"],
    registry=REGISTRY,
)
EVENTS_REJECTED = Counter(
    "hookline_events_rejected_total",
    "Events refused, by reason.",
    ["reason"],
    registry=REGISTRY,
)
EVENTS_DUPLICATE = Counter(
    "hookline_events_duplicate_total",
    "Events whose idempotency key was seen before.",
    ["source"],
    registry=REGISTRY,
)
FANOUT_DELIVERIES = Counter(
    "hookline_fanout_deliveries_total",
    "Deliveries created by fanout.",
    registry=REGISTRY,
)
DELIVERY_ATTEMPTS = Counter(
    "hookline_delivery_attempts_total",
    "HTTP delivery attempts, by outcome.",
    ["outcome"],
    registry=REGISTRY,
)
DELIVERY_DURATION = Histogram(
    "hookline_delivery_duration_seconds",
    "Duration of one HTTP delivery attempt.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0),
    registry=REGISTRY,
)
END_TO_END = Histogram(
    "hookline_end_to_end_seconds",
    "From event accepted to its successful delivery.",
    buckets=_LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
DEAD_LETTERED = Counter(
    "hookline_dead_lettered_total",
    "Deliveries moved to the dead queue.",
    registry=REGISTRY,
)
DELIVERIES_CANCELLED = Counter(
    "hookline_deliveries_cancelled_total",
    "Deliveries not sent because their subscription was disabled or deleted.",
    registry=REGISTRY,
)
DELIVERIES_DEFERRED = Counter(
    "hookline_deliveries_deferred_total",
    "Deliveries parked in a retry queue because their target already had its share of "
    "the sender's concurrency.",
    registry=REGISTRY,
)
SUBSCRIPTIONS_DISABLED = Counter(
    "hookline_subscriptions_disabled_total",
    "Subscriptions disabled by Hookline, by reason.",
    ["reason"],
    registry=REGISTRY,
)
INFLIGHT_ATTEMPTS = Gauge(
    "hookline_sender_inflight_attempts",
    "HTTP attempts in flight.",
    registry=REGISTRY,
)
SUBSCRIPTIONS_CACHED = Gauge(
    "hookline_subscriptions_cached",
    "Subscriptions held in a service's cache.",
    ["service"],
    registry=REGISTRY,
)
DB_BATCH_SIZE = Histogram(
    "hookline_db_batch_rows",
    "Rows written per batched database write.",
    ["table"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
    registry=REGISTRY,
)
HTTP_REQUESTS = Counter(
    "hookline_api_requests_total",
    "API requests, by route and status.",
    ["route", "status"],
    registry=REGISTRY,
)
CONSUMER_RESTORES = Counter(
    "hookline_consumer_restores_total",
    "Times a consumer was restored after losing its channel or connection.",
    ["consumer"],
    registry=REGISTRY,
)
OVERDUE_REPUBLISHED = Counter(
    "hookline_overdue_deliveries_republished_total",
    "Pending deliveries published again by the overdue sweep (their message was lost).",
    registry=REGISTRY,
)
