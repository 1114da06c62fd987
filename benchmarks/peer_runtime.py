"""The MLServer runtime `benchmarks.peer` serves the dense network with: an ONNX graph in
onnxruntime, as a user of MLServer would write one (MLServer ships no ONNX runtime of its own).

This file runs inside MLServer's environment, not sparsegate's: it imports only MLServer,
onnxruntime and numpy. Its settings come from model-settings.json: `parameters.uri` (the
graph) and `parameters.extra.threads` (onnxruntime's intra-op threads).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntimeModel(MLModel):
    async def load(self) -> bool:
        parameters = self.settings.parameters
        options = ort.SessionOptions()
        options.intra_op_num_threads = int((parameters.extra or {}).get("threads", 0))
        # The uri relative to model-settings.json's folder, as MLServer's own runtimes read it.
        self._session = ort.InferenceSession(await get_model_uri(self.settings), options,
                                             providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        (logits,) = self._session.run(None, {self._input: x})
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("logits", logits)])
