"""`python -m chaos`: Hookline's fault suite (issue 10).

It runs the real services as separate processes against PRIVATE RabbitMQ nodes and a
private Postgres (never the machine's own), streams events over AMQP and HTTP, applies one
fault at a time, and counts every signed webhook at a real receiver. See
docs/reliability-suite.md.
"""
