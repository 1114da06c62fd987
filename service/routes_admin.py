"""Model management: Triton's model repository extension, as tritonclient calls it.

    POST /v2/repository/index                    every model and version on disk, and its state
    POST /v2/repository/models/{name}/load       load or reload (body: {"parameters":
                                                 {"version": "N"}}, default the newest)
    POST /v2/repository/models/{name}/unload     unload (a version, or all)

All three are off unless the server runs with `--model-control explicit`, and then need the API
key (`service.admin_access`). A name or version no model can have (`..`, `0001`) is refused
with 400 before anything is read; a refused artifact answers 400 with the reason, and the
version already loaded keeps serving.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from .admin_access import require_admin
from .errors import bad_request, not_found
from .heap import freeze_long_lived
from .openapi import json_body
from .repository import InvalidName, LoadError, ModelNotFound, ModelRepository
from .schemas import ErrorResponse, LoadRequest, RepositoryIndexEntry
from .tensors import parse_json, read_body, validate

router = APIRouter(prefix="/v2/repository", tags=["model management"])

ADMIN = {"dependencies": [Depends(require_admin)],
         "responses": {400: {"model": ErrorResponse}, 401: {"model": ErrorResponse},
                       403: {"model": ErrorResponse}, 404: {"model": ErrorResponse}}}


@router.post("/index", response_model=list[RepositoryIndexEntry], **ADMIN)
async def index(request: Request) -> list[dict[str, object]]:
    return request.app.state.repository.available()


@router.post("/models/{name}/load", openapi_extra=json_body(LoadRequest, required=False),
             **ADMIN)
async def load(name: str, request: Request) -> dict[str, object]:
    version = await _version(request)
    repository: ModelRepository = request.app.state.repository
    try:
        engine = await repository.load(name, version)
    except InvalidName as error:
        raise bad_request(str(error)) from None
    except ModelNotFound as error:
        raise not_found(str(error)) from None
    except LoadError as error:
        raise bad_request(f"refused to load {name!r}: {error}") from None
    models_changed(request.app)
    return {"name": engine.name, "version": engine.version, "state": "READY"}


@router.post("/models/{name}/unload", openapi_extra=json_body(LoadRequest, required=False),
             **ADMIN)
async def unload(name: str, request: Request) -> dict[str, object]:
    version = await _version(request)
    repository: ModelRepository = request.app.state.repository
    try:
        versions = await repository.unload(name, version)
    except InvalidName as error:
        raise bad_request(str(error)) from None
    except ModelNotFound as error:
        raise not_found(str(error)) from None
    models_changed(request.app)
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


def models_changed(app) -> None:
    """After models were loaded or unloaded: the gauge of model versions being served set,
    and what is alive now frozen out of the collector's full collections
    (`service.heap`)."""
    repository: ModelRepository = app.state.repository
    app.state.metrics.loaded.set(sum(len(repository.versions(n)) for n in repository.names()))
    freeze_long_lived()
