"""A batch with every gate on, as one onnxruntime run of the dense network.

With every gate of every layer on, a batch computes the dense network's multiply-adds, and the
fastest way on some machines is not the C kernels' blocks nor torch's products but
onnxruntime's GEMM with its weights packed once (on the Intel Xeon of docs/performance.md,
1.5-1.6x torch's on the layer at batch 64). `AllOnGraph` holds a session of
`export_all_on_onnx(model)`: the dense network plus each gater, which says how many gates
were off; `run` returns the logits only where none was, and the engine otherwise computes the
batch its own way.

Its threads wait without spinning (`session.intra_op.allow_spinning` off): spinning workers
left after a run would take the cores from the C kernels' pool in the next forward. A batch
the engine takes for one of a run of all-on batches (`run(x, steady=True)`: traffic where
every gate is on) runs in a second session whose threads spin between runs, as the dense GEMM's
fastest setting has them: there the next forward is most likely this route again, and the
kernels' forward that ends the run pays the spin once. Each session is made on first use (its own
copy of the weights): a network whose batches never have every gate on never pays for it, nor
for the second where they are never all on twice running. Where onnx or onnxruntime is not
installed, `make` returns None.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np

from ..gated_network import GatedNetwork


class AllOnGraph:
    def __init__(self, model: GatedNetwork, threads: int) -> None:
        self._model, self._threads = model, threads
        self._sessions: dict[bool, object] = {}  # by whether its threads spin
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
    def sessions(self) -> tuple[bool, ...]:
        """The sessions made so far, by whether their threads spin."""
        return tuple(sorted(self._sessions))

    def _ready(self, spinning: bool):
        with self._lock:
            session = self._sessions.get(spinning)
            if session is None:
                from .onnx_export import INPUT_NAME, export_all_on_onnx, ort_session

                session = ort_session(
                    export_all_on_onnx(self._model), self._threads,
                    {"session.intra_op.allow_spinning": "1" if spinning else "0"})
                self._sessions[spinning] = session
                self._input = INPUT_NAME
            return session

    def run(self, x: np.ndarray, steady: bool = False) -> np.ndarray | None:
        """The logits (B, C) of x (B, D) float32 where every gate of every layer is on, else
        None. `steady`: the batch follows another all-on batch of its size range."""
        logits, gates_off = self._ready(steady).run(None, {self._input: x})
        return None if gates_off.any() else logits
