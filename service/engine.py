"""One loaded model version and its forward: the artifact's network run by one of the
block-skipping engines of `models` (the backend: "torch", the CPU `SkipNetwork`; "triton", the
CUDA path under CUDA graphs; "onnxruntime", the artifact's exported model.onnx), with a compute
report per example.

torch is imported only by the torch and Triton backends: a server whose models are all served
through onnxruntime runs without torch installed (nor `onnx`, nor the training code).

Letters: B examples, D input units, C classes, G gated layers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import ArtifactError, read_extra_file, shown_path
from models.block_weights import stored_precision
from models.compute import ComputeReports, dense_macs, executed_macs
from models.gated_artifact import load_gated_config
from models.labelled_examples import read_examples
from models.skip.output import SkipOutput

from .backends import BACKENDS

# Backends an artifact may ask for; the server's own setting, when not "auto", overrides it.
ARTIFACT_BACKENDS = tuple(b for b in BACKENDS if b != "auto")


@dataclass
class BatchResult:
    """What the engine returns for a batch: per example, the logits and probabilities (B, C)
    and its own compute report, and the gates that ran."""

    logits: np.ndarray  # (B, C) float32
    probabilities: np.ndarray  # (B, C) float32
    reports: ComputeReports
    compute_ms: float  # wall time of the forward, for the whole batch
    # Per gated layer (B, K), the gate values that multiplied the blocks, as the engine gave
    # them (torch tensors, perhaps on a GPU); empty where the backend does not report them
    # (onnxruntime's graph returns counts only). Read only for requests that ask for them.
    gates: list[Any] = field(default_factory=list)

    @classmethod
    def joined(cls, parts: list[BatchResult]) -> BatchResult:
        """One request's results from the forwards that ran its examples, in order (a
        request larger than a forward runs in several); `compute_ms` is their sum."""
        if len(parts) == 1:
            return parts[0]
        return cls(np.concatenate([p.logits for p in parts]),
                   np.concatenate([p.probabilities for p in parts]),
                   ComputeReports.joined([p.reports for p in parts]),
                   sum(p.compute_ms for p in parts),
                   [_joined_rows([p.gates[i] for p in parts])
                    for i in range(len(parts[0].gates))])

    def rows(self, start: int, stop: int) -> BatchResult:
        """Examples start..stop of the batch, with the forward's time."""
        if start == 0 and stop == len(self.reports):
            return self
        return BatchResult(self.logits[start:stop], self.probabilities[start:stop],
                           self.reports[start:stop], self.compute_ms,
                           [g[start:stop] for g in self.gates])


class ModelEngine:
    """A model version ready to serve. Loading checks everything a request would otherwise trip
    over later (the artifact's integrity, its architecture, one forward on zeros), so a broken
    artifact is refused at load, never at the first request."""

    def __init__(self, folder: str | Path, device: str = "cpu", *,
                 repository: str | Path | None = None, backend: str = "auto",
                 threads: int | None = None) -> None:
        """``repository``: the model repository ``folder`` lies in; the artifact's files must
        resolve inside it, and errors name paths relative to it. ``backend``: see
        `service.config.Settings.backend`. ``threads``: CPU threads of a forward (torch's
        setting, or the onnxruntime session's), None for the library's default."""
        folder = Path(folder)
        architecture, config = load_gated_config(folder, repository=repository)
        self.folder = folder
        self.shown = shown_path(folder, repository)  # how errors name this artifact
        self.name: str = config["name"]
        self.version: str = config["version"]
        self.config = architecture
        self.metadata: dict[str, Any] = config
        self.device = _resolve_device(device)
        self.backend = self._chosen_backend(backend)
        self.input_size = architecture.input_size
        self.num_classes = architecture.num_classes
        gated = architecture.gated_layers
        self.gated_layers = len(gated)
        self.blocks = [layer.blocks for layer in gated]
        self.dense_macs = dense_macs(architecture)
        # Checked at load (models.gated_artifact): float32 where config.json says nothing.
        self.block_weights: str = stored_precision(config)
        # Labelled examples the artifact records (None: it has none), checked before the
        # weights are read, like the rest of the artifact.
        self.examples = read_examples(folder, config, input_size=self.input_size,
                                      num_classes=self.num_classes, repository=repository)
        if self.backend == "onnxruntime":
            self._forward = self._onnx_session(repository, threads)
        else:
            self._forward = self._torch_engine(repository, threads)
        self.test_density = _measured_density(config, self.gated_layers)
        self.expected_density = _expected_density(config, self.gated_layers,
                                                  self.test_density)
        self.expected_saved_fraction = self._expected_saving()

    def _chosen_backend(self, setting: str) -> str:
        """The server's backend, unless it is "auto" and the artifact names one (config.json
        "serving": {"backend": ...}, written by `sparsegate-export --serve-with`), resolved
        for the device. A backend the device cannot run is the server's error when the setting
        names it, the artifact's (refused at load) when the artifact does."""
        serving = self.metadata.get("serving")
        if setting != "auto" or serving is None:
            return _resolve_backend(setting, self.device)
        chosen = serving.get("backend") if isinstance(serving, dict) else None
        if chosen not in ARTIFACT_BACKENDS:
            raise ArtifactError(f"{self.shown}: config.json serving.backend must be one of "
                                f"{', '.join(ARTIFACT_BACKENDS)}, got {chosen!r}")
        try:
            return _resolve_backend(chosen, self.device)
        except RuntimeError as error:
            raise ArtifactError(f"{self.shown}: config.json asks for {error}; or choose a "
                                "--backend for every model") from None

    def _torch_engine(self, repository: str | Path | None, threads: int | None):
        """The network built from the verified weights, run by the CPU engine or, on a GPU,
        by the Triton kernels under CUDA graphs; it takes numpy inputs like onnxruntime's."""
        import torch

        from models.gated_artifact import load_gated_network

        if threads:
            torch.set_num_threads(threads)
        model, _ = load_gated_network(self.folder, repository=repository, config=self.metadata)
        if self.backend == "triton":
            from models.skip.cuda import CudaGraphSkipNetwork, TritonSkipNetwork

            engine = CudaGraphSkipNetwork(TritonSkipNetwork(model.to("cuda")))
            return _CudaInputs(engine)
        from models.skip.cpu import SkipNetwork

        return _NumpyInputs(SkipNetwork(model))

    def _onnx_session(self, repository: str | Path | None, threads: int | None):
        from models.skip.onnx_runtime import OnnxModelError, OnnxRuntimeSkipNetwork

        if "model.onnx" not in (self.metadata.get("extra_files") or {}):
            raise ArtifactError(f"{self.shown}: the onnxruntime backend serves the artifact's "
                                "model.onnx, and this version has none: write it with "
                                "`sparsegate-export --model-repository REPOSITORY --name "
                                f"{self.name} --version {self.version}`, or serve with "
                                "--backend torch")
        data = read_extra_file(self.folder, "model.onnx", repository=repository)
        try:
            return OnnxRuntimeSkipNetwork(data, self.config, device=self.device,
                                          threads=threads)
        except OnnxModelError as error:
            raise ArtifactError(f"{self.shown}/model.onnx: {error}") from None

    def expect_forward(self, within_s: float) -> None:
        """A forward of this model is coming within about `within_s` seconds: engines with
        worker threads keep them awake until then (`SkipNetwork.expect_forward`)."""
        expect = getattr(self._forward, "expect_forward", None)
        if expect is not None:
            expect(within_s)

    def infer(self, x: np.ndarray) -> BatchResult:
        """x (B, D) float32, finite: the caller (the HTTP layer) has checked it."""
        start = time.perf_counter()
        out = self._forward(np.ascontiguousarray(x, dtype=np.float32))
        logits = out.logits  # numpy on the CPU: a GPU's output was copied back, synchronising
        reports = out.reports(self.config)
        compute_ms = (time.perf_counter() - start) * 1e3
        return BatchResult(logits, _softmax(logits), reports, compute_ms, out.gates)

    def warm_up(self, batches: tuple[int, ...]) -> None:
        """One forward per batch size on zeros: compiles the C or Triton kernels, captures the
        CUDA graphs and touches every weight, so the first request pays none of it. A failure
        here refuses the model."""
        for batch in batches:
            result = self.infer(np.zeros((batch, self.input_size), dtype=np.float32))
            if not np.isfinite(result.logits).all():
                raise ArtifactError(f"{self.shown}: the model gives non-finite outputs on "
                                    "zeros; its weights are unusable")

    def describe(self) -> dict[str, Any]:
        """What `GET /v1/models` and the v2 metadata say about this version."""
        return {"name": self.name, "version": self.version, "device": self.device,
                "backend": self.backend,
                "input_size": self.input_size, "num_classes": self.num_classes,
                "gated_layers": self.gated_layers, "blocks": self.blocks,
                "dense_macs": self.dense_macs, "expected_density": self.expected_density,
                "expected_saved_fraction": self.expected_saved_fraction,
                "estimator": (self.metadata.get("estimator") or {}).get("name"),
                "test_error": (self.metadata.get("metrics") or {}).get("test_error"),
                "block_weights": self.block_weights}

    def _expected_saving(self) -> float | None:
        """The saved fraction of an example with the calibrated density on in every gated
        layer (the blocks rounded to whole ones), routed as a lone example would be."""
        if self.expected_density is None:
            return None
        active = np.array([[max(0, round(d * k)) for d, k in
                            zip(self.expected_density, self.blocks, strict=True)]])
        executed = executed_macs(
            self.config, active, gated_reads_all_inputs=self._forward.reads_all_gated_inputs(1),
            gaters_read_all_inputs=self._forward.gaters_read_all_inputs(1))
        return 1.0 - int(executed[0]) / self.dense_macs


class _NumpyInputs:
    """The CPU engine, which computes in numpy, fed numpy and giving numpy logits and counts
    without a round trip through torch tensors."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.reads_all_gated_inputs = engine.reads_all_gated_inputs
        self.gaters_read_all_inputs = engine.gaters_read_all_inputs
        self.expect_forward = engine.expect_forward

    def __call__(self, x: np.ndarray) -> SkipOutput:
        return self.engine.forward_numpy(x)


class _CudaInputs:
    """The GPU engine fed numpy inputs, copied to the GPU, giving numpy logits and counts."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.reads_all_gated_inputs = engine.reads_all_gated_inputs
        self.gaters_read_all_inputs = engine.gaters_read_all_inputs

    def __call__(self, x: np.ndarray) -> SkipOutput:
        import torch

        out = self.engine(torch.from_numpy(x).to("cuda", non_blocking=True))
        # .cpu() waits for the GPU, so the forward's time includes the kernels'.
        return SkipOutput(out.logits.float().cpu().numpy(), out.active_blocks.cpu().numpy(),
                          out.computed_blocks.cpu().numpy(), out.gates,
                          out.gated_reads_all_inputs)


def _joined_rows(parts: list[Any]) -> Any:
    """Consecutive row blocks of one array, joined: numpy arrays, or torch tensors (where the
    engine gave those, torch is loaded)."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch

    return torch.cat(parts)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _cuda_available() -> bool:
    """Whether torch finds a CUDA GPU; False where torch is not installed (a server of ONNX
    graphs on the CPU)."""
    try:
        import torch
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        return False
    return torch.cuda.is_available()


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if _cuda_available() else "cpu"
    if device == "cuda" and not _cuda_available():
        raise RuntimeError("device 'cuda' was asked for but torch finds no CUDA GPU")
    return device


def _resolve_backend(backend: str, device: str) -> str:
    if backend == "auto":
        return "triton" if device == "cuda" else "torch"
    if backend == "triton" and device != "cuda":
        raise RuntimeError("backend 'triton' runs on a CUDA GPU: serve with --device cuda")
    if backend == "torch" and device == "cuda":
        raise RuntimeError("backend 'torch' is the CPU engine: serve with --device cpu, or "
                           "with --backend triton on the GPU")
    return backend


def _measured_density(config: dict[str, Any], gated_layers: int) -> list[float] | None:
    """Per gated layer, the fraction of blocks on measured at calibration (test set), if the
    artifact records it."""
    density = (config.get("metrics") or {}).get("test_density")
    if (isinstance(density, list) and len(density) == gated_layers
            and all(isinstance(d, int | float) and 0 <= d <= 1 for d in density)):
        return [float(d) for d in density]
    return None


def _expected_density(config: dict[str, Any], gated_layers: int,
                      measured: list[float] | None) -> list[float] | None:
    """The measured density (`_measured_density`), else the target density in every layer."""
    if measured is not None:
        return measured
    target = (config.get("architecture") or {}).get("target_density")
    if isinstance(target, int | float) and 0 <= target <= 1 and gated_layers:
        return [float(target)] * gated_layers
    return None
