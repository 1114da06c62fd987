"""Request bodies in the OpenAPI schema for routes that read their body themselves.

The inference routes parse their bodies by hand (NaN refused, the binary tensor extension, size
limits while reading), so FastAPI does not see a body parameter; `json_body(Model)` declares
it, and `install_schemas` puts the models' JSON schemas under components, where the
declarations point.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_REF = "#/components/schemas/{model}"
_BODIES: dict[str, type[BaseModel]] = {}


def json_body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    _BODIES[model.__name__] = model
    return {"requestBody": {"required": required, "content": {"application/json": {
        "schema": {"$ref": _REF.format(model=model.__name__)}}}}}


def install_schemas(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, model in _BODIES.items():
                body = model.model_json_schema(ref_template=_REF)
                components.update(body.pop("$defs", {}))
                components[name] = body
            _document_errors(schema)
            _document_admin_key(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_errors(schema: dict[str, Any]) -> None:
    """Every operation may answer a 4xx with `{"error": ...}` (the app's error handlers make
    every error that shape, and FastAPI's 422 is never sent: validation errors are 400s), and
    the inference operations a 503 with Retry-After when their model's queue is full."""
    error = {"description": "what is wrong, as {\"error\": message}", "content": {
        "application/json": {"schema": {"$ref": _REF.format(model="ErrorResponse")}}}}
    schema["components"]["schemas"]["ErrorResponse"] = {
        "title": "ErrorResponse", "type": "object", "required": ["error"],
        "properties": {"error": {"title": "Error", "type": "string"}}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            responses.setdefault("4XX", error)
            if method == "post" and (path.endswith(":predict") or path.endswith("/infer")):
                responses.setdefault("503", {**error, "description": "overloaded: retry after "
                                                                     "the Retry-After header"})
    for unused in ("HTTPValidationError", "ValidationError"):
        schema["components"]["schemas"].pop(unused, None)


ADMIN_PREFIX = "/v2/repository/"


def _document_admin_key(schema: dict[str, Any]) -> None:
    """The model management operations take the API key as `X-API-Key` or a Bearer token
    (`service.admin_access`): declared, Swagger UI's Authorize button sends it."""
    schema["components"]["securitySchemes"] = {
        "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema.get("paths", {}).items():
        if path.startswith(ADMIN_PREFIX):
            for operation in operations.values():
                operation["security"] = [{"apiKey": []}, {"bearer": []}]
                operation["description"] = (
                    "Off unless the server runs with --model-control explicit (403); then "
                    "needs the API key (401 without it, 403 wrong).")
