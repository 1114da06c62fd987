"""The HTTP contract: request and response bodies of the Open Inference Protocol v2 (the REST
protocol of KServe and NVIDIA Triton, https://kserve.github.io/website/latest/modelserving/
data_plane/v2_protocol/) and of the simple JSON API.

Tensor data stays `Any` here and is checked by `service.tensors`, in numpy: validating a few
hundred thousand floats one by one in pydantic would cost more than the forward.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

# A parameter value in the protocol: a string, a number or a boolean.
Parameter = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# --- Open Inference Protocol v2 ------------------------------------------------------------

class RequestInput(_Strict):
    name: str
    # Strict: pydantic would otherwise read true, 1.0 and "1" as the dimension 1.
    shape: list[StrictInt] = Field(description="[batch, input_size]")
    datatype: str = Field(description="FP32")
    parameters: dict[str, Parameter] | None = None
    data: Any = Field(None, description="row-major numbers, flat or nested; absent when the "
                                        "binary tensor extension carries the bytes")


class RequestOutput(_Strict):
    name: str
    parameters: dict[str, Parameter] | None = None


class InferenceRequest(_Strict):
    # KServe's clients name the model in the body as well as the path; a body that names
    # another model or version than the one the path serves is refused, not silently rerouted.
    model_name: str | None = Field(None, description="if given, the path's model")
    model_version: str | None = Field(None, description="if given, the version that serves")
    id: str | None = None
    parameters: dict[str, Parameter] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Parameter] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Parameter] = Field(
        description="the request's compute report (multiply-adds summed over its examples, "
                    "saved fraction) and server-side timings")
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Parameter] | None = None


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]


class LoadRequest(_Strict):
    parameters: dict[str, Parameter] | None = Field(
        None, description='{"version": "N"} loads that version (default: the newest)')


class ErrorResponse(BaseModel):
    error: str


class Liveness(BaseModel):
    status: Literal["alive"]


# --- simple JSON API -----------------------------------------------------------------------

class PredictRequest(_Strict):
    instances: list[Any] = Field(min_length=1, description="one list of input_size numbers "
                                                           "per example")


class ComputeReportBody(BaseModel):
    dense_macs: int = Field(description="multiply-adds of the same network run densely")
    executed_macs: int = Field(description="multiply-adds run: gaters + blocks computed")
    gater_macs: int
    saved_fraction: float = Field(description="1 - executed / dense (negative if the gater "
                                              "cost more than was skipped)")
    active_blocks: list[int] = Field(description="blocks on, per gated layer")
    blocks: list[int] = Field(description="blocks, per gated layer")
    computed_blocks: list[int] = Field(description="blocks computed, per gated layer: the "
                                                   "active ones, or all where routed dense")
    active_block_indices: list[list[int]] | None = Field(
        None, description="only with ?gates=true: per gated layer, the indices of the blocks "
                          "on (as many as active_blocks says); null where the backend reports "
                          "counts only (onnxruntime)")


class Prediction(BaseModel):
    predicted_class: int = Field(serialization_alias="class")
    probabilities: list[float]
    compute: ComputeReportBody


class Timings(BaseModel):
    queue_ms: float = Field(description="waiting for a forward (for each of its forwards, "
                                        "where the request was larger than one)")
    compute_ms: float = Field(description="the forward that ran this request (whole batch; "
                                          "the sum of its forwards where it ran in several)")
    total_ms: float = Field(description="in the server, from the body read to the response")
    batch_size: int = Field(description="examples in that forward (the largest of them)")


class PredictResponse(BaseModel):
    model_name: str
    model_version: str
    predictions: list[Prediction]
    timings: Timings


class ModelVersionInfo(BaseModel):
    version: str
    device: str
    backend: str = Field(description="the engine serving it: torch, triton or onnxruntime")
    input_size: int
    num_classes: int
    gated_layers: int
    blocks: list[int]
    dense_macs: int
    expected_density: list[float] | None
    expected_saved_fraction: float | None
    estimator: str | None
    test_error: float | None
    block_weights: str = Field(description="the precision its artifact stores the main-path "
                                           "weights in, float32 or bfloat16 (the torch "
                                           "backend's kernels read them in it)")


class ModelInfo(BaseModel):
    name: str
    versions: list[ModelVersionInfo]


class ModelList(BaseModel):
    models: list[ModelInfo]


class LabelledExample(BaseModel):
    label: int = Field(description="its class in the data set")
    input: list[float] = Field(description="input_size numbers, as a predict request takes "
                                           "them")


class ExampleList(BaseModel):
    model_name: str
    model_version: str
    split: str | None = Field(description="the data split they come from (\"test\": never "
                                          "trained on); null where the artifact records none")
    examples: list[LabelledExample] = Field(description="empty for artifacts written without "
                                                        "examples")


class TrainingData(BaseModel):
    name: str | None = Field(description="the data set, e.g. digits or fashion-mnist")
    sizes: dict[str, int] | None = Field(description="examples per split")


class ModelCard(BaseModel):
    name: str
    version: str
    backend: str
    input_size: int
    num_classes: int
    architecture: dict[str, Any] = Field(description="the network's layers and sizes, as "
                                                     "config.json's architecture")
    estimator: dict[str, Any] | None = Field(description="the gradient estimator that trained "
                                                         "the gaters, and its settings")
    target_density: float | None = Field(description="the fraction of blocks meant to be on")
    test_density: list[float] | None = Field(description="fraction of blocks on per gated "
                                                         "layer, measured on the test split")
    test_error: float | None
    block_weights: str = Field(description="the precision its artifact stores the main-path "
                                           "weights in, float32 or bfloat16 (the torch "
                                           "backend's kernels read them in it)")
    dense_macs: int = Field(description="multiply-adds of the network run densely")
    gater_macs: int = Field(description="multiply-adds of all gaters reading every input "
                                        "unit, run for every example (a gater after a gated "
                                        "layer may read only the blocks computed there: each "
                                        "compute report counts what its gaters ran)")
    expected_saved_fraction: float | None
    data: TrainingData | None = Field(description="what it was trained on")
    training_command: str | None = Field(description="the command that trained it")
    examples: int = Field(description="labelled examples the artifact records")


class LatencyMs(BaseModel):
    p50: float
    p90: float
    p99: float
    mean: float


class ModelTraffic(BaseModel):
    name: str
    requests: int = Field(description="inference requests answered in the window")
    examples: int
    requests_per_second: float
    latency_ms: LatencyMs | None = Field(description="in the server, from arrival to response; "
                                                     "null without requests")
    mean_saved_fraction: float | None = Field(description="multiply-adds saved per example, "
                                                          "gater included, averaged")


class TrafficSummary(BaseModel):
    window_s: float = Field(description="how far back the figures reach")
    models: list[ModelTraffic]
