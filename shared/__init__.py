"""Hookline's library shared by the ingest, fanout and sender services."""

__version__ = "0.1.0"
