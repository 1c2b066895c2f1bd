"""Prometheus metrics of every service, in one explicit registry (CONTRACT section 5)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)

REGISTRY = CollectorRegistry(auto_describe=True)
# process_* (CPU seconds, resident memory, open fds, start time; Linux) and python_gc_*.
ProcessCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

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
    "Deliveries deferred to a retry queue because their target already had its share of "
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
    "What a service's subscription cache holds: subscriptions (sender), route entries (fanout).",
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
API_REQUEST_DURATION = Histogram(
    "hookline_api_request_duration_seconds",
    "Time to answer an API request, by route.",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
BUILD_INFO = Gauge(
    "hookline_build_info",
    "1 per running service process, labelled with what it runs.",
    ["service", "version"],
    registry=REGISTRY,
)

# Known label values start at 0: `rate` and `increase` then count a series' first events, and
# an alert on "no events" sees a flat zero instead of no series at all.
for _source in ("amqp", "http"):
    EVENTS_INGESTED.labels(_source)
for _reason in ("gone", "failing"):
    SUBSCRIPTIONS_DISABLED.labels(_reason)

# Storage and retention (issue 16), kept by ingest, which owns the partitions. `table` is
# one of events, deliveries, delivery_attempts, idempotency_keys.
TABLE_ROWS = Gauge(
    "hookline_table_rows",
    "Rows kept per table, as Postgres estimates them (all partitions).",
    ["table"],
    registry=REGISTRY,
)
TABLE_SIZE = Gauge(
    "hookline_table_size_bytes",
    "Bytes on disk per table, indexes and TOAST included (all partitions).",
    ["table"],
    registry=REGISTRY,
)
TABLE_OLDEST = Gauge(
    "hookline_table_oldest_row_timestamp_seconds",
    "Unix time of the oldest row kept per table (0 when empty).",
    ["table"],
    registry=REGISTRY,
)
TABLE_PARTITIONS = Gauge(
    "hookline_table_partitions",
    "Partitions per partitioned table.",
    ["table"],
    registry=REGISTRY,
)
RETENTION_ROWS_DROPPED = Counter(
    "hookline_retention_dropped_rows_total",
    "Rows removed by retention, per table (partition sizes as Postgres estimates them).",
    ["table"],
    registry=REGISTRY,
)
RETENTION_PARTITIONS_DROPPED = Counter(
    "hookline_retention_dropped_partitions_total",
    "Partitions dropped by retention, per table.",
    ["table"],
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
