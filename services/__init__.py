"""Hookline's services: ingest, fanout and sender."""
