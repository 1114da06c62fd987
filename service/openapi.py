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
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
