"""The UI's files as ingest serves them: no token needed, a strict CSP on every answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.settings import Settings
from tests.support.ingest import Ingest, running_ingest


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


async def test_the_ui_is_served_with_a_strict_content_security_policy(api: Ingest) -> None:
    for path, content_type in [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/views/subscriptions.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ]:
        async with api.http.get(api.base + path) as answer:
            assert answer.status == 200, path
            assert answer.content_type == content_type
            policy = answer.headers["Content-Security-Policy"]
            assert "default-src 'none'" in policy and "script-src 'self'" in policy
            assert "frame-ancestors 'self'" in policy and "'unsafe-inline'" not in policy
            assert answer.headers["Referrer-Policy"] == "no-referrer"
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
    async with api.http.get(api.base + "/ui/", headers={}) as answer:
        assert '<script type="module" src="app.js">' in await answer.text()


async def test_unknown_files_are_404_and_ui_redirects_to_its_folder(api: Ingest) -> None:
    for path in ("/ui/missing.js", "/ui/../pyproject.toml", "/ui/%2e%2e/shared/settings.py"):
        async with api.http.get(api.base + path) as answer:
            assert answer.status == 404, path
    async with api.http.get(api.base + "/ui", allow_redirects=False) as answer:
        assert answer.status == 308 and answer.headers["Location"] == "/ui/"


async def test_the_frame_ancestors_come_from_the_settings(settings: Settings) -> None:
    framed = settings.model_copy(update={"ui_frame_ancestors": "https://app.example.com"})
    async with running_ingest(framed) as api, api.http.get(api.base + "/ui/") as answer:
        policy = answer.headers["Content-Security-Policy"]
        assert "frame-ancestors https://app.example.com" in policy
