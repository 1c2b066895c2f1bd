"""The OpenAPI 3.1 document, generated from the routes and the models that validate them.

Nothing here is written by hand per operation: paths, parameters, bodies and responses all
come from the `Route` values and their pydantic models, so the document cannot drift from
what the API enforces.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from services.api.problems import PROBLEM_CONTENT_TYPE
from services.api.routing import Route
from services.api.schemas import ProblemDetails

_REF = "#/components/schemas/{model}"
_PROBLEM_REF = _REF.format(model="ProblemDetails")
_ALWAYS = (401, 503)
_WITH_BODY = (400, 413, 415, 422)
_PATH_PARAM = re.compile(r"{(\w+)}")

_DESCRIPTION = (
    "Hookline delivers events as signed webhooks (Standard Webhooks). Every `/v1` call needs"
    " `Authorization: Bearer <token>`; every error is RFC 9457 problem details."
)

if TYPE_CHECKING:
    from pydantic._internal._dataclasses import PydanticDataclass

    SchemaKey = tuple[type[BaseModel] | type[PydanticDataclass], JsonSchemaMode]


def _models(routes: Sequence[Route]) -> list[SchemaKey]:
    keys: dict[SchemaKey, None] = {(ProblemDetails, "serialization"): None}
    for route in routes:
        if route.body is not None:
            keys[(route.body, "validation")] = None
        if route.response is not None:
            keys[(route.response, "serialization")] = None
    return list(keys)


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(mode="validation")
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        prop.pop("title", None)
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
        if "description" in prop:
            param["description"] = prop.pop("description")
        param["schema"] = prop
        params.append(param)
    return params


def _problem(status: int) -> dict[str, Any]:
    return {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _PROBLEM_REF}}},
    }


def _success(route: Route, refs: dict[SchemaKey, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": HTTPStatus(route.status).phrase}
    if route.response is not None:
        schema = refs[(route.response, "serialization")]
        answer["content"] = {"application/json": {"schema": schema}}
    if route.links:
        source = f"$response.body#/{route.link_field}"
        answer["links"] = {
            target: {"operationId": target, "parameters": {route.link_field: source}}
            for target in route.links
        }
    if route.response_headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in route.response_headers.items()
        }
    return answer


def _operation(route: Route, refs: dict[SchemaKey, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
    }
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in _PATH_PARAM.findall(route.path)
    ]
    if route.query is not None:
        params.extend(_query_parameters(route.query))
    if params:
        op["parameters"] = params
    statuses = set(_ALWAYS) | set(route.errors)
    if route.operator_only:
        statuses.add(403)
    if route.body is not None:
        op["requestBody"] = {
            "required": route.body_required,
            "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
        }
        statuses |= set(_WITH_BODY)
    if route.query is not None:
        statuses.add(422)
    responses = {str(route.status): _success(route, refs)}
    for status in route.also:
        responses[str(status)] = {**_success(route, refs), "description": HTTPStatus(status).phrase}
    for status in sorted(statuses):
        responses[str(status)] = _problem(status)
    op["responses"] = responses
    return op


def build_document(routes: Sequence[Route], version: str) -> dict[str, Any]:
    """The whole OpenAPI 3.1 document of `routes`."""
    refs, definitions = models_json_schema(_models(routes), ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hookline", "version": version, "description": _DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
