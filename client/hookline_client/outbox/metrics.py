"""The relay's own Prometheus metrics, on a registry of its own, served on `--metrics-port`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


class RelayMetrics:
    """`hookline_outbox_*`: pending rows, the oldest pending row's age, published, failed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.pending = Gauge(
            "hookline_outbox_pending_rows",
            "Committed outbox rows not yet published.",
            registry=self.registry,
        )
        self.oldest_age = Gauge(
            "hookline_outbox_oldest_pending_age_seconds",
            "Age of the oldest committed row not yet published (0 when none).",
            registry=self.registry,
        )
        self.published = Counter(
            "hookline_outbox_published_total",
            "Outbox rows published with a broker confirm and marked by this relay.",
            registry=self.registry,
        )
        self.failures = Counter(
            "hookline_outbox_publish_failures_total",
            "Outbox rows this relay failed to publish (tried again later).",
            ["reason"],
            registry=self.registry,
        )

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """Serve `/metrics` on `host:port` from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
