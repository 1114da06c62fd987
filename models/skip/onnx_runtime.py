"""Serving an artifact's exported `model.onnx` through onnxruntime, with the same output as the
other skipping engines (`SkipOutput`: logits, blocks on and blocks computed per example).

The graph (written by `sparsegate-export`, see `models.skip.onnx_export`) skips blocks itself and
returns `active_blocks` and `computed_blocks`; the compute report follows from them and the
network's config. Where a gated layer reads a gated layer and the batch holds more than one
example, the graph reads the batch's union of input blocks (or all of them), so the report
counts every input unit as read there (`gated_reads_all_inputs`); a lone example's union is its
own blocks, counted exactly, and a graph on sparsegate's operators with no union path reads
each example's own (it says so in its metadata, `GATED_READS_KEY`).

Only onnxruntime and numpy are needed here: neither torch nor the `onnx` package that builds
graphs, so a server of exported graphs runs without either. sparsegate's onnxruntime operators
(`models.skip.onnx_ops`), which a graph exported with `custom_ops` uses, are registered with
the session of such a graph. The model is read from verified
bytes; external data, which would make onnxruntime open other files named inside
the model, is confined to an empty folder, so a model that refers to any is refused at load.
"""

from __future__ import annotations

import tempfile
from itertools import pairwise

import numpy as np

from ..gated_config import GatedNetworkConfig
from . import onnx_ops
from .output import SkipOutput

INPUT = "x"
OUTPUTS = ("logits", "active_blocks", "computed_blocks")
# The graph's metadata entry saying what a gated layer after a gated layer reads: "computed"
# (each example's own computed input blocks, as the engine) or "union" (a batch's union of
# them, or all; also assumed where the entry is absent).
GATED_READS_KEY = "sparsegate.gated_reads"
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class OnnxModelError(ValueError):
    """The ONNX model cannot serve this network; the message says why."""


class OnnxRuntimeSkipNetwork:
    def __init__(self, data: bytes, config: GatedNetworkConfig, *, device: str = "cpu",
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        if device not in PROVIDERS:
            raise OnnxModelError(f"device must be one of {', '.join(PROVIDERS)}, got {device!r}")
        provider = PROVIDERS[device]
        if provider not in ort.get_available_providers():
            raise OnnxModelError(f"this onnxruntime has no {provider} (it has "
                                 f"{', '.join(ort.get_available_providers())})")
        self.config = config
        self.device = device
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._no_external_data = tempfile.TemporaryDirectory(prefix="sparsegate-onnx-")
        options.add_session_config_entry("session.model_external_initializers_file_folder_path",
                                         self._no_external_data.name)
        try:
            onnx_ops.register_for(options, data)  # a graph exported with custom_ops
        except onnx_ops.OperatorsUnavailable as error:
            raise OnnxModelError(str(error)) from None
        try:
            self.session = ort.InferenceSession(data, options, providers=[provider])
        except Exception as error:  # onnxruntime raises its own exception types
            raise OnnxModelError(f"onnxruntime cannot load the model: {_first_line(error)}"
                                 ) from None
        self._check_signature()
        layers = config.layers
        # A gated layer fed by a gated layer: the graph reads the batch's union of its input
        # blocks there, unless it says it reads each example's own.
        reads = self.session.get_modelmeta().custom_metadata_map.get(GATED_READS_KEY)
        self._chained = (any(a.gated and b.gated for a, b in pairwise(layers))
                         and reads != "computed")

    def _check_signature(self) -> None:
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = {o.name for o in self.session.get_outputs()}
        missing = [name for name in OUTPUTS if name not in outputs]
        if INPUT not in inputs or missing:
            raise OnnxModelError(f"the model must take {INPUT!r} and give "
                                 f"{', '.join(OUTPUTS)}; it takes {', '.join(inputs)} and "
                                 f"gives {', '.join(sorted(outputs))}")
        shape = inputs[INPUT].shape
        if len(shape) != 2 or shape[1] != self.config.input_size:
            raise OnnxModelError(f"the model's input {INPUT!r} has shape {shape}, the network "
                                 f"takes [batch, {self.config.input_size}]")

    def reads_all_gated_inputs(self, batch: int) -> bool:
        """The graph reads a batch's union of input blocks (or all of them) at a gated layer
        after a gated layer, unless its metadata says each example's own
        (`GATED_READS_KEY`); a lone example's union is its own blocks."""
        return self._chained and batch > 1

    @staticmethod
    def gaters_read_all_inputs(batch: int) -> bool:
        """The graph's gaters read every input unit."""
        return True

    def __call__(self, x: np.ndarray) -> SkipOutput:
        """x (B, D) float32; the output holds numpy arrays."""
        if x.ndim != 2 or x.shape[1] != self.config.input_size:
            raise ValueError(f"x must be (B, {self.config.input_size}), got {tuple(x.shape)}")
        feed = np.ascontiguousarray(x, dtype=np.float32)
        logits, active, computed = self.session.run(list(OUTPUTS), {INPUT: feed})
        return SkipOutput(logits, active, computed, gates=[],
                          gated_reads_all_inputs=self.reads_all_gated_inputs(x.shape[0]))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__
