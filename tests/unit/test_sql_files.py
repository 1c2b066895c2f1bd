"""The named-statement files: every block parses, fragments include, mistakes are loud."""

from __future__ import annotations

from importlib import resources

import pytest

from shared.sql import parse, queries, quote_identifier

_FILES = sorted(
    entry.name.removesuffix(".sql")
    for entry in resources.files("shared.sql").iterdir()
    if entry.name.endswith(".sql")
)


def test_blocks_are_split_by_name_with_comments_left_to_the_block_below() -> None:
    text = """
-- fragment: columns
id, status

-- name: get
-- why this reads as it does
SELECT {{columns}} FROM deliveries WHERE id = $1;

-- The next one skips settled rows.
-- name: pending
SELECT {{ columns }} FROM deliveries WHERE status = 'pending'
"""
    parsed = parse("deliveries.sql", text)

    assert dict(parsed) == {
        "get": "-- why this reads as it does\nSELECT id, status FROM deliveries WHERE id = $1;",
        "pending": "SELECT id, status FROM deliveries WHERE status = 'pending'",
    }


def test_a_missing_statement_names_its_file() -> None:
    parsed = parse("events.sql", "-- name: insert\nSELECT 1")

    with pytest.raises(KeyError, match=r"'fetch' in shared/sql/events.sql"):
        parsed.require("insert", "fetch")


def test_an_unknown_fragment_or_a_name_used_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown fragment"):
        parse("a.sql", "-- name: x\nSELECT {{nope}}")
    with pytest.raises(ValueError, match="defined twice"):
        parse("a.sql", "-- name: x\nSELECT 1\n-- name: x\nSELECT 2")


def test_jsonb_braces_are_left_alone() -> None:
    parsed = parse("a.sql", "-- name: x\nSELECT '{}'::jsonb, '{\"a\": 1}'::jsonb")

    assert parsed["x"] == "SELECT '{}'::jsonb, '{\"a\": 1}'::jsonb"


@pytest.mark.parametrize("table", _FILES)
def test_every_file_in_the_package_parses_into_statements(table: str) -> None:
    loaded = queries(table)

    assert len(loaded) > 0
    assert all(statement.strip() for statement in loaded.values())


def test_a_fragment_takes_its_parameter_number_from_the_statement() -> None:
    text = """
-- fragment: in_scope
({scope}::text IS NULL OR tenant_id = {scope})
-- name: get
SELECT id FROM subscriptions WHERE id = $1 AND {{in_scope scope=$2}}
-- name: rotate
UPDATE subscriptions SET secret = $2 WHERE id = $1 AND {{in_scope scope=$3}}
"""
    parsed = parse("subscriptions.sql", text)

    assert parsed["get"].endswith("AND ($2::text IS NULL OR tenant_id = $2)")
    assert parsed["rotate"].endswith("AND ($3::text IS NULL OR tenant_id = $3)")


def test_an_identifier_is_quoted_with_its_quotes_doubled() -> None:
    assert quote_identifier("events_p20240101") == '"events_p20240101"'
    assert quote_identifier('a"; DROP TABLE events; --') == '"a""; DROP TABLE events; --"'
