"""`hookline subscriptions|events|deliveries|event-types ...`: the HTTP API for people.

Every command talks to a running Hookline's API: `--api-url` (or `HOOKLINE_URL`, default
`http://127.0.0.1:8000`) with `--token` (or `HOOKLINE_TOKEN`: a client's token, not the
server's `HOOKLINE_API_TOKENS` list). Answers print as tables, or as the API's JSON with
`--json`. Exit codes: 0 done, 1 the API refused the request (4xx, problem details on
stderr), 2 usage, 3 the API is unreachable or failed (5xx).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO, TypeAlias

from services.cli.api_views import VIEWS
from services.cli.http import EXIT_USAGE, ApiClient, ApiError
from services.cli.output import as_json

DEFAULT_URL = "http://127.0.0.1:8000"
Handler = Callable[[ApiClient, argparse.Namespace], Any]
Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _connection_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-url", help=f"the API (env HOOKLINE_URL, default {DEFAULT_URL})")
    common.add_argument("--token", help="bearer token (env HOOKLINE_TOKEN)")
    common.add_argument("--json", action="store_true", help="print the API's JSON answer")
    return common


def _json_arg(text: str) -> Any:
    """A JSON value given inline, as `@file`, or as `-` (standard input)."""
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        text = Path(text[1:]).read_text()
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None


def _leaf(
    group: Commands, name: str, help: str, handler: Handler, view: str
) -> argparse.ArgumentParser:
    parser = group.add_parser(name, help=help, parents=[_connection_options()])
    parser.set_defaults(api_handler=handler, api_view=view)
    return parser


def _page(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="items per page (API default 50, max 500)")
    parser.add_argument("--cursor", help="the next_cursor of a previous page")


def _subscription_fields(parser: argparse.ArgumentParser, *, create: bool) -> None:
    parser.add_argument("--url", required=create, help="where webhooks are POSTed")
    parser.add_argument(
        "--event-type",
        dest="event_types",
        action="append",
        help="an event type, `prefix.*` or `*`; repeat for several",
    )
    parser.add_argument("--description")
    parser.add_argument("--tenant", dest="tenant_id")


def _body(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def _add_subscriptions(commands: Commands) -> None:
    group = commands.add_parser("subscriptions", help="list and manage subscriptions")
    sub = group.add_subparsers(dest="api_command", required=True)
    listing = _leaf(sub, "list", "list subscriptions (no secrets)", _list_subs, "subscriptions")
    listing.add_argument("--event-type")
    listing.add_argument("--status", choices=["enabled", "disabled"])
    listing.add_argument("--tenant", dest="tenant_id")
    _page(listing)
    create = _leaf(sub, "create", "create a subscription", _create_sub, "subscription")
    _subscription_fields(create, create=True)
    create.add_argument("--secret", help="a whsec_ secret (generated when not given)")
    show = _leaf(sub, "show", "a subscription, with its secret", _show_sub, "subscription")
    show.add_argument("id")
    update = _leaf(sub, "update", "change a subscription", _update_sub, "subscription")
    update.add_argument("id")
    _subscription_fields(update, create=False)
    update.add_argument("--status", choices=["enabled", "disabled"])
    delete = _leaf(sub, "delete", "delete a subscription", _delete_sub, "done")
    delete.add_argument("id")
    rotate = _leaf(sub, "rotate-secret", "a new secret; the old signs for 24h", _rotate, "secret")
    rotate.add_argument("id")
    rotate.add_argument("--secret", help="the new whsec_ secret (generated when not given)")


def _add_events(commands: Commands) -> None:
    group = commands.add_parser("events", help="send and inspect events")
    sub = group.add_subparsers(dest="api_command", required=True)
    send = _leaf(sub, "send", "publish an event over HTTP", _send_event, "event")
    send.add_argument("type", help="the event type, as invoice.paid")
    send.add_argument(
        "--data", type=_json_arg, default={}, help="a JSON object, @file or - (stdin)"
    )
    send.add_argument("--id", help="idempotency key: the same id again is delivered once")
    send.add_argument("--tenant", dest="tenant_id")
    show = _leaf(sub, "show", "an event and its deliveries", _show_event, "event_detail")
    show.add_argument("id")


def _add_deliveries(commands: Commands) -> None:
    group = commands.add_parser("deliveries", help="inspect and retry deliveries")
    sub = group.add_subparsers(dest="api_command", required=True)
    listing = _leaf(sub, "list", "a subscription's deliveries", _list_deliveries, "deliveries")
    listing.add_argument("--subscription", required=True, help="the subscription id")
    listing.add_argument("--status", choices=["pending", "succeeded", "failed", "cancelled"])
    _page(listing)
    show = _leaf(sub, "show", "a delivery with every attempt", _show_delivery, "delivery")
    show.add_argument("id")
    retry = _leaf(sub, "retry", "send a delivery again now", _retry_delivery, "retried")
    retry.add_argument("id")


def _add_event_types(commands: Commands) -> None:
    group = commands.add_parser("event-types", help="the event-type catalogue")
    sub = group.add_subparsers(dest="api_command", required=True)
    listing = _leaf(sub, "list", "list the catalogue", _list_types, "event_types")
    _page(listing)
    create = _leaf(sub, "create", "add an event type", _create_type, "event_type")
    create.add_argument("name")
    create.add_argument("--description")
    create.add_argument("--schema", type=_json_arg, help="JSON Schema of data: inline, @file, -")
    delete = _leaf(sub, "delete", "remove an event type", _delete_type, "done")
    delete.add_argument("name")


def add_parsers(commands: Commands) -> None:
    """Register the API commands under the `hookline` command."""
    _add_subscriptions(commands)
    _add_events(commands)
    _add_deliveries(commands)
    _add_event_types(commands)


def _list_subs(api: ApiClient, a: argparse.Namespace) -> Any:
    query = _body(a, "event_type", "status", "tenant_id", "limit", "cursor")
    return api.get("/v1/subscriptions", **query)


def _create_sub(api: ApiClient, a: argparse.Namespace) -> Any:
    body = _body(a, "url", "event_types", "description", "tenant_id", "secret")
    body.setdefault("event_types", ["*"])
    return api.request("POST", "/v1/subscriptions", body=body)


def _show_sub(api: ApiClient, a: argparse.Namespace) -> Any:
    return api.get(f"/v1/subscriptions/{_quote(a.id)}")


def _update_sub(api: ApiClient, a: argparse.Namespace) -> Any:
    body = _body(a, "url", "event_types", "description", "tenant_id", "status")
    if not body:
        raise ApiError(EXIT_USAGE, "nothing to update: give at least one of the options")
    return api.request("PATCH", f"/v1/subscriptions/{_quote(a.id)}", body=body)


def _delete_sub(api: ApiClient, a: argparse.Namespace) -> Any:
    api.request("DELETE", f"/v1/subscriptions/{_quote(a.id)}")
    return {"message": f"subscription {a.id} deleted"}


def _rotate(api: ApiClient, a: argparse.Namespace) -> Any:
    path = f"/v1/subscriptions/{_quote(a.id)}/secret/rotate"
    return api.request("POST", path, body=_body(a, "secret"))


def _send_event(api: ApiClient, a: argparse.Namespace) -> Any:
    body = {"type": a.type, "data": a.data, **_body(a, "id", "tenant_id")}
    return api.request("POST", "/v1/events", body=body)


def _show_event(api: ApiClient, a: argparse.Namespace) -> Any:
    return api.get(f"/v1/events/{_quote(a.id)}")


def _list_deliveries(api: ApiClient, a: argparse.Namespace) -> Any:
    path = f"/v1/subscriptions/{_quote(a.subscription)}/deliveries"
    return api.get(path, **_body(a, "status", "limit", "cursor"))


def _show_delivery(api: ApiClient, a: argparse.Namespace) -> Any:
    return api.get(f"/v1/deliveries/{_quote(a.id)}")


def _retry_delivery(api: ApiClient, a: argparse.Namespace) -> Any:
    return api.request("POST", f"/v1/deliveries/{_quote(a.id)}/retry")


def _list_types(api: ApiClient, a: argparse.Namespace) -> Any:
    return api.get("/v1/event-types", **_body(a, "limit", "cursor"))


def _create_type(api: ApiClient, a: argparse.Namespace) -> Any:
    return api.request("POST", "/v1/event-types", body=_body(a, "name", "description", "schema"))


def _delete_type(api: ApiClient, a: argparse.Namespace) -> Any:
    api.request("DELETE", f"/v1/event-types/{_quote(a.name)}")
    return {"message": f"event type {a.name} deleted"}


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe="")


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Run the API command chosen in `args`; returns the exit code."""
    url = args.api_url or os.environ.get("HOOKLINE_URL") or DEFAULT_URL
    token = args.token or os.environ.get("HOOKLINE_TOKEN")
    if not token:
        print("error: no API token: pass --token or set HOOKLINE_TOKEN", file=err)
        return EXIT_USAGE
    try:
        answer = args.api_handler(ApiClient(url, token), args)
    except ApiError as exc:
        for line in exc.lines():
            print(line, file=err)
        return exc.exit_code
    if args.json:
        as_json(answer, out)
        return 0
    VIEWS[args.api_view](answer, out, err)
    return 0
