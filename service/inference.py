"""What both APIs do with a checked input matrix: find the model version, queue the examples
for a batch, and record the metrics. Overload and unloading become 503s with Retry-After; an
input the model cannot answer in float32 (its sums overflow, so its outputs are not finite)
becomes a 400 naming the example, rather than probabilities of NaN (null in JSON)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from starlette.requests import Request

from .batching import BatcherClosed, QueueFull, Timings
from .engine import BatchResult, ModelEngine
from .errors import bad_request, not_found, unavailable
from .http_protocol import REQUESTS_IN_PROGRESS
from .repository import LoadedVersion, ModelNotFound, ModelRepository


@dataclass
class Served:
    engine: ModelEngine
    result: BatchResult
    timings: Timings
    total_ms: float


def find_engine(request: Request, name: str, version: str | None) -> LoadedVersion:
    repository: ModelRepository = request.app.state.repository
    try:
        return repository.get(name, version)
    except ModelNotFound as error:
        raise not_found(str(error)) from None


# How long after its body is read a request's forward may start: its decode (about 1 ms for
# 32 examples of 784 numbers in JSON) and the hop to the batcher's thread. Until then the
# engine's worker threads stay awake, rather than waking as the forward starts (`python -m
# benchmarks.forward_after_pause`); the forward lets them rest at its end.
FORWARD_WITHIN_S = 0.005


def expect_forward(loaded: LoadedVersion) -> None:
    """The request's body is read: its forward on `loaded` is coming."""
    loaded.engine.expect_forward(FORWARD_WITHIN_S)


def readiness(request: Request, name: str, version: str | None) -> dict[str, object]:
    """The readiness answer of a loaded version (404 if it is not), as the v1 and v2
    protocols' clients read it."""
    engine = find_engine(request, name, version).engine
    return {"name": name, "version": engine.version, "ready": True}


def alone(request: Request) -> bool:
    """Whether the server has no other request in progress; False where it cannot tell (a
    server other than `sparsegate-serve`'s protocol, such as a test client)."""
    in_progress = request.scope.get(REQUESTS_IN_PROGRESS)
    return in_progress is not None and in_progress() == 1


async def run(request: Request, loaded: LoadedVersion, x: np.ndarray, api: str,
              started: float) -> Served:
    """x (B, D) through the batcher of `loaded` (found by `find_engine` before the body was
    read); `started` is when the request's handling began."""
    settings = request.app.state.settings
    name = loaded.engine.name
    try:
        result, timings = await loaded.batcher.submit(x, alone=alone(request))
    except QueueFull as error:
        raise unavailable(f"model {name!r} is overloaded: {error}; retry after "
                          f"{settings.retry_after_s} s", settings.retry_after_s) from None
    except BatcherClosed as error:
        raise unavailable(f"model {name!r}: {error}", settings.retry_after_s) from None
    _check_finite(result)
    total = time.perf_counter() - started
    request.app.state.metrics.observe_request(name, api, total, timings.queue_ms / 1e3,
                                              result.reports)
    return Served(loaded.engine, result, timings, total * 1e3)


def _check_finite(result: BatchResult) -> None:
    """The request's outputs are numbers. Its inputs were finite float32, but a large one (3e38
    passes) can overflow the network's sums to infinity, and infinity less infinity is NaN;
    through the blocks on and the dense layers they reach the logits. Such an example has no
    answer (JSON would carry its probabilities as null), so the request is refused, naming it;
    its batch mates are computed apart and unaffected."""
    if not np.isfinite(result.logits).all():
        example = int(np.argmin(np.isfinite(result.logits).all(axis=-1)))
        raise bad_request(f"example {example} of the request: the model's outputs for it are not "
                          "finite in float32 (its sums overflow); send inputs of the scale the "
                          "model was trained on")
