"""A tiny webhook receiver for trying Hookline: prints each webhook and checks its signature.

    .venv/bin/python scripts/receiver.py --port 9000 --secret whsec_...

Every request is printed on one line with its `webhook-id`, type and data. With `--secret`
(or WEBHOOK_SECRET) the Standard Webhooks signature is verified with nothing but `hmac`, the
way any receiver can; a request that fails verification is answered 400, so Hookline retries.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
import time

from aiohttp import web

TOLERANCE_S = 5 * 60  # refuse timestamps further than this from now: replayed requests


def expected_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    return base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def check(secret: str, headers: dict[str, str], body: bytes) -> str | None:
    """None when the request is authentic, else why not."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (msg_id and timestamp.isdigit() and signatures):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    if abs(time.time() - int(timestamp)) > TOLERANCE_S:
        return "timestamp outside the tolerance"
    expected = expected_signature(secret, msg_id, timestamp, body)
    # One entry per live secret of the subscription (two during a rotation): any may match.
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return None
    return "no signature matches the secret"


def make_app(secret: str | None, status: int) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        problem = check(secret, headers, body) if secret else None
        try:
            payload = json.loads(body)
            summary = f"{payload.get('type')} {json.dumps(payload.get('data'))}"
        except (ValueError, AttributeError):
            summary = f"{len(body)} bytes, not JSON"
        verdict = "unverified" if not secret else ("verified" if problem is None else problem)
        clock = time.strftime("%H:%M:%S")
        print(f"{clock} {headers.get('webhook-id', '-')} [{verdict}] {summary}", flush=True)
        if problem is not None:
            return web.Response(status=400, text=problem)
        return web.Response(status=status)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", receive)
    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument(
        "--secret",
        default=os.environ.get("WEBHOOK_SECRET"),
        help="the subscription's whsec_... secret (default: $WEBHOOK_SECRET)",
    )
    parser.add_argument("--status", type=int, default=200, help="status to answer (try 500)")
    args = parser.parse_args()
    print(f"listening on http://{args.host}:{args.port}/ (Ctrl-C to stop)", file=sys.stderr)
    web.run_app(make_app(args.secret, args.status), host=args.host, port=args.port, print=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
