"""Model management: Triton's model repository extension, as tritonclient calls it.

    POST /v2/repository/index                    every model and version on disk, and its state
    POST /v2/repository/models/{name}/load       load or reload (body: {"parameters":
                                                 {"version": "N"}}, default the newest)
    POST /v2/repository/models/{name}/unload     unload (a version, or all)

Loading and unloading need the API key when one is configured (`X-API-Key: KEY` or
`Authorization: Bearer KEY`), compared in constant time. A refused artifact answers 400 with
the reason, and the version already loaded keeps serving.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, Request

from .errors import ApiError, bad_request, not_found
from .openapi import json_body
from .repository import LoadError, ModelNotFound, ModelRepository
from .schemas import ErrorResponse, LoadRequest, RepositoryIndexEntry
from .tensors import parse_json, read_body, validate

router = APIRouter(prefix="/v2/repository", tags=["model management"])


def require_api_key(request: Request) -> None:
    key = request.app.state.settings.api_key
    if key is None:
        return
    given = request.headers.get("x-api-key")
    if given is None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        given = token if scheme.lower() == "bearer" else None
    if given is None:
        raise ApiError(401, "this endpoint needs the API key (X-API-Key or Authorization: "
                            "Bearer)", {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(given.encode(), key.get_secret_value().encode()):
        raise ApiError(403, "wrong API key")


ADMIN = {"dependencies": [Depends(require_api_key)],
         "responses": {400: {"model": ErrorResponse}, 401: {"model": ErrorResponse},
                       403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}}}


@router.post("/index", response_model=list[RepositoryIndexEntry])
async def index(request: Request) -> list[dict[str, object]]:
    return request.app.state.repository.available()


@router.post("/models/{name}/load", openapi_extra=json_body(LoadRequest, required=False),
             **ADMIN)
async def load(name: str, request: Request) -> dict[str, object]:
    version = await _version(request)
    repository: ModelRepository = request.app.state.repository
    try:
        engine = await repository.load(name, version)
    except ModelNotFound as error:
        raise not_found(str(error)) from None
    except LoadError as error:
        raise bad_request(f"refused to load {name!r}: {error}") from None
    count_loaded(request.app)
    return {"name": engine.name, "version": engine.version, "state": "READY"}


@router.post("/models/{name}/unload", openapi_extra=json_body(LoadRequest, required=False),
             **ADMIN)
async def unload(name: str, request: Request) -> dict[str, object]:
    version = await _version(request)
    repository: ModelRepository = request.app.state.repository
    try:
        versions = await repository.unload(name, version)
    except ModelNotFound as error:
        raise not_found(str(error)) from None
    count_loaded(request.app)
    return {"name": name, "unloaded": versions}


async def _version(request: Request) -> str | None:
    body = await read_body(request, request.app.state.settings.max_body_bytes)
    if not body.strip():
        return None
    parameters = validate(LoadRequest, parse_json(body)).parameters or {}
    # tritonclient's unload_model always sends unload_dependents; no model here has any.
    unknown = set(parameters) - {"version", "unload_dependents"}
    if unknown:
        raise bad_request(f"unknown parameter(s) {sorted(unknown)}; only 'version' is taken "
                          "(a model's configuration comes from its artifact)")
    version = parameters.get("version")
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, str | int):
        raise bad_request(f"parameters.version must be a version number, got {version!r}")
    return str(version)


def count_loaded(app) -> None:
    """Set the gauge of model versions being served."""
    repository: ModelRepository = app.state.repository
    app.state.metrics.loaded.set(sum(len(repository.versions(n)) for n in repository.names()))
