"""The simple JSON API.

    POST /v1/models/{name}:predict                      {"instances": [[...], ...]}
    POST /v1/models/{name}/versions/{version}:predict
    GET  /v1/models                                      models, versions, expected saving
    GET  /v1/models/{name}                               {"name", "version", "ready": true}

Each prediction carries its own compute report (with `?gates=true`, also the blocks on in each
gated layer); `timings` are the server's. A model's card and examples, and the traffic
summary: `service.routes_v1_about`.
"""

from __future__ import annotations

import time
from functools import partial
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Request, Response

from .gate_map import active_block_indices
from .inference import Served, alone, expect_forward, find_engine, readiness, run
from .json_budget import JsonValueCounter, budget_reason, input_budget
from .off_loop import cheap_to_decode, cheap_to_encode, reader_threads, run_off_loop
from .openapi import json_body
from .repository import ModelRepository
from .schemas import (
    ModelInfo,
    ModelList,
    ModelVersionInfo,
    PredictRequest,
    PredictResponse,
)
from .tensors import decode_predict, read_body

router = APIRouter(prefix="/v1", tags=["JSON API"])


@router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    repository: ModelRepository = request.app.state.repository
    return ModelList(models=[
        ModelInfo(name=name, versions=[
            ModelVersionInfo(**{k: v for k, v in repository.get(name, version).engine
                                .describe().items() if k != "name"})
            for version in repository.versions(name)])
        for name in repository.names()])


# A query parameter rather than a body field: the body stays KServe v1's {"instances": ...}.
GatesFlag = Annotated[bool, Query(description="also say which blocks each gated layer turned "
                                              "on, per example: compute.active_block_indices "
                                              "(null where the backend reports counts only: "
                                              "onnxruntime)")]


@router.post("/models/{name}:predict", response_model=PredictResponse,
             response_model_by_alias=True, openapi_extra=json_body(PredictRequest))
async def predict(name: str, request: Request, gates: GatesFlag = False) -> Response:
    return await _predict(request, name, None, gates)


@router.post("/models/{name}/versions/{version}:predict", response_model=PredictResponse,
             response_model_by_alias=True, openapi_extra=json_body(PredictRequest))
async def predict_version(name: str, version: str, request: Request,
                          gates: GatesFlag = False) -> Response:
    return await _predict(request, name, version, gates)


# After the predict routes: "/models/{name}" also matches "tiny:predict", and for a method
# neither allows, the first route that matches the path names the allowed methods.
@router.get("/models/{name}", responses={404: {"description": "not loaded"}})
async def model_ready(name: str, request: Request) -> dict[str, object]:
    """KServe's v1 model readiness, as its clients' is_model_ready reads it."""
    return readiness(request, name, None)


async def _predict(request: Request, name: str, version: str | None, gates: bool
                   ) -> Response:
    started = time.perf_counter()
    settings = request.app.state.settings
    loaded = find_engine(request, name, version)  # 404 before reading a large body
    input_size, max_rows = loaded.engine.input_size, settings.max_instances
    counter = JsonValueCounter(input_budget(input_size, max_rows), budget_reason(
        input_size, max_rows))
    raw = await read_body(request, settings.max_body_bytes, counter,
                          settings.max_receiving_body_bytes, settings.retry_after_s)
    expect_forward(loaded)
    lone = alone(request)
    threads = reader_threads(lone)
    x = await run_off_loop(partial(decode_predict, reader_threads=threads), raw,
                           input_size, max_rows,
                           inline=cheap_to_decode(counter.values, len(raw), lone))
    served = await run(request, loaded, x, "v1", started)
    return await run_off_loop(_response, served, gates,
                              inline=cheap_to_encode(len(x), alone(request)))


def _response(served: Served, gates: bool) -> Response:
    result = served.result
    reports = result.reports.as_dicts()
    if gates:
        indices = active_block_indices(result.gates, served.engine.gated_layers, len(reports))
        for row, report in enumerate(reports):
            report["active_block_indices"] = None if indices is None else indices[row]
    # Serialised here rather than through the response model: FastAPI's validation and
    # encoding of a few hundred floats cost more than the forward of a small model.
    body = {
        "model_name": served.engine.name, "model_version": served.engine.version,
        "predictions": [{"class": c, "probabilities": p, "compute": r}
                        for c, p, r in zip(result.probabilities.argmax(-1).tolist(),
                                           result.probabilities.tolist(), reports,
                                           strict=True)],
        "timings": {"queue_ms": served.timings.queue_ms,
                    "compute_ms": served.timings.compute_ms, "total_ms": served.total_ms,
                    "batch_size": served.timings.batch_size}}
    return Response(orjson.dumps(body), media_type="application/json")
