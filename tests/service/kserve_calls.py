"""Run by the interpreter that has KServe's SDK (its dependencies clash with the server's):
every call `kserve.InferenceRESTClient` makes against a server, printed as one JSON object.

    python kserve_calls.py BASE_URL MODEL ROWS_JSON
"""

import asyncio
import json
import sys

import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput


async def calls(url: str, model: str, rows: list[list[float]]) -> dict:
    x = np.array(rows, dtype=np.float32)
    out: dict = {}
    async with InferenceRESTClient(RESTConfig(protocol="v1")) as v1:
        out["v1_live"] = await v1.is_server_live(url)
        out["v1_model_ready"] = await v1.is_model_ready(url, model)
        out["v1_predict"] = await v1.infer(url, {"instances": rows}, model_name=model)
    async with InferenceRESTClient(RESTConfig(protocol="v2")) as v2:
        out["v2_live"] = await v2.is_server_live(url)
        out["v2_ready"] = await v2.is_server_ready(url)
        out["v2_model_ready"] = await v2.is_model_ready(url, model)
        for binary in (False, True):
            tensor = InferInput("input", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x, binary_data=binary)
            wanted = [RequestedOutput(name, {"binary_data": binary})
                      for name in ("probabilities", "active_blocks")]
            request = InferRequest(model_name=model, infer_inputs=[tensor],
                                   request_outputs=wanted, request_id="kserve-1")
            response = await v2.infer(url, request, model_name=model)
            out[f"v2_infer_{'binary' if binary else 'json'}"] = {
                "model_name": response.model_name, "id": response.id,
                "parameters": response.parameters,
                "probabilities": response.outputs[0].as_numpy().tolist(),
                "active_blocks": response.outputs[1].as_numpy().tolist()}
    return out


if __name__ == "__main__":
    base, name, data = sys.argv[1:]
    print(json.dumps(asyncio.run(calls(base, name, json.loads(data))), default=str))
