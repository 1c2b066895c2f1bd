"""`python -m bench`: Hookline's benchmark (issue 6).

It runs the real services as separate processes against the local RabbitMQ and Postgres,
counts every webhook at a fast local receiver, and compares the figures with a minimal
consume-POST-ack process (the ceiling) measured in the same run. See docs/performance.md.
"""
