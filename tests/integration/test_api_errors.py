"""Every error path of the API answers RFC 9457 problem details, never a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from shared.settings import Settings
from tests.support import ADMIN_DATABASE_URL
from tests.support.ingest import Ingest, running_ingest

PROBLEM = "application/problem+json"


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Ingest]:
    async with running_ingest(settings) as running:
        yield running


def assert_problem(status: int, problem: object, resp: aiohttp.ClientResponse, code: int) -> None:
    assert status == code
    assert resp.content_type == PROBLEM
    assert isinstance(problem, dict)
    assert problem["status"] == code
    assert {"type", "title", "detail"} <= set(problem)
    assert "Traceback" not in problem["detail"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Basic dGVzdDp0ZXN0"},
        {"Authorization": "Bearer"},
    ],
)
async def test_missing_or_wrong_token_is_401_without_hints(
    api: Ingest, headers: dict[str, str]
) -> None:
    status, problem, resp = await api.call("GET", "/v1/subscriptions", auth=False, headers=headers)
    assert_problem(status, problem, resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "token" in problem["detail"] and "test-token" not in str(problem)


async def test_openapi_is_open_and_describes_the_api(api: Ingest) -> None:
    status, document, _ = await api.call("GET", "/openapi.json", auth=False)
    assert status == 200
    assert document["openapi"].startswith("3.1")
    assert "/v1/subscriptions/{id}/secret/rotate" in document["paths"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


async def test_unknown_route_and_wrong_method(api: Ingest) -> None:
    status, problem, resp = await api.call("GET", "/v1/nothing-here")
    assert_problem(status, problem, resp, 404)
    status, problem, resp = await api.call("GET", "/elsewhere", auth=False)
    assert_problem(status, problem, resp, 404)
    status, problem, resp = await api.call("PUT", "/v1/subscriptions")
    assert_problem(status, problem, resp, 405)
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "POST"}


async def test_malformed_json_is_400(api: Ingest) -> None:
    status, problem, resp = await api.call(
        "POST", "/v1/subscriptions", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_problem(status, problem, resp, 400)


async def test_wrong_content_type_is_415(api: Ingest) -> None:
    status, problem, resp = await api.call(
        "POST", "/v1/events", data=b"type=a.b", headers={"Content-Type": "text/plain"}
    )
    assert_problem(status, problem, resp, 415)


async def test_missing_body_is_422(api: Ingest) -> None:
    status, problem, resp = await api.call("POST", "/v1/subscriptions")
    assert_problem(status, problem, resp, 422)
    assert problem["errors"] == [{"field": "body", "message": "Field required"}]


async def test_body_over_the_limit_is_413(settings: Settings) -> None:
    small = settings.model_copy(update={"max_payload": 1024})
    async with running_ingest(small) as api:
        big = {"type": "a.b", "data": {"x": "y" * 2000}}
        status, problem, resp = await api.call("POST", "/v1/events", big)
        assert_problem(status, problem, resp, 413)

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"type": "a.b", "data": {"x": "'
            for _ in range(10):
                yield b"y" * 200
            yield b'"}}'

        status, problem, resp = await api.call(
            "POST", "/v1/events", data=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_problem(status, problem, resp, 413)


async def test_no_configured_tokens_refuses_every_request(settings: Settings) -> None:
    closed = settings.model_copy(update={"api_tokens": ()})
    async with running_ingest(closed) as api:
        status, problem, resp = await api.call("GET", "/v1/subscriptions")
        assert_problem(status, problem, resp, 503)
        assert "HOOKLINE_API_TOKENS" in problem["detail"]


async def test_database_down_is_503_and_not_ready(api: Ingest) -> None:
    name = api.settings.database_url.get_secret_value().rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name
        )
        status, problem, resp = await api.call("GET", "/v1/subscriptions")
        assert_problem(status, problem, resp, 503)
        ready = f"http://127.0.0.1:{api.settings.metrics_port}/readyz"
        for _ in range(100):
            async with api.http.get(ready) as answer:
                if answer.status == 503:
                    break
            await asyncio.sleep(0.1)
        assert answer.status == 503
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()
    for _ in range(100):
        status, _, _ = await api.call("GET", "/v1/subscriptions")
        if status == 200:
            break
        await asyncio.sleep(0.1)
    assert status == 200
