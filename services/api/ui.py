"""`/ui/`: the web UI, plain files (HTML, ES modules, CSS) served from `services/api/ui`.

The files are read once, at start, into memory: a handful of small files, no path from a
request ever reaches the file system, and a fresh clone serves them with no build step.
Every answer carries a strict Content-Security-Policy: scripts, styles and API calls from
this origin only, no inline code, no plugins; `frame-ancestors` is `HOOKLINE_UI_FRAME_ANCESTORS`
so that a product can embed the portal in an iframe from the origins it names.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

from aiohttp import web

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}


def _files(folder: Traversable, prefix: str = "") -> dict[str, tuple[bytes, str]]:
    found: dict[str, tuple[bytes, str]] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            found.update(_files(entry, name + "/"))
            continue
        suffix = name[name.rfind(".") :]
        if suffix in _TYPES:
            found[name] = (entry.read_bytes(), _TYPES[suffix])
    return found


def security_headers(frame_ancestors: str) -> dict[str, str]:
    """The headers of every UI answer."""
    policy = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            f"frame-ancestors {frame_ancestors}",
        ]
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        # The files change with each release and are tiny: always revalidate.
        "Cache-Control": "no-cache",
    }


def add_ui_routes(app: web.Application, frame_ancestors: str) -> None:
    """Serve the UI under `/ui/` (`/ui` redirects there)."""
    files = _files(resources.files("services.api") / "ui")
    headers = security_headers(frame_ancestors)

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info.get("name") or "index.html"
        found = files.get(name)
        if found is None:
            raise web.HTTPNotFound()
        body, content_type = found
        charset = None if content_type == "image/svg+xml" else "utf-8"
        return web.Response(body=body, content_type=content_type, charset=charset, headers=headers)

    async def to_slash(_: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect("/ui/")

    app.router.add_get("/ui", to_slash)
    app.router.add_get("/ui/", serve)
    app.router.add_get("/ui/{name:.+}", serve)
