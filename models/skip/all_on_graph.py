"""A batch with every gate on, as one onnxruntime run of the dense network.

With every gate of every layer on, a batch computes the dense network's multiply-adds, and the
fastest way on some machines is not the C kernels' blocks nor torch's products but
onnxruntime's GEMM with its weights packed once (on the Intel Xeon of docs/performance.md,
1.5-1.6x torch's on the layer at batch 64). `AllOnGraph` holds a session of
`export_all_on_onnx(model)`: the dense network plus each gater, which says how many gates
were off; `run` returns the logits only where none was, and the engine otherwise computes the
batch its own way.

Its threads spin while a run lasts, as onnxruntime's fastest setting has them, and stop at
its end (`session.force_spinning_stop`): workers left spinning after a run would take the
cores from the C kernels' pool in the next forward, and from a server decoding the next
request (`python -m benchmarks.all_on_sessions`). The session (its own copy of the weights) is
made on first use: a network whose batches never have every gate on never pays for it. Where
onnx or onnxruntime is not installed, `make` returns None.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np

from ..gated_network import GatedNetwork

# onnxruntime's session entries for the route's threads: spin within a run, not after it.
THREAD_SETTINGS = {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"}


class AllOnGraph:
    def __init__(self, model: GatedNetwork, threads: int) -> None:
        self._model, self._threads = model, threads
        self._session = None
        self._lock = threading.Lock()

    @classmethod
    def make(cls, model: GatedNetwork, threads: int) -> AllOnGraph | None:
        """The route for `model` (its gated layers' units binary), or None where it cannot
        run: units that are not binary, or no onnx and onnxruntime to run it with."""
        if not model.gated_layers or not all(layer.estimator.binary
                                             for layer in model.gated_layers):
            return None
        if any(importlib.util.find_spec(name) is None for name in ("onnx", "onnxruntime")):
            return None
        return cls(model, threads)

    @property
    def session(self):
        """The onnxruntime session, made on first use (None until then)."""
        return self._session

    def _ready(self):
        with self._lock:
            if self._session is None:
                from .onnx_export import INPUT_NAME, export_all_on_onnx, ort_session

                self._session = ort_session(export_all_on_onnx(self._model), self._threads,
                                            THREAD_SETTINGS)
                self._input = INPUT_NAME
            return self._session

    def run(self, x: np.ndarray) -> np.ndarray | None:
        """The logits (B, C) of x (B, D) float32 where every gate of every layer is on, else
        None."""
        logits, gates_off = self._ready().run(None, {self._input: x})
        return None if gates_off.any() else logits
