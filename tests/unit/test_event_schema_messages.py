"""Schema failures say which rule broke and where, never the value that broke it."""

from __future__ import annotations

from shared.event_types import compile_schema, data_errors

SCHEMA = {
    "type": "object",
    "required": ["card", "amount"],
    "properties": {
        "card": {"type": "string", "pattern": "^tok_"},
        "amount": {"type": "integer", "minimum": 1},
        "lines": {"type": "array", "items": {"type": "object", "additionalProperties": False}},
    },
}


def test_each_failure_names_its_path_and_rule_without_the_value() -> None:
    data = {"card": "4111111111111111", "amount": 0, "lines": [{"ssn": "078-05-1120"}]}
    errors = dict(data_errors(compile_schema(SCHEMA), data))
    assert errors == {
        "data.amount": "must satisfy `minimum` 1",
        "data.card": "must match the pattern '^tok_'",
        "data.lines.0": "has properties the schema does not allow",
    }
    text = repr(errors)
    assert "4111111111111111" not in text and "078-05-1120" not in text and "ssn" not in text


def test_missing_and_mistyped_properties() -> None:
    errors = dict(data_errors(compile_schema(SCHEMA), {"card": 4111111111111111}))
    assert errors == {
        "data": "is missing required properties ['amount']",
        "data.card": "must be of type 'string'",
    }
