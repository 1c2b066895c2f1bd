"""What the `hookline` API commands print: aligned tables, problem details line by line."""

from __future__ import annotations

import io

import pytest

from services.cli import main
from services.cli.http import ApiError
from services.cli.output import table


def test_a_table_is_aligned_with_lists_joined_and_missing_values_dashed() -> None:
    out = io.StringIO()
    rows = [
        {"id": "sub_1", "types": ["a.b", "c.*"], "tenant": None},
        {"id": "sub_22", "types": ["*"], "tenant": "acme"},
    ]
    columns = [("ID", lambda r: r["id"]), ("TYPES", lambda r: r["types"]),
               ("TENANT", lambda r: r["tenant"])]  # fmt: skip
    table(rows, columns, out)
    assert out.getvalue().splitlines() == [
        "ID      TYPES    TENANT",
        "sub_1   a.b,c.*  -",
        "sub_22  *        acme",
    ]


def test_no_rows_say_so() -> None:
    out = io.StringIO()
    table([], [("ID", lambda r: r["id"])], out)
    assert out.getvalue() == "(none)\n"


def test_a_422_lists_each_invalid_field_once() -> None:
    problem = {
        "title": "Unprocessable Entity",
        "status": 422,
        "detail": "body.url: bad; body.event_types: empty",
        "errors": [
            {"field": "body.url", "message": "bad"},
            {"field": "body.event_types", "message": "empty"},
        ],
    }
    error = ApiError(1, "422 Unprocessable Entity: ...", 422, problem)
    assert error.lines() == [
        "error: 422 Unprocessable Entity:",
        "  body.url: bad",
        "  body.event_types: empty",
    ]


def test_without_a_token_the_command_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HOOKLINE_TOKEN", raising=False)
    assert main(["subscriptions", "list", "--api-url", "http://127.0.0.1:1"]) == 2
    assert "pass --token or set HOOKLINE_TOKEN" in capsys.readouterr().err
