"""Open Inference Protocol v2 (REST), as KServe and NVIDIA Triton serve it, so clients such as
`tritonclient.http` work unchanged; with the binary tensor data extension.

Model "input" is FP32 [batch, input_size]. Outputs (all by default, or those the request names):
"probabilities" and "logits" FP32 [batch, classes], "predicted_class" INT64 [batch], and the
compute report as tensors: "executed_macs" INT64 [batch] and "active_blocks" INT64
[batch, gated layers]. The response's `parameters` carry the request's compute report (dense
and executed multiply-adds, saved fraction; per example as JSON in "compute_reports") and the
server's timings.
"""

from __future__ import annotations

import json
import time
from functools import partial
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from .engine import ModelEngine
from .errors import bad_request
from .inference import Served, alone, expect_forward, find_engine, readiness, run
from .json_budget import JsonValueCounter, budget_reason, input_budget
from .off_loop import cheap_to_decode, cheap_to_encode, reader_threads, run_off_loop
from .openapi import json_body
from .repository import ModelRepository
from .schemas import (
    ErrorResponse,
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    ServerMetadata,
    TensorMetadata,
)
from .tensors import (
    BINARY_HEADER,
    INPUT_NAME,
    binary_json_bytes,
    binary_output,
    decode_infer,
    read_body,
)

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])
EXTENSIONS = ["model_repository", "binary_tensor_data", "parameters"]
OUTPUTS = ("probabilities", "logits", "predicted_class", "executed_macs", "active_blocks")
NOT_READY = {404: {"model": ErrorResponse, "description": "not loaded"}}


def _package_version() -> str:
    try:
        return version("sparsegate")
    except PackageNotFoundError:
        return "unknown"


@router.get("/health/live")
async def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready", responses={400: {"description": "still loading, or no model"}})
async def ready(request: Request) -> Response:
    # The protocol: 200 means ready, a 4xx not ready (KServe's and Triton's servers answer
    # 400). A 5xx would say the server failed, which a readiness probe must not read here.
    ok = request.app.state.ready and bool(request.app.state.repository.names())
    return JSONResponse({"ready": ok}, status_code=200 if ok else 400)


@router.get("", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="sparsegate", version=_package_version(), extensions=EXTENSIONS)


@router.get("/models/{name}", response_model=ModelMetadata, responses=NOT_READY)
async def model_metadata(name: str, request: Request) -> ModelMetadata:
    return _metadata(request, name, None)


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata,
            responses=NOT_READY)
async def model_version_metadata(name: str, version: str, request: Request) -> ModelMetadata:
    return _metadata(request, name, version)


@router.get("/models/{name}/ready", responses=NOT_READY)
async def model_ready(name: str, request: Request) -> dict[str, object]:
    return readiness(request, name, None)


@router.get("/models/{name}/versions/{version}/ready", responses=NOT_READY)
async def model_version_ready(name: str, version: str, request: Request) -> dict[str, object]:
    return readiness(request, name, version)


@router.get("/models/{name}/config", responses=NOT_READY)
async def model_config(name: str, request: Request) -> dict[str, object]:
    """Triton's model configuration extension, as tritonclient's get_model_config reads it."""
    engine = find_engine(request, name, None).engine
    settings = request.app.state.settings
    return {"name": name, "platform": "sparsegate", "backend": "sparsegate",
            "max_batch_size": settings.max_instances,
            "dynamic_batching": {"max_queue_delay_microseconds":
                                 int(settings.max_batch_delay_ms * 1000)}
            if settings.batching else None,
            "input": [{"name": INPUT_NAME, "data_type": "TYPE_FP32",
                       "dims": [engine.input_size]}],
            "output": [{"name": t.name, "data_type": f"TYPE_{t.datatype}", "dims": t.shape[1:]}
                       for t in _output_metadata(engine)]}


@router.post("/models/{name}/infer", response_model=InferenceResponse,
             responses={400: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
             openapi_extra=json_body(InferenceRequest))
async def infer(name: str, request: Request) -> Response:
    return await _infer(request, name, None)


@router.post("/models/{name}/versions/{version}/infer", response_model=InferenceResponse,
             responses={400: {"model": ErrorResponse}, 503: {"model": ErrorResponse}},
             openapi_extra=json_body(InferenceRequest))
async def infer_version(name: str, version: str, request: Request) -> Response:
    return await _infer(request, name, version)


# Served past FastAPI's routing (`service.infer_shortcut`): their endpoints take only the
# path's parameters and the request.
SHORTCUT_ROUTES = [route for route in router.routes
                   if getattr(route, "endpoint", None) in (infer, infer_version)]


def _metadata(request: Request, name: str, version: str | None) -> ModelMetadata:
    engine = find_engine(request, name, version).engine
    repository: ModelRepository = request.app.state.repository
    info = engine.describe()
    return ModelMetadata(
        name=name, versions=[engine.version] if version else repository.versions(name),
        platform="sparsegate", inputs=[TensorMetadata(name=INPUT_NAME, datatype="FP32",
                                                      shape=[-1, engine.input_size])],
        outputs=_output_metadata(engine),
        parameters={k: json.dumps(v) if isinstance(v, list) else v for k, v in info.items()
                    if v is not None and k not in ("name", "version")})


def _output_metadata(engine: ModelEngine) -> list[TensorMetadata]:
    c, g = engine.num_classes, engine.gated_layers
    return [TensorMetadata(name="probabilities", datatype="FP32", shape=[-1, c]),
            TensorMetadata(name="logits", datatype="FP32", shape=[-1, c]),
            TensorMetadata(name="predicted_class", datatype="INT64", shape=[-1]),
            TensorMetadata(name="executed_macs", datatype="INT64", shape=[-1]),
            TensorMetadata(name="active_blocks", datatype="INT64", shape=[-1, g])]


async def _infer(request: Request, name: str, version: str | None) -> Response:
    started = time.perf_counter()
    settings = request.app.state.settings
    loaded = find_engine(request, name, version)  # 404 before reading a large body
    input_size, max_rows = loaded.engine.input_size, settings.max_instances
    json_bytes = binary_json_bytes(request)
    counter = JsonValueCounter(input_budget(input_size, max_rows),
                               budget_reason(input_size, max_rows), json_bytes)
    body = await read_body(request, settings.max_body_bytes, counter,
                           settings.max_receiving_body_bytes, settings.retry_after_s)
    expect_forward(loaded)
    lone = alone(request)
    threads = reader_threads(lone)
    payload, x = await run_off_loop(partial(decode_infer, reader_threads=threads),
                                    body, json_bytes, input_size, max_rows,
                                    inline=cheap_to_decode(counter.values, len(body), lone))
    _check_named_model(payload, loaded.engine)
    wanted = _wanted_outputs(payload)
    served = await run(request, loaded, x, "v2", started)
    return await run_off_loop(_response, payload, served, wanted,
                              inline=cheap_to_encode(len(x), alone(request)))


def _check_named_model(payload: InferenceRequest, engine: ModelEngine) -> None:
    if payload.model_name is not None and payload.model_name != engine.name:
        raise bad_request(f"the body names model {payload.model_name!r}, the path "
                          f"{engine.name!r}")
    if payload.model_version is not None and payload.model_version != engine.version:
        raise bad_request(f"the body asks for version {payload.model_version!r} of "
                          f"{engine.name!r}, the path serves version {engine.version!r}; name "
                          f"the version in the path: /v2/models/{engine.name}/versions/"
                          f"{payload.model_version}/infer")


def _wanted_outputs(payload: InferenceRequest) -> dict[str, bool]:
    """Output name -> sent as binary, for the outputs asked for (default: all, as JSON unless
    the request's binary_data_output parameter says otherwise)."""
    default_binary = bool((payload.parameters or {}).get("binary_data_output", False))
    if not payload.outputs:
        return dict.fromkeys(OUTPUTS, default_binary)
    wanted = {}
    for out in payload.outputs:
        if out.name not in OUTPUTS:
            raise bad_request(f"unknown output {out.name!r}; this model has "
                              f"{', '.join(OUTPUTS)}")
        wanted[out.name] = bool((out.parameters or {}).get("binary_data", default_binary))
    return wanted


def _response(payload: InferenceRequest, served: Served, wanted: dict[str, bool]) -> Response:
    result = served.result
    tensors = {
        "probabilities": result.probabilities,
        "logits": result.logits,
        "predicted_class": result.probabilities.argmax(-1).astype(np.int64),
        "executed_macs": result.reports.executed_macs,
        "active_blocks": result.reports.active_blocks,
    }
    outputs, blobs = [], []
    for name, as_binary in wanted.items():
        array = tensors[name]
        entry = {"name": name, "shape": list(array.shape),
                 "datatype": "FP32" if array.dtype == np.float32 else "INT64"}
        if as_binary:
            blob = binary_output(array)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        outputs.append(entry)
    reports = result.reports
    dense = reports.dense_macs
    executed = int(reports.executed_macs.sum())
    body = {
        "model_name": served.engine.name, "model_version": served.engine.version,
        "id": payload.id,
        "parameters": {
            "dense_macs": dense * len(reports), "executed_macs": executed,
            "saved_fraction": 1.0 - executed / (dense * len(reports)),
            "compute_reports": orjson.dumps(reports.as_dicts()).decode(),
            "queue_ms": served.timings.queue_ms, "compute_ms": served.timings.compute_ms,
            "total_ms": served.total_ms, "batch_size": served.timings.batch_size},
        "outputs": outputs,
    }
    if payload.id is None:
        del body["id"]
    text = orjson.dumps(body)
    if not blobs:
        return Response(text, media_type="application/json")
    return Response(text + b"".join(blobs), media_type="application/octet-stream",
                    headers={BINARY_HEADER: str(len(text))})

