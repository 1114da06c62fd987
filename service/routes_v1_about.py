"""What the JSON API says besides predictions: a served version's card and labelled examples,
and the last minute of each model's traffic. The gate-map page (`service.ui_pages`) is built on
these and on predict, and any other client may use them the same way.

    GET /v1/models/{name}[/versions/{version}]/card       what it is, how it was trained
    GET /v1/models/{name}[/versions/{version}]/examples   labelled test examples it records
    GET /v1/metrics/summary                               requests/s, latency, mean saving
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from .inference import find_engine
from .model_card import model_card
from .repository import ModelRepository
from .schemas import ExampleList, ModelCard, TrafficSummary

router = APIRouter(prefix="/v1", tags=["JSON API"])
NOT_LOADED = {404: {"description": "not loaded"}}


@router.get("/models/{name}/card", response_model=ModelCard, responses=NOT_LOADED)
async def card(name: str, request: Request) -> dict[str, object]:
    """The newest loaded version's card."""
    return model_card(find_engine(request, name, None).engine)


@router.get("/models/{name}/versions/{version}/card", response_model=ModelCard,
            responses=NOT_LOADED)
async def card_version(name: str, version: str, request: Request) -> dict[str, object]:
    return model_card(find_engine(request, name, version).engine)


@router.get("/models/{name}/examples", response_model=ExampleList, responses=NOT_LOADED)
async def examples(name: str, request: Request) -> Response:
    """The newest loaded version's labelled examples, taken from its test split when it was
    trained: each one's input runs through predict as it is. Empty where the artifact records
    none (artifacts written before examples were recorded)."""
    return _examples(request, name, None)


@router.get("/models/{name}/versions/{version}/examples", response_model=ExampleList,
            responses=NOT_LOADED)
async def examples_version(name: str, version: str, request: Request) -> Response:
    return _examples(request, name, version)


def _examples(request: Request, name: str, version: str | None) -> Response:
    engine = find_engine(request, name, version).engine
    recorded = engine.examples
    body = {"model_name": engine.name, "model_version": engine.version,
            "split": recorded.split if recorded is not None else None,
            "examples": [] if recorded is None else [
                {"label": label, "input": row} for label, row in
                zip(recorded.labels.tolist(), recorded.inputs.tolist(), strict=True)]}
    # Written by orjson, as predict's answers are: up to MAX_EXAMPLES inputs of thousands of
    # numbers take pydantic's validation milliseconds on the event loop, orjson a fraction.
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/metrics/summary", response_model=TrafficSummary)
async def metrics_summary(request: Request) -> dict[str, object]:
    """Per model, over the last minute (at most its last 10,000 requests): inference requests
    per second, latency percentiles in the server and the mean fraction of multiply-adds saved
    per example. Prometheus' /metrics holds the same measurements since start-up."""
    repository: ModelRepository = request.app.state.repository
    recent = request.app.state.metrics.recent
    return {"window_s": recent.window_s, "models": recent.summary(repository.names())}
