#!/usr/bin/env bash
# Prints the three commands of the five-minute tour, for the token and port `make run` uses.
set -euo pipefail
token="${1:?usage: tour.sh TOKEN [API_PORT]}"
port="${2:-8000}"
api="http://127.0.0.1:${port}"
cat <<TOUR

Hookline is starting. In another terminal, try:

  1. Create a subscription (the answer holds its secret, whsec_...):
     curl -s -X POST ${api}/v1/subscriptions \\
       -H 'Authorization: Bearer ${token}' -H 'Content-Type: application/json' \\
       -d '{"url": "http://127.0.0.1:9000/hooks", "event_types": ["invoice.*"]}'

  2. Watch webhooks arrive, verified with that secret:
     .venv/bin/python scripts/receiver.py --port 9000 --secret 'whsec_...'

  3. Publish an event over HTTP (or over AMQP: see README.md):
     curl -s -X POST ${api}/v1/events \\
       -H 'Authorization: Bearer ${token}' -H 'Content-Type: application/json' \\
       -d '{"type": "invoice.paid", "data": {"invoice_id": "in_123", "amount": 990}}'

  4. See it all in the web UI: open ${api}/ui/ and sign in with the token ${token}

Metrics, health and readiness: http://127.0.0.1:${HOOKLINE_METRICS_PORT:-9100}/metrics, /healthz, /readyz
Stop with Ctrl-C (in-flight work is drained first).

TOUR
