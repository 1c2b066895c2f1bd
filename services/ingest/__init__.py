"""Ingest: accepts events over AMQP and HTTP, stores them once, publishes them to fanout."""
