"""The API's pure parts: token comparison, cursors, and the OpenAPI document's coverage."""

from __future__ import annotations

import pytest

from services.api.app import ROUTES, openapi_document
from services.api.auth import presented_token, token_accepted
from services.api.problems import Problem
from services.api.schemas import decode_cursor, encode_cursor


def test_token_accepted_only_for_a_configured_token() -> None:
    tokens = (b"alpha-token", b"beta-token")
    assert token_accepted(b"beta-token", tokens)
    assert not token_accepted(b"beta-toke", tokens)
    assert not token_accepted(b"", tokens)
    assert not token_accepted(b"alpha-token", ())


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", b"abc"),
        ("bearer   abc ", b"abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_presented_token(header: str | None, token: bytes | None) -> None:
    assert presented_token(header) == token


def test_cursor_round_trip_and_refusal() -> None:
    cursor = encode_cursor(["2024-01-01T00:00:00+00:00", "dlv_x"])
    assert decode_cursor(cursor, 2) == ["2024-01-01T00:00:00+00:00", "dlv_x"]
    assert decode_cursor(None, 1) is None
    for bad in ("%%%", encode_cursor(["a"]), encode_cursor([1, 2]), "bm90IGpzb24"):
        with pytest.raises(Problem) as caught:
            decode_cursor(bad, 2)
        assert caught.value.status == 422


def test_every_route_is_documented_with_its_problems() -> None:
    document = openapi_document()
    schemas = document["components"]["schemas"]  # type: ignore[index]
    for route in ROUTES:
        operation = document["paths"][route.path][route.method.lower()]  # type: ignore[index]
        responses = operation["responses"]
        assert str(route.status) in responses
        assert {"401", "503"} <= set(responses)
        if route.body is not None:
            assert {"400", "413", "415", "422"} <= set(responses)
            assert "requestBody" in operation
        for answer in responses.values():
            for media in answer.get("content", {}).values():
                ref = media["schema"]["$ref"].rsplit("/", 1)[1]
                assert ref in schemas


def test_the_list_never_documents_a_secret() -> None:
    schemas = openapi_document()["components"]["schemas"]  # type: ignore[index]
    assert "secret" not in schemas["Subscription"]["properties"]
    assert "secret" in schemas["SubscriptionWithSecret"]["properties"]
